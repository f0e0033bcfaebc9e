"""Reward shaping: pure array functions over one response's token axis.

Every function takes one sequence's ``[T]`` arrays and returns ``[T]`` arrays; batch them with
``jax.vmap``. They are jit-able, never sync with the host and never branch in Python on array values
(string arguments such as ``estimator`` are static configuration, resolved at trace time).

Shape letters: ``T`` response tokens. Conventions (the README's "Reward transforms (exact
semantics)" table):

* ``step_end_T`` (bool) is True on the last token of each step and False elsewhere, padding
  included.
    Steps are numbered k = 1..K in order of their end positions.
* ``scores_T`` holds the process reward model's score s_k at step k's end position; values at other
    positions are ignored.
* Step rewards are returned at step-end positions and are exactly 0 elsewhere.

The refinements bound what the policy can gain from a learned process reward by adding steps:

* ``raw``: s_k. Non-negative scores make the return grow with the number of steps (the hack).
* ``clip``: min(s_k - eta, 0). Each step reward is <= 0, so an extra step can never raise the
  return.
* ``delta``: s_k - s_{k+1} for k <= K-2, s_{K-1} for k = K-1, 0 for k = K. The return from any step
    k < K telescopes to s_k, a single bounded score, however many steps follow.
* ``clip_delta``: ``delta`` of the clipped scores min(s_k - eta, 0).
* ``min_form`` (PURE): G_k - G_{k+1} with G_k = min_{j>=k} s_j, G_{K+1} = 0. The return from step k
    is the minimum remaining score, however many steps follow.
* ``potential`` (Ng et al. 1999, potential = PRM score): s_k - s_{k-1} with s_0 = 0 (optionally
    -s_K more at the last step). The return from step k telescopes to s_K - s_{k-1} (-s_{k-1}).
* ``gated`` (G-RA): step rewards count only when the outcome reward reaches a threshold.
"""

from __future__ import annotations

from typing import Literal

import jax
import jax.numpy as jnp

Array = jax.Array

KL_ESTIMATORS = ("k1", "k2", "k3")
PRM_TRANSFORMS = ("raw", "clip", "delta", "clip_delta", "min_form", "potential")


def _positions(x_T: Array) -> Array:
    return jnp.arange(x_T.shape[-1], dtype=jnp.int32)


def next_step_end(step_end_T: Array) -> Array:
    """Index of the next step end strictly after each position; T where there is none."""
    t = step_end_T.shape[-1]
    idx_T = jnp.where(step_end_T, _positions(step_end_T), t)
    # Reverse running minimum gives the first step end at or after each position; shifting by one
    # position makes it strictly after.
    at_or_after_T = jax.lax.cummin(idx_T, reverse=True)
    return jnp.concatenate([at_or_after_T[1:], jnp.full((1,), t, jnp.int32)])


def previous_step_end(step_end_T: Array) -> Array:
    """Index of the previous step end strictly before each position; -1 where there is none."""
    idx_T = jnp.where(step_end_T, _positions(step_end_T), -1)
    at_or_before_T = jax.lax.cummax(idx_T)
    return jnp.concatenate([jnp.full((1,), -1, jnp.int32), at_or_before_T[:-1]])


def _gather_or_zero(values_T: Array, idx_T: Array) -> Array:
    """values_T[idx] where 0 <= idx < T, else 0 (idx = T or -1 mean "no such step")."""
    t = values_T.shape[-1]
    valid_T = (idx_T >= 0) & (idx_T < t)
    return jnp.where(valid_T, values_T[jnp.clip(idx_T, 0, t - 1)], jnp.zeros((), values_T.dtype))


def raw(scores_T: Array, step_end_T: Array) -> Array:
    """s_k at each step end."""
    return jnp.where(step_end_T, scores_T, 0.0).astype(scores_T.dtype)


def clip(scores_T: Array, step_end_T: Array, eta: float | Array) -> Array:
    """min(s_k - eta, 0) at each step end: no step reward is positive."""
    return jnp.where(step_end_T, jnp.minimum(scores_T - eta, 0.0), 0.0).astype(scores_T.dtype)


def delta(scores_T: Array, step_end_T: Array) -> Array:
    """s_k - s_{k+1} (k <= K-2), s_{K-1} (k = K-1), 0 (k = K).

    Written as d_k = s'_k - s'_{k+1} with s' the scores with the last step's score zeroed and
    s'_{K+1} = 0, which gives all three cases at once.
    """
    nxt_T = next_step_end(step_end_T)
    is_last_T = step_end_T & (nxt_T >= step_end_T.shape[-1])
    kept_T = jnp.where(step_end_T & ~is_last_T, scores_T, 0.0).astype(scores_T.dtype)
    return jnp.where(step_end_T, kept_T - _gather_or_zero(kept_T, nxt_T), 0.0).astype(
        scores_T.dtype
    )


def clip_delta(scores_T: Array, step_end_T: Array, eta: float | Array) -> Array:
    """``delta`` applied to the clipped scores c_k = min(s_k - eta, 0)."""
    return delta(clip(scores_T, step_end_T, eta), step_end_T)


def min_form(scores_T: Array, step_end_T: Array, temperature: float | Array = 0.0) -> Array:
    """PURE's min-form credit assignment (Cheng et al. 2025) as per-step rewards.

    ``temperature == 0`` (exact form): with G_k = min_{j >= k} s_j and G_{K+1} = 0, step k's reward
    is r_k = G_k - G_{k+1}, so the return from step k, sum_{j >= k} r_j, is exactly G_k, the
    minimum of the remaining scores. r_K = s_K; K = 0 gives zeros.

    ``temperature > 0`` (PURE's code, CJReinforce/PURE ``openrlhf/utils/utils.py``,
    ``turn_process_reward_logits_to_reward``, used unless ``disable_weighted_reward``):
    ``weight = torch.softmax(-process_reward.masked_fill(~reward_mask, inf) / temperature, -1)``;
    ``process_reward = weight * process_reward``, i.e. r_k = w_k s_k with
    w_k = exp(-s_k / T) / sum_{j=1..K} exp(-s_j / T), the softmax taken over *all* K steps of the
    response. PURE then credits returns as the reverse cumulative sum of these rewards
    (``experience_maker.py``: ``reward.fliplr().cumsum(dim=1).fliplr()``). The whole response's
    return sum_k w_k s_k is a soft minimum that tends to min_k s_k = G_1 as T -> 0, but the return
    from a later step k is sum_{j >= k} w_j s_j, not a soft min of the remaining scores: as T -> 0
    the whole minimum sits on the argmin step (split evenly among ties) and steps after it get 0.
    So the two forms agree on the response's return and on the return from every step up to the
    (first) argmin, not beyond it.

    ``temperature`` may be a traced scalar; the choice between the forms is a ``jnp.where``.
    """
    dtype = scores_T.dtype
    t = jnp.asarray(temperature, jnp.float32)
    # Exact form: reverse running minimum of the scores over step ends.
    inf = jnp.asarray(jnp.inf, dtype)
    suffix_min_T = jax.lax.cummin(jnp.where(step_end_T, scores_T, inf), reverse=True)
    g_T = jnp.where(step_end_T, suffix_min_T, 0.0).astype(dtype)
    exact_T = g_T - _gather_or_zero(g_T, next_step_end(step_end_T))
    # PURE's softmax-weighted form, stabilised by subtracting the largest logit over step ends.
    safe_t = jnp.where(t > 0, t, 1.0)
    logits_T = jnp.where(step_end_T, -scores_T.astype(jnp.float32) / safe_t, -jnp.inf)
    top = jnp.max(logits_T)
    top = jnp.where(jnp.isfinite(top), top, 0.0)
    e_T = jnp.where(step_end_T, jnp.exp(logits_T - top), 0.0)
    total = jnp.sum(e_T)
    w_T = e_T / jnp.where(total > 0, total, 1.0)
    soft_T = (w_T * scores_T.astype(jnp.float32)).astype(dtype)
    return jnp.where(step_end_T, jnp.where(t > 0, soft_T, exact_T), 0.0).astype(dtype)


def potential(scores_T: Array, step_end_T: Array, terminal: bool | Array = False) -> Array:
    """Potential-based shaping (Ng, Harada & Russell 1999) with the PRM score as potential.

    r_k = s_k - s_{k-1} at step k's end, s_0 = 0: the return from step k telescopes to
    s_K - s_{k-1}, so a step is credited with its effect on the *final* score, never with its own
    score. ``terminal=True`` adds -s_K at the last step end (the potential of the terminal state
    is 0): r_K = -s_{K-1}, the return from step k is -s_{k-1} and every response's PRM return is 0,
    which leaves the optimal policy unchanged.
    """
    dtype = scores_T.dtype
    s_T = jnp.where(step_end_T, scores_T, 0.0).astype(dtype)
    r_T = s_T - _gather_or_zero(s_T, previous_step_end(step_end_T))
    is_last_T = step_end_T & (next_step_end(step_end_T) >= step_end_T.shape[-1])
    r_T = jnp.where(is_last_T & jnp.asarray(terminal, bool), r_T - s_T, r_T)
    return jnp.where(step_end_T, r_T, 0.0).astype(dtype)


def gated(
    step_rewards_T: Array, step_end_T: Array, outcome: float | Array, threshold: float | Array
) -> Array:
    """G-RA: keep step rewards only where the outcome reward reaches ``threshold``, else 0.

    ``step_rewards_T`` may be raw scores or any transform's output; the gate multiplies them.
    """
    keep = jnp.asarray(outcome) >= threshold
    return jnp.where(step_end_T & keep, step_rewards_T, 0.0).astype(step_rewards_T.dtype)


def shape_prm(
    scores_T: Array,
    step_end_T: Array,
    transform: str,
    eta: float | Array = 0.0,
    *,
    min_form_temperature: float | Array = 0.0,
    potential_terminal: bool | Array = False,
) -> Array:
    """Dispatch on a transform name (static configuration, resolved at trace time).

    ``eta`` is used by ``clip`` and ``clip_delta``, ``min_form_temperature`` by ``min_form``,
    ``potential_terminal`` by ``potential``.
    """
    if transform == "raw":
        return raw(scores_T, step_end_T)
    if transform == "clip":
        return clip(scores_T, step_end_T, eta)
    if transform == "delta":
        return delta(scores_T, step_end_T)
    if transform == "clip_delta":
        return clip_delta(scores_T, step_end_T, eta)
    if transform == "min_form":
        return min_form(scores_T, step_end_T, min_form_temperature)
    if transform == "potential":
        return potential(scores_T, step_end_T, potential_terminal)
    raise ValueError(f"transform must be one of {PRM_TRANSFORMS}, got {transform!r}")


def implicit_prm(
    logp_T: Array, ref_logp_T: Array, step_end_T: Array, response_T: Array, beta: float | Array
) -> Array:
    """Implicit-PRM step rewards (Yuan et al. 2024): beta * sum of log(pi/pi_ref) over a step's
    tokens.

    A step's tokens are those after the previous step end up to and including its own end; the
    tokens after the last step end (an answer line without a separator, the EOS) are one more
    segment, credited at the response's last token. So the rewards sum to the outcome reward the
    implicit PRM was trained as, r(y) = beta * sum over every response token of log(pi/pi_ref).
    Computed as differences of the running sum q_t = sum_{i<=t} beta * log-ratio_i.
    """
    ratio_T = jnp.where(response_T, logp_T - ref_logp_T, 0.0)
    q_T = beta * jnp.cumsum(ratio_T)
    last_T = last_token(response_T)
    at_T = step_end_T | last_T
    q_prev_T = _gather_or_zero(q_T, previous_step_end(at_T))
    return jnp.where(at_T & response_T, q_T - q_prev_T, 0.0).astype(logp_T.dtype)


def kl_penalty(
    logp_T: Array,
    ref_logp_T: Array,
    response_T: Array,
    estimator: Literal["k1", "k2", "k3"] = "k1",
) -> Array:
    """Per-token KL(pi || pi_ref) estimate from the sampled tokens' log-probs (Schulman's k1, k2,
    k3 with y ~ pi).

    k1 = log pi - log pi_ref (unbiased, can be negative); k2 = k1^2 / 2 (>= 0, biased, low
    variance); k3 = exp(-k1) - 1 + k1 (unbiased, >= 0, lower variance). Zero outside the response.
    As a penalty in the reward, the policy gradient of the return estimates the gradient of the
    KL's expectation; as a loss term differentiated directly, see ``rl.algo.losses.kl_loss``.
    """
    k1_T = logp_T - ref_logp_T
    if estimator == "k1":
        kl_T = k1_T
    elif estimator == "k2":
        kl_T = 0.5 * jnp.square(k1_T)
    elif estimator == "k3":
        kl_T = jnp.expm1(-k1_T) + k1_T
    else:
        raise ValueError(f"estimator must be one of {KL_ESTIMATORS}, got {estimator!r}")
    return jnp.where(response_T, kl_T, 0.0)


def last_token(response_T: Array) -> Array:
    """One-hot of the last response token; all False for an empty response."""
    t = response_T.shape[-1]
    last = jnp.max(jnp.where(response_T, _positions(response_T), -1))
    return _positions(response_T) == jnp.where(last >= 0, last, t)


def combine(
    response_T: Array,
    *,
    success: float | Array = 0.0,
    orm: float | Array = 0.0,
    prm_T: Array | None = None,
    kl_T: Array | None = None,
    orm_weight: float | Array = 0.0,
    prm_weight: float | Array = 0.0,
    kl_coef: float | Array = 0.0,
) -> Array:
    """The per-token reward the policy is trained on (the README's "Reward transforms").

    r_t = SR * [t = last] + w_orm * ORM * [t = last] + w_prm * prm_t - kl_coef * KL_t, over response
    tokens (0 on padding). ``prm_T`` is an already shaped step reward (``shape_prm``, ``gated``,
    ``implicit_prm``); ``kl_T`` a per-token KL (``kl_penalty``).
    """
    last_T = last_token(response_T)
    outcome = jnp.asarray(success, jnp.float32) + orm_weight * jnp.asarray(orm, jnp.float32)
    r_T = jnp.where(last_T, outcome, 0.0)
    if prm_T is not None:
        r_T = r_T + prm_weight * prm_T
    if kl_T is not None:
        r_T = r_T - kl_coef * kl_T
    return jnp.where(response_T, r_T, 0.0)


def flip_success(success: Array, key: Array, flip_prob: float | Array) -> Array:
    """Noisy-reward studies: flip a binary success reward (1 <-> 0) with probability ``flip_prob``.

    Seeded through ``key``: the same key gives the same flips. Works on any shape.
    """
    flip = jax.random.bernoulli(key, flip_prob, jnp.shape(success))
    return jnp.where(flip, 1.0 - success, success).astype(jnp.asarray(success).dtype)
