"""Reward models run over encoded rows, batch by batch on the host's behalf: per-token scores,
per-token log-probs, and the implicit PRM's rewards.

Each forward is jitted once per model structure and batch size (the last batch is padded), so
evaluation and the implicit PRM's reference log-probs compile once however many rows there are.
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any

import jax
import numpy as np
from flax import nnx

from models.decoder import CausalLM
from models.likelihood_prm import LikelihoodPRM
from rl.reward_models.data import RewardArrays
from rl.reward_models.losses import implicit_step_rewards
from rl.reward_models.modeling import sequence_logp


def _map_batches(
    fn: Callable, arrays: RewardArrays, batch_size: int, *extra: np.ndarray
) -> np.ndarray:
    """``fn(tokens, mask, *extra rows)`` over fixed-size batches (the last padded by repeating
    row 0, so one compiled shape serves all), concatenated on the host."""
    n = len(arrays)
    outs = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        padded = np.concatenate([rows, np.zeros(batch_size - len(rows), rows.dtype)])
        args = [arrays.tokens[padded], arrays.attention_mask[padded]] + [x[padded] for x in extra]
        outs.append(np.asarray(fn(*args))[: len(rows)])
    return np.concatenate(outs) if outs else np.zeros((0,) + arrays.tokens.shape[1:], np.float32)


@functools.lru_cache(maxsize=32)
def _forward(graphdef: Any, what: str) -> Callable:
    """One jitted forward per model structure (graphdefs are hashable), reused across calls."""
    if what == "scores":
        return jax.jit(lambda state, t, m: nnx.merge(graphdef, state)(t, m))
    if what == "step_scores":
        return jax.jit(lambda state, *a: nnx.merge(graphdef, state).step_scores(*a))
    return jax.jit(lambda state, t, m: sequence_logp(nnx.merge(graphdef, state), t, m))


def token_scores(model: nnx.Module, arrays: RewardArrays, *, batch_size: int = 32) -> np.ndarray:
    """The reward model's output at every token, [N, S]: a probability for the heads trained
    here (a ``LikelihoodPRM``: its combined scores at the rows' step ends)."""
    graphdef, state = nnx.split(model)
    if isinstance(model, LikelihoodPRM):
        fn = _forward(graphdef, "step_scores")
        return _map_batches(
            lambda *a: fn(state, *a), arrays, batch_size, arrays.response_mask, arrays.step_end
        )
    fn = _forward(graphdef, "scores")
    return _map_batches(lambda t, m: fn(state, t, m), arrays, batch_size)


def token_logps(model: CausalLM, arrays: RewardArrays, *, batch_size: int = 32) -> np.ndarray:
    """``sequence_logp`` of every row: [N, S] fp32."""
    graphdef, state = nnx.split(model)
    fn = _forward(graphdef, "logp")
    return _map_batches(lambda t, m: fn(state, t, m), arrays, batch_size)


def implicit_prm_scores(
    policy: CausalLM,
    reference: CausalLM,
    arrays: RewardArrays,
    beta: float,
    *,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """The implicit PRM's outputs on every row: ``reward`` [N] = r(y); ``step_rewards`` [N, S]
    (beta x each step's summed log-ratio, at step ends); ``q`` [N, S] = beta x the running log-ratio
    sum (the process value of Yuan et al.: log-odds that the prefix succeeds)."""
    logp = token_logps(policy, arrays, batch_size=batch_size)
    ref_logp = token_logps(reference, arrays, batch_size=batch_size)
    resp = arrays.response_mask
    steps = jax.vmap(implicit_step_rewards, in_axes=(0, 0, 0, 0, None))(
        logp, ref_logp, arrays.step_end, resp, beta
    )
    q = beta * np.cumsum(np.where(resp, logp - ref_logp, 0.0), axis=-1)
    return {
        "reward": beta * np.where(resp, logp - ref_logp, 0.0).sum(-1),
        "step_rewards": np.asarray(steps),
        "q": q,
        "logp": logp,
        "ref_logp": ref_logp,
    }
