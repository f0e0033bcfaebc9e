"""Supervised fine-tuning on worked solutions: the policy PPO starts from.

Sequences are ``prompt + solution + EOS``, right-padded; the loss is the token cross-entropy over
the solution and its EOS only (the prompt is context), as a sum divided by the batch's target-token
count.

Padding costs compute, so batches can be cut to their longest row rounded up to ``pad_multiple``
tokens (one compile per distinct length, at most ``max_len / pad_multiple``) and grouped by length
(``group_by_length``: batches are drawn from a pool of that many batches sorted by length, as
transformers' ``group_by_length`` does), which on the toy task nearly halves the padded tokens.
Cutting right padding never changes the loss: attention is causal and pads carry no target.
``pack_width=W`` instead packs each batch's sequences into as few rows of W tokens as fit
(first-fit decreasing; each sequence attends only within itself and its positions restart, so
every token's loss is the one it has alone and the batch's loss is the same sum over the same
targets): on the toy task the padded batches are 64% real tokens. W must hold several sequences
(toy solutions average 66 tokens, so rows of 128 mostly hold one or two), and attention's work per
token grows with W. The prompt text is formatted exactly as the PPO trainer formats it
(``rl.data.prompts``), so the policy is trained on the distribution it will be prompted with.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
import optax
from flax import nnx

from rl.algo import losses as ppo
from rl.algo.update import clip_by_global_norm
from rl.data import Example
from rl.data import prompts as prompts_lib


def encode_sft(
    examples: Sequence[Example], tokenizer: Any, max_len: int, system_prompt: str | None
) -> dict[str, np.ndarray]:
    """tokens / attention_mask / target_mask ``[N, max_len]``; target_mask marks solution + EOS."""
    n = len(examples)
    tokens = np.full((n, max_len), tokenizer.pad_token_id or 0, np.int32)
    attention = np.zeros((n, max_len), bool)
    target = np.zeros((n, max_len), bool)
    for i, ex in enumerate(examples):
        prompt = prompts_lib.format_prompt(ex.question, tokenizer, system_prompt=system_prompt)
        p_ids = tokenizer(prompt, add_special_tokens=False)["input_ids"]
        s_ids = tokenizer(ex.solution, add_special_tokens=False)["input_ids"] + [
            tokenizer.eos_token_id
        ]
        ids = p_ids + s_ids
        if len(ids) > max_len:
            raise ValueError(
                f"example {ex.id!r}: prompt + solution is {len(ids)} tokens, more than "
                f"max_len={max_len}"
            )
        tokens[i, : len(ids)] = ids
        attention[i, : len(ids)] = True
        target[i, len(p_ids) : len(ids)] = True
    return {"tokens": tokens, "attention_mask": attention, "target_mask": target}


def sft_optimizer(learning_rate: float, steps: int, warmup_steps: int = 50):
    """AdamW on linear warmup then cosine decay to 10%, after global-norm clipping at 1."""
    schedule = optax.warmup_cosine_decay_schedule(
        0.0, learning_rate, warmup_steps, max(steps, warmup_steps + 1), learning_rate * 0.1
    )
    return optax.chain(clip_by_global_norm(1.0), optax.adamw(schedule, weight_decay=0.0))


def make_sft_step(graphdef, tx: optax.GradientTransformation):
    """``step(params, opt_state, batch) -> (params, opt_state, loss)``; jit it once."""

    def loss_fn(params, batch):
        model = nnx.merge(graphdef, params)
        # Packed rows (pack_batch) carry each token's sequence and position; plain rows derive them.
        logits = model(
            batch["tokens"],
            batch["attention_mask"],
            batch.get("positions"),
            batch.get("segment_ids"),
        )
        # Position t predicts token t+1.
        logp = ppo.token_logp(logits[:, :-1], batch["tokens"][:, 1:])
        nll = ppo.masked(-logp, batch["target_mask"][:, 1:])
        return nll.mean

    def step(params, opt_state, batch):
        loss, grads = jax.value_and_grad(loss_fn)(params, batch)
        updates, opt_state = tx.update(grads, opt_state, params)
        return optax.apply_updates(params, updates), opt_state, loss

    return step


@functools.lru_cache(maxsize=8)
def _compiled_step(graphdef, learning_rate: float, steps: int, warmup_steps: int):
    """One jitted step per (model structure, schedule), reused across chunked calls."""
    tx = sft_optimizer(learning_rate, steps, warmup_steps)
    return jax.jit(make_sft_step(graphdef, tx), donate_argnums=(0, 1)), tx


def batch_indices(
    lengths: np.ndarray, batch_size: int, seed: int, step: int, group_by_length: int = 0
) -> np.ndarray:
    """The rows of batch ``step``: uniform draws, or with ``group_by_length = G`` one of G batches
    cut from a pool of G x batch_size uniform draws sorted by length (the pool and the order in
    which its batches are used depend on (seed, step // G))."""
    rng = np.random.default_rng
    n = len(lengths)
    if group_by_length <= 1:
        return rng([seed, step]).integers(0, n, size=batch_size)
    pool_id, slot = divmod(step, group_by_length)
    pool = rng([seed, pool_id, 0]).integers(0, n, size=group_by_length * batch_size)
    pool = pool[np.argsort(lengths[pool], kind="stable")]
    order = rng([seed, pool_id, 1]).permutation(group_by_length)
    return pool[order[slot] * batch_size : (order[slot] + 1) * batch_size]


# Packed batches have a multiple of this many rows. 1: a batch of 64 toy solutions packs into 17
# to 19 rows of 256, so a run compiles a few shapes anyway, and rounding up would add empty rows.
PACK_ROW_MULTIPLE = 1


def pack_batch(
    batch: dict[str, np.ndarray], width: int, row_multiple: int = PACK_ROW_MULTIPLE
) -> dict[str, np.ndarray]:
    """The right-padded rows of ``batch`` packed first-fit decreasing (longest first, each into the
    first row with room) into rows of ``width`` tokens, plus ``segment_ids`` (1, 2, ... per
    sequence of a row, 0 on pads) and ``positions`` (restarting at 0 for each sequence). Rows are
    added, empty, up to a multiple of ``row_multiple``."""
    lengths = batch["attention_mask"].sum(-1).astype(int)
    if lengths.max(initial=0) > width:
        raise ValueError(f"pack_batch: a {lengths.max()}-token row does not fit width={width}")
    rows: list[list[int]] = []  # the sequences of each packed row
    room: list[int] = []
    for i in np.argsort(-lengths, kind="stable"):
        k = next((r for r, free in enumerate(room) if free >= lengths[i]), len(rows))
        if k == len(rows):
            rows.append([])
            room.append(width)
        rows[k].append(int(i))
        room[k] -= int(lengths[i])
    n = -(-len(rows) // row_multiple) * row_multiple
    out = {k: np.zeros((n, width), v.dtype) for k, v in batch.items()}
    out["segment_ids"] = np.zeros((n, width), np.int32)
    out["positions"] = np.zeros((n, width), np.int32)
    for r, members in enumerate(rows):
        at = 0
        for seg, i in enumerate(members, 1):
            m = lengths[i]
            for key, value in batch.items():
                out[key][r, at : at + m] = value[i, :m]
            out["segment_ids"][r, at : at + m] = seg
            out["positions"][r, at : at + m] = np.arange(m)
            at += m
    return out


def train_sft(
    model: nnx.Module,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    steps: int,
    batch_size: int,
    learning_rate: float,
    max_len: int,
    seed: int = 0,
    system_prompt: str | None = None,
    warmup_steps: int = 50,
    log_every: int = 50,
    log_fn: Callable[[int, float], None] | None = None,
    start_step: int = 0,
    end_step: int | None = None,
    opt_state: Any = None,
    encoded: dict[str, np.ndarray] | None = None,
    group_by_length: int = 0,
    pad_multiple: int = 0,
    pack_width: int = 0,
) -> tuple[nnx.Module, Any, list[float]]:
    """Trains ``model`` in place for ``steps`` steps of ``batch_size`` examples drawn (with a fixed
    seed, by step) from ``examples``; returns the model, the optimizer state and the loss curve.

    ``steps`` sizes the learning-rate schedule; ``start_step``, ``end_step`` and ``opt_state`` run a
    chunk of it and continue an earlier chunk exactly (the batch of step i depends only on
    (seed, i)), so callers can train in resumable chunks; pass ``encoded`` (``encode_sft``'s output)
    to skip re-tokenizing the examples on every chunk. ``group_by_length`` / ``pad_multiple`` /
    ``pack_width``: see the module docstring (0 turns each off); batches still depend only on
    (seed, i). Packed rows are cut to the longest one rounded up to ``pad_multiple``, if given.
    """
    data = (
        encoded if encoded is not None else encode_sft(examples, tokenizer, max_len, system_prompt)
    )
    graphdef, params = nnx.split(model)
    step_fn, tx = _compiled_step(graphdef, learning_rate, steps, warmup_steps)
    if opt_state is None:
        opt_state = tx.init(params)
    losses = []
    lengths = data["attention_mask"].sum(-1)
    end_step = steps if end_step is None else min(end_step, steps)
    for i in range(start_step, end_step):
        idx = batch_indices(lengths, batch_size, seed, i, group_by_length)
        batch = {k: v[idx] for k, v in data.items()}
        if pack_width:
            batch = pack_batch(batch, pack_width)
        if pad_multiple:
            width = batch["tokens"].shape[1]
            longest = int(batch["attention_mask"].sum(-1).max())
            keep = min(width, -(-longest // pad_multiple) * pad_multiple)
            batch = {k: v[:, :keep] for k, v in batch.items()}
        params, opt_state, loss = step_fn(params, opt_state, batch)
        if (i + 1) % log_every == 0 or i + 1 == end_step:
            losses.append(float(loss))
            if log_fn is not None:
                log_fn(i + 1, losses[-1])
    nnx.update(model, params)
    return model, opt_state, losses
