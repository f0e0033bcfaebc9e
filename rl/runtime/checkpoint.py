"""Orbax checkpoints of everything a run needs to continue exactly.

One checkpoint per saved iteration holds the train state (parameters, optimizer states, update
count; restored straight into its shardings) and a JSON item with the loop's host-side state (the
iteration, the RNG seed path, the data iterator position, counters). Saving is synchronous and
atomic (orbax writes to a temporary directory and renames), so a run killed at any point resumes
from the last complete checkpoint; the last ``keep`` are kept.

Multi-host: every process calls ``save`` and ``restore`` (each writes and reads its own shards;
orbax's primary process writes the metadata and finalises), into one directory all hosts share:
on TPU pods a ``gs://`` path, which reaches orbax unchanged (local paths are made absolute).
"""

from __future__ import annotations

import os
from typing import Any

import jax
import orbax.checkpoint as ocp

from rl.runtime.distributed import run_path


class Checkpointer:
    def __init__(self, directory: str | os.PathLike, keep: int):
        # gs:// paths are handled by orbax/etils; local paths must be absolute.
        self.directory = run_path(directory)
        options = ocp.CheckpointManagerOptions(
            max_to_keep=keep, enable_async_checkpointing=False, create=True
        )
        self._manager = ocp.CheckpointManager(
            self.directory, options=options, item_names=("state", "loop")
        )

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, loop: dict[str, Any]) -> None:
        self._manager.save(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)
            ),
            force=True,
        )
        self._manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """``abstract_state``: a pytree of arrays or ShapeDtypeStructs carrying target shardings."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self._manager.restore(
            step,
            args=ocp.args.Composite(
                state=ocp.args.StandardRestore(target), loop=ocp.args.JsonRestore()
            ),
        )
        return out["state"], out["loop"]

    def close(self) -> None:
        self._manager.close()
