"""Orbax checkpoints of everything a run needs to continue exactly.

One checkpoint per saved iteration holds the train state (parameters, optimizer states, update
count; restored straight into its shardings) and a JSON item with the loop's host-side state (the
iteration, the RNG seed path, the data iterator position, counters). Saving is synchronous and
atomic (orbax writes to a temporary directory and renames), so a run killed at any point resumes
from the last complete checkpoint; the last ``keep`` are kept.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import orbax.checkpoint as ocp


class Checkpointer:
    def __init__(self, directory: str | Path, keep: int):
        # gs:// paths are handled by orbax/etils; local paths must be absolute.
        directory = str(directory)
        if "://" not in directory:
            directory = str(Path(directory).resolve())
        options = ocp.CheckpointManagerOptions(max_to_keep=keep, enable_async_checkpointing=False,
                                               create=True)
        self._manager = ocp.CheckpointManager(directory, options=options,
                                              item_names=("state", "loop"))

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, loop: dict[str, Any]) -> None:
        self._manager.save(step, args=ocp.args.Composite(
            state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)), force=True)
        self._manager.wait_until_finished()

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """``abstract_state``: a pytree of arrays or ShapeDtypeStructs carrying target shardings."""
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        out = self._manager.restore(step, args=ocp.args.Composite(
            state=ocp.args.StandardRestore(target), loop=ocp.args.JsonRestore()))
        return out["state"], out["loop"]

    def close(self) -> None:
        self._manager.close()
