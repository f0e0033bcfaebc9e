"""A PRM's step scores combined with a frozen language model's likelihood of the steps.

Why: a small learned PRM can fail to check what its policy gets wrong even where the policy's own
distribution knows. On the embedded default's task a 2-layer PRM trained on 1,280 automatically
labelled solutions ranks a problem's 16 samples barely above chance (within-problem AUC 0.57),
and neither exact step labels nor two more layers trained four times longer change that (it
memorises the labelled solutions instead), while the supervised policy's own log-probability of
each step ranks them well (min over steps of the step's mean token log-prob: within-problem AUC
0.76, best-of-16 0.63 against maj@16 0.46). The policy learned the arithmetic from 51k worked
solutions; 1,280 labelled ones cannot teach a fresh head to verify it. So the step score reads the
likelihood explicitly, as a feature whose weight is fitted to the step labels
(``rl.reward_models.likelihood``):

    s_k = sigmoid(a * logit(p_k) + b * F_k + c),   F_k = min_{j <= k} mean log pi_LM(step j)

with p_k the PRM's own probability at step end k and F_k the lowest mean token log-probability
of the steps so far: a prefix is on track only while all its steps are, so its feature is its
least likely step. The language model is frozen (the supervised policy the labels were drawn
from), so PPO cannot move the feature except by writing different text.

A step's tokens are the response tokens after the previous step end (or from the response's
start) up to and including its own end; tokens after the last step end count for no step.
Everything here is per response row (vmap for batches), pure and shape-static: ``*_T`` arrays
are over the row's token positions, ``step_end_T`` marks each step's last token
(``rewards.steps``) and ``response_T`` the response tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

# Probabilities are clipped to [EPS, 1 - EPS] before the logit (a saturated head stays finite).
EPS = 1e-6


def step_mean_logp(logp_T: jax.Array, step_end_T: jax.Array, response_T: jax.Array) -> jax.Array:
    """At each step end, the mean log-prob of that step's tokens; 0 elsewhere."""
    resp = response_T.astype(jnp.bool_)
    ends = step_end_T.astype(jnp.bool_) & resp
    total = jnp.cumsum(jnp.where(resp, logp_T, 0.0).astype(jnp.float32))
    count = jnp.cumsum(resp.astype(jnp.float32))
    idx = jnp.arange(logp_T.shape[0])
    last_end = jax.lax.cummax(jnp.where(ends, idx, -1), axis=0)
    prev_end = jnp.concatenate([jnp.full((1,), -1, last_end.dtype), last_end[:-1]])
    safe = jnp.maximum(prev_end, 0)
    total_before = jnp.where(prev_end >= 0, total[safe], 0.0)
    count_before = jnp.where(prev_end >= 0, count[safe], 0.0)
    mean = (total - total_before) / jnp.maximum(count - count_before, 1.0)
    return jnp.where(ends, mean, 0.0)


def prefix_min_step_logp(
    logp_T: jax.Array, step_end_T: jax.Array, response_T: jax.Array
) -> jax.Array:
    """F_k at each step end k: the least mean log-prob of steps 1..k; 0 elsewhere."""
    ends = step_end_T.astype(jnp.bool_) & response_T.astype(jnp.bool_)
    means = step_mean_logp(logp_T, step_end_T, response_T)
    running = jax.lax.cummin(jnp.where(ends, means, jnp.inf), axis=0)
    return jnp.where(ends, running, 0.0)


def head_logit(prm_T: jax.Array) -> jax.Array:
    """logit(p) of a PRM probability, clipped to stay finite."""
    p = jnp.clip(prm_T.astype(jnp.float32), EPS, 1.0 - EPS)
    return jnp.log(p) - jnp.log1p(-p)


def likelihood_step_scores(
    prm_T: jax.Array,
    logp_T: jax.Array,
    step_end_T: jax.Array,
    response_T: jax.Array,
    weights_3: jax.Array,
) -> jax.Array:
    """s_k = sigmoid(a logit(p_k) + b F_k + c) at step ends, ``prm_T`` unchanged elsewhere;
    ``weights_3`` = (a, b, c)."""
    ends = step_end_T.astype(jnp.bool_) & response_T.astype(jnp.bool_)
    feature = prefix_min_step_logp(logp_T, step_end_T, response_T)
    w = weights_3.astype(jnp.float32)
    z = w[0] * head_logit(prm_T) + w[1] * feature + w[2]
    return jnp.where(ends, jax.nn.sigmoid(z), prm_T)
