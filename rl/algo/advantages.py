"""Critic-free advantage estimators over the N samples of each prompt: GRPO, RLOO, REINFORCE++.

Pure functions of ``[B, T]`` arrays (plus ``group_B``, the prompt index of each row: rows b·N ..
b·N+N−1 belong to prompt b; any indices in [0, B)), jit- and vmap-able, O(B) in memory (group
totals are segment sums); GAE with the critic stays in ``rl.algo.gae``. Letters: B rows (prompts
× samples), T response tokens. ``rewards_BxT`` are the per-token rewards of
``rewards.shaping.combine`` (success and ORM on the last token, process rewards on step ends, the
KL penalty per token when it is in the reward); γ = 1 in the group estimators, as their authors use
them.

* ``grpo`` (Shao et al. 2024, DeepSeekMath §4.1): the rewards at ``reward_mask_BxT`` positions of a
  group are normalised by the mean and standard deviation of all of the group's rewards at such
  positions; a token's advantage is the sum of the normalised rewards from its position on. With
  only an outcome reward (one position per row, its last token) this is outcome GRPO:
  (R_i − mean_g R) / std_g R on every token of row i; with step rewards it is DeepSeekMath's
  process-supervision form.
* ``rloo`` (Ahmadian et al. 2024; as PURE and PRIME use it): token-level returns-to-go minus a
  leave-one-out baseline, the mean total return of the group's other rows.
* ``reinforce_pp`` (Hu 2025, REINFORCE++): returns-to-go, normalised over the whole batch's
  response tokens (global mean and standard deviation).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from rl.algo import losses


def returns_to_go(rewards_BxT: jax.Array, response_BxT: jax.Array) -> jax.Array:
    """G_t = Σ_{t' ≥ t} r_t' over response tokens (γ = 1); 0 off the response."""
    r = jnp.where(response_BxT, rewards_BxT, 0.0)
    g = jnp.flip(jnp.cumsum(jnp.flip(r, axis=-1), axis=-1), axis=-1)
    return jnp.where(response_BxT, g, 0.0)


def _group_sum(x_B: jax.Array, group_B: jax.Array) -> jax.Array:
    """Each row's total of ``x_B`` over its group, in O(B) (segment sums, then a gather): a [B, B]
    same-group matrix would take 4·B² bytes, 17 GB at 128 prompts x 512 samples (BroRL scale)."""
    return jax.ops.segment_sum(x_B, group_B, num_segments=group_B.shape[0])[group_B]


def grpo(
    rewards_BxT: jax.Array,
    reward_mask_BxT: jax.Array,
    response_BxT: jax.Array,
    group_B: jax.Array,
    eps: float = 1e-6,
) -> jax.Array:
    """GRPO advantages ``[B, T]`` (see the module docstring); 0 off the response. A group whose
    rewards are all equal has zero advantages (its std is 0: nothing to prefer)."""
    at = (reward_mask_BxT & response_BxT).astype(jnp.float32)
    r = jnp.where(at > 0, rewards_BxT, 0.0)
    count_B = _group_sum(jnp.sum(at, axis=-1), group_B)  # reward positions in the row's group
    mean_B = _group_sum(jnp.sum(r, axis=-1), group_B) / jnp.maximum(count_B, 1.0)
    sq_B = _group_sum(jnp.sum(at * (r - mean_B[:, None]) ** 2, axis=-1), group_B)
    std_B = jnp.sqrt(sq_B / jnp.maximum(count_B, 1.0))
    normalised = at * (r - mean_B[:, None]) / (std_B[:, None] + eps)
    return returns_to_go(normalised, response_BxT)


def rloo(
    rewards_BxT: jax.Array,
    response_BxT: jax.Array,
    group_B: jax.Array,
) -> jax.Array:
    """RLOO advantages ``[B, T]``: G_t − mean of the other rows' total returns in the group.
    Needs at least 2 rows per group (a row alone has no baseline: its baseline is 0)."""
    g = returns_to_go(rewards_BxT, response_BxT)
    total_B = jnp.sum(jnp.where(response_BxT, rewards_BxT, 0.0), axis=-1)
    n_others = _group_sum(jnp.ones_like(total_B), group_B) - 1.0
    baseline_B = (_group_sum(total_B, group_B) - total_B) / jnp.maximum(n_others, 1.0)
    return jnp.where(response_BxT, g - baseline_B[:, None], 0.0)


def reinforce_pp(rewards_BxT: jax.Array, response_BxT: jax.Array, eps: float = 1e-8) -> jax.Array:
    """REINFORCE++ advantages ``[B, T]``: returns-to-go whitened over every response token of the
    batch."""
    g = returns_to_go(rewards_BxT, response_BxT)
    return jnp.where(response_BxT, losses.whiten(g, response_BxT, eps=eps), 0.0)


def group_index(rows: int, samples_per_prompt: int) -> jax.Array:
    """The prompt index of each rollout row (rows b·N .. b·N+N−1 belong to prompt b)."""
    return jnp.arange(rows) // samples_per_prompt


def uniform_groups(values_B: jax.Array, samples_per_prompt: int) -> jax.Array:
    """The fraction of prompts whose samples all got the same value (say, the outcome reward): a
    group baseline gives such a prompt zero advantage, so it teaches nothing. BroRL's argument for
    hundreds of samples per prompt is that this fraction falls as N grows."""
    v_BxN = jnp.reshape(jnp.asarray(values_B), (-1, samples_per_prompt))
    return jnp.mean(jnp.all(v_BxN == v_BxN[:, :1], axis=1).astype(jnp.float32))
