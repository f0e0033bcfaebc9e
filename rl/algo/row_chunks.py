"""A row-wise function applied block by block: peak memory set by the block, not by the batch.

``row_chunked(fn, rows, batched_argnums)`` returns a function with ``fn``'s signature and values
that runs ``fn`` on blocks of ``rows`` rows under ``lax.map`` (one compiled body, executed
sequentially), for a ``fn`` whose every output row depends only on the same input row (a model's
forward over sequences, log-probs of sampled tokens). The trainer wraps its scoring pass in it
(``rollout.score_rows``): at hundreds of samples per prompt a single pass over the rollout would
hold every model's ``[rows, S, V]`` logits at once.

Blocks are strided, as ``rl.algo.update``'s microbatches: block j holds rows j, j + n, j + 2n, ...
(n blocks). With the batch sharded over devices on its leading axis, the reshape to ``[rows, n]``
keeps that sharding on the block's own axis, so every device holds its share of every block and
the loop moves no rows between devices. A batch that ``rows`` does not divide is padded with copies
of its last row (real inputs: no masked-out row reaches ``fn``), whose outputs are dropped.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp


def _leading(tree: Any, what: str) -> int:
    sizes = {x.shape[0] if x.ndim else None for x in jax.tree.leaves(tree)}
    if len(sizes) != 1 or None in sizes:
        raise ValueError(
            f"row_chunked: every array of {what} needs the same leading (row) axis; "
            f"got leading sizes {sorted(sizes, key=str)}"
        )
    return sizes.pop()


def row_chunked(
    fn: Callable[..., Any], rows: int, batched_argnums: Sequence[int] | None = None
) -> Callable[..., Any]:
    """``fn`` over blocks of ``rows`` rows. ``rows`` = 0 returns ``fn`` itself (one pass).

    ``batched_argnums``: the positional arguments whose arrays have the row axis first (default:
    all); the others (parameters) are passed whole to every block. Every output leaf must have
    the row axis first. A batch of at most ``rows`` rows runs ``fn`` once, unpadded.
    """
    if not isinstance(rows, int) or isinstance(rows, bool) or rows < 0:
        raise ValueError(f"row_chunked: rows must be an integer >= 0 (0: no blocks), got {rows!r}")
    if rows == 0:
        return fn

    def chunked(*args):
        which = range(len(args)) if batched_argnums is None else batched_argnums
        batched = {i: args[i] for i in which}
        b = _leading(batched, f"arguments {sorted(batched)}")
        if b <= rows:
            return fn(*args)
        n = -(-b // rows)  # blocks

        def split(x):  # [b, ...] -> [n, rows, ...]; block j = rows j, j + n, ...
            pad = n * rows - b
            if pad:
                x = jnp.concatenate([x, jnp.repeat(x[-1:], pad, axis=0)], axis=0)
            return jnp.swapaxes(x.reshape((rows, n) + x.shape[1:]), 0, 1)

        def body(block):
            full = list(args)
            for i, x in block.items():
                full[i] = x
            out = fn(*full)
            got = _leading(out, f"the outputs of {getattr(fn, '__name__', 'fn')}")
            if got != rows:
                raise ValueError(
                    f"row_chunked: {getattr(fn, '__name__', 'fn')} returned {got} rows for a "
                    f"block of {rows}: it must map [B, ...] to [B, ...] row by row"
                )
            return out

        out = jax.lax.map(body, jax.tree.map(split, batched))

        def merge(y):  # [n, rows, ...] -> [b, ...]
            return jnp.swapaxes(y, 0, 1).reshape((n * rows,) + y.shape[2:])[:b]

        return jax.tree.map(merge, out)

    chunked.__name__ = f"row_chunked_{getattr(fn, '__name__', 'fn')}"
    return chunked
