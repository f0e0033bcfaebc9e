"""PPO losses: each returns a masked *sum* and the token *count* it was summed over.

Keeping sums and counts (not means) makes microbatch accumulation exact: the global mean is
sum(sums) / sum(counts), never a mean of per-microbatch means, whose weights would depend on how
many tokens each microbatch happened to hold.

Shape letters: B rows, T response tokens, V vocabulary.
"""

from __future__ import annotations

from typing import NamedTuple

import jax
import jax.numpy as jnp

from rewards import shaping


class Masked(NamedTuple):
    """A masked sum and its count; ``mean`` divides them (guarding count 0)."""

    total: jax.Array
    count: jax.Array

    @property
    def mean(self) -> jax.Array:
        return self.total / jnp.maximum(self.count, 1.0)

    def __add__(self, other):  # accumulation across microbatches
        return Masked(self.total + other.total, self.count + other.count)


def masked(x: jax.Array, mask: jax.Array) -> Masked:
    m = mask.astype(jnp.float32)
    return Masked(jnp.sum(x.astype(jnp.float32) * m), jnp.sum(m))


def whiten(x: jax.Array, mask: jax.Array, shift_mean: bool = True, eps: float = 1e-8) -> jax.Array:
    """Normalize ``x`` to unit variance over the masked entries (mean removed unless told not
    to)."""
    mean = masked(x, mask).mean
    var = masked(jnp.square(x - mean), mask).mean
    out = (x - mean) * jax.lax.rsqrt(var + eps)
    if not shift_mean:
        out = out + mean
    return jnp.where(mask, out, 0.0)


class PolicyLoss(NamedTuple):
    loss: Masked
    clip_frac: Masked
    approx_kl: Masked


def policy_loss(
    logp: jax.Array,
    old_logp: jax.Array,
    advantages: jax.Array,
    mask: jax.Array,
    clip_eps: float,
    dual_clip: float = 0.0,
) -> PolicyLoss:
    """Clipped surrogate, -min(r A, clip(r, 1-eps, 1+eps) A), with optional dual clip.

    Dual clip (Ye et al. 2020), for ``dual_clip`` = c > 1: for negative advantages the loss is also
    capped at -c A, so a token whose ratio has exploded cannot dominate the batch.
    approx_kl uses the k3 estimator of KL(old || new) on the sampled tokens.
    """
    log_ratio = logp - old_logp
    ratio = jnp.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * jnp.clip(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = jnp.maximum(unclipped, clipped)
    if dual_clip:
        loss = jnp.where(advantages < 0, jnp.minimum(loss, -dual_clip * advantages), loss)
    clip_frac = (clipped > unclipped).astype(jnp.float32)
    approx_kl = jnp.expm1(log_ratio) - log_ratio
    return PolicyLoss(masked(loss, mask), masked(clip_frac, mask), masked(approx_kl, mask))


def value_loss(
    values: jax.Array, old_values: jax.Array, returns: jax.Array, mask: jax.Array, value_clip: float
) -> Masked:
    """0.5 * max((V - R)^2, (V_clipped - R)^2), V_clipped within value_clip of the rollout's values.

    ``value_clip`` = 0 gives the plain squared error.
    """
    err = jnp.square(values - returns)
    if value_clip:
        v_clipped = old_values + jnp.clip(values - old_values, -value_clip, value_clip)
        err = jnp.maximum(err, jnp.square(v_clipped - returns))
    return masked(0.5 * err, mask)


def entropy(logits: jax.Array, mask: jax.Array) -> Masked:
    """Entropy of the policy's next-token distributions, per response token."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    ent = -jnp.sum(jnp.exp(logp) * logp, axis=-1)
    return masked(ent, mask)


def kl_loss(logp: jax.Array, ref_logp: jax.Array, mask: jax.Array, estimator: str = "k3") -> Masked:
    """A KL estimate as a loss term (the "KL in the loss" variant, as in GRPO), on tokens sampled
    from pi and differentiated through log pi only. Which divergence its expected gradient is
    (``tests/rl/algo/test_losses.py`` checks each exactly on a categorical distribution):

    * k1 = log pi - log pi_ref: E[grad] = E_pi[grad log pi] = 0 — no KL gradient at all;
    * k2 = (log pi - log pi_ref)^2 / 2: E[grad] = grad KL(pi || pi_ref), the reverse KL;
    * k3 = pi_ref/pi - 1 - log(pi_ref/pi): E[grad] = grad KL(pi_ref || pi), the forward KL
      (GRPO's choice).
    """
    # The same per-token estimates as the reward's penalty (one definition of k1/k2/k3).
    return masked(shaping.kl_penalty(logp, ref_logp, mask, estimator), mask)


def token_logp(logits: jax.Array, tokens: jax.Array) -> jax.Array:
    """log softmax(logits)[token], in fp32: the log-probs PPO's ratio needs."""
    logp = jax.nn.log_softmax(logits.astype(jnp.float32), axis=-1)
    return jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0]


def explained_variance(values: jax.Array, returns: jax.Array, mask: jax.Array) -> jax.Array:
    """1 - Var(R - V) / Var(R) over masked tokens: how much of the return the critic explains."""
    var_r = masked(jnp.square(returns - masked(returns, mask).mean), mask).mean
    diff = returns - values
    var_d = masked(jnp.square(diff - masked(diff, mask).mean), mask).mean
    return 1.0 - var_d / jnp.maximum(var_r, 1e-8)
