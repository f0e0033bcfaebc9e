"""How one rollout's rows split into PPO minibatches, microbatches and scoring blocks.

A rollout has ``data.prompts_per_batch x data.samples_per_prompt`` rows. With hundreds of samples
per prompt (BroRL) that number is set by the study, not by the accelerator's memory, so the pieces
the device works on are sized in rows instead: ``ppo.microbatch_rows`` (the update) and
``rollout.score_rows`` (the scoring pass). This module checks that the counts divide, resolves
``microbatch_rows`` into the number of microbatches the update code reads, and, once the mesh is
known, that every piece splits over the devices the batch is sharded on. Every error names the
config keys and values, before anything is compiled.

``rl.config`` calls ``split_batch`` on the validated sections (it takes them as arguments: this
module sits below ``rl.config``); the trainer calls ``check_mesh_split`` once it has a mesh.
"""

from __future__ import annotations

import dataclasses
from typing import Any

from rl.config_base import ConfigError, _fail


@dataclasses.dataclass(frozen=True)
class BatchSplit:
    """Row counts of one rollout and of the pieces it is updated in."""

    rows: int  # the rollout: prompts_per_batch x samples_per_prompt
    update_rows: int  # one PPO update (a minibatch)
    microbatches: int  # per minibatch (ppo.microbatches, or derived from ppo.microbatch_rows)
    micro_rows: int  # one microbatch: what the update's activations scale with


def split_batch(data: Any, ppo: Any) -> BatchSplit:
    """The split for a ``DataConfig`` and a ``PPOConfig``.

    ``ppo.microbatch_rows`` > 0 takes precedence: the number of microbatches is the minibatch's
    rows divided by it. An explicit ``ppo.microbatches`` next to it must be 1 (its default) or
    that same number (as in a resolved config.json read back), never a different one.
    """
    rows = data.prompts_per_batch * data.samples_per_prompt
    made = (
        f"data.prompts_per_batch={data.prompts_per_batch} x "
        f"data.samples_per_prompt={data.samples_per_prompt}"
    )
    if rows % ppo.minibatches:
        _fail("ppo.minibatches", ppo.minibatches, f"must divide the {rows} rollout rows ({made})")
    update_rows = rows // ppo.minibatches
    of_minibatch = (
        f"the {update_rows} rows of a minibatch ({made} / ppo.minibatches={ppo.minibatches})"
    )
    if not ppo.microbatch_rows:
        if update_rows % ppo.microbatches:
            _fail("ppo.microbatches", ppo.microbatches, f"must divide {of_minibatch}")
        microbatches = ppo.microbatches
    else:
        if update_rows % ppo.microbatch_rows:
            _fail("ppo.microbatch_rows", ppo.microbatch_rows, f"must divide {of_minibatch}")
        microbatches = update_rows // ppo.microbatch_rows
        if ppo.microbatches not in (1, microbatches):
            _fail(
                "ppo.microbatches",
                ppo.microbatches,
                f"set with ppo.microbatch_rows={ppo.microbatch_rows}, which makes "
                f"{microbatches} microbatches of {of_minibatch}; set only one of the two",
            )
    return BatchSplit(rows, update_rows, microbatches, update_rows // microbatches)


def check_mesh_split(split: BatchSplit, score_rows: int, mesh_shape: Any, shards: int) -> None:
    """The batch is sharded over ``shards`` = data x fsdp devices: a microbatch and a scoring
    block (``rollout.score_rows``, 0: the whole rollout) must split evenly over them (a block that
    does not would be computed whole on every device)."""
    if split.micro_rows % shards:
        raise ConfigError(
            f"config.mesh.shape={tuple(mesh_shape)}: the update batch is split over "
            f"data x fsdp = {shards} devices, which must divide the {split.micro_rows} rows of "
            "a microbatch (prompts_per_batch x samples_per_prompt / ppo.minibatches / "
            "ppo.microbatches); use more rows or a mesh with fewer data/fsdp devices"
        )
    if score_rows % shards:
        _fail(
            "rollout.score_rows",
            score_rows,
            f"each block of the scoring pass is split over data x fsdp = {shards} devices "
            f"(config.mesh.shape={tuple(mesh_shape)}): use a multiple of {shards}",
        )
