"""Orbax checkpoints of everything a run needs to continue exactly, and what happens when one is
damaged or cannot be written.

One checkpoint per saved iteration holds the train state (parameters, optimizer states, update
count; restored straight into its shardings) and a JSON item with the loop's host-side state (the
iteration, the RNG seed path, the data iterator position, counters). Saving is synchronous and
atomic (orbax writes ``<step>.orbax-checkpoint-tmp`` and renames it to ``<step>`` when complete;
the manager only lists complete ``<step>`` directories), so a run killed at any point resumes from
the last complete checkpoint; the last ``keep`` are kept.

Damage. A complete checkpoint can still fail to read: truncated or partially synced files (on a
``gs://`` bucket an ordinary event), a lost item. ``restore_latest`` tries the newest first and
falls back to older ones; a checkpoint that fails is renamed ``<step>.corrupt`` (never deleted:
kept for inspection; orbax ignores the name, and never garbage-collects it) with a warning naming
it and the error. If none restores, ``CheckpointError`` lists each and why, and renames nothing:
a config that no longer matches the run's checkpoints fails that way on every one of them, and the
checkpoints must survive it. Not detected: bytes altered without changing any file's length or
structure (orbax keeps no checksums).

Write failures (disk full, permission, quota) raise ``CheckpointWriteError`` naming the step's
path and the cause; the earlier checkpoints are untouched, and the partial write stays a
``.orbax-checkpoint-tmp`` directory, which is never listed or restored (a later save of the same
step replaces it).

Multi-host: every process calls ``save`` and ``restore*`` (each writes and reads its own shards;
orbax's primary process writes the metadata and finalises), into one directory all hosts share:
on TPU pods a ``gs://`` path, which reaches orbax unchanged (local paths are made absolute).
``restore_latest`` takes one decision on all of them: the steps tried are process 0's listing,
and a step counts as restored only if it restored on every process (one collective per step
tried). Reads go through the item handlers directly, without orbax's post-restore barrier, which
a process that failed would never reach.
"""

from __future__ import annotations

import errno
import logging
import os
import re
from collections.abc import Sequence
from typing import Any

import jax
import orbax.checkpoint as ocp
from orbax.checkpoint.checkpoint_manager import StepAlreadyExistsError

from rl.runtime import distributed
from rl.runtime.distributed import run_path

logger = logging.getLogger(__name__)

CORRUPT_SUFFIX = ".corrupt"
_TMP_MARK = ".orbax-checkpoint-tmp"
_REASON_CHARS = 400  # tensorstore errors carry their whole spec; the head says what failed


class CheckpointError(RuntimeError):
    """No checkpoint of the directory restores; the message lists each one and why."""


class CheckpointWriteError(RuntimeError):
    """A checkpoint could not be written; the message names its path and the cause."""


def _first_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()[0] if str(error).strip() else ""
    text = f"{type(error).__name__}: {text}" if text else type(error).__name__
    return text if len(text) <= _REASON_CHARS else text[: _REASON_CHARS - 3] + "..."


def _os_cause(error: BaseException) -> str | None:
    """The operating-system error under ``error`` (an ``OSError`` in its chain, or the code that
    tensorstore writes into its messages as ``os_error_code='28'``), as ``"No space left on
    device (ENOSPC)"``; None when there is none."""
    seen: BaseException | None = error
    while seen is not None:
        code = seen.errno if isinstance(seen, OSError) else None
        if code is None:
            match = re.search(r"os_error_code='?(\d+)", str(seen))
            code = int(match.group(1)) if match else None
        if code:
            return f"{os.strerror(code)} ({errno.errorcode.get(code, code)})"
        seen = seen.__cause__ or seen.__context__
    return None


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
        self._state_reader = ocp.StandardCheckpointHandler()
        self._loop_reader = ocp.JsonCheckpointHandler()

    def latest_step(self) -> int | None:
        return self._manager.latest_step()

    def save(self, step: int, state: Any, loop: dict[str, Any]) -> None:
        try:
            self._manager.save(
                step,
                args=ocp.args.Composite(
                    state=ocp.args.StandardSave(state), loop=ocp.args.JsonSave(loop)
                ),
                force=True,
            )
            self._manager.wait_until_finished()
        except StepAlreadyExistsError:
            raise  # a caller's mistake, not a failed write
        except Exception as e:
            raise CheckpointWriteError(self._write_failure(step, e)) from e

    def _write_failure(self, step: int, error: BaseException) -> str:
        earlier = [s for s in self._manager.all_steps() if s != step]
        partial = sorted(os.fspath(p) for p in self.directory.glob(f"{step}{_TMP_MARK}*"))
        cause = _os_cause(error)
        detail = _first_line(error)
        text = f"could not write checkpoint {step} to {self.directory / str(step)}: "
        text += f"{cause} [{detail}]" if cause else detail
        text += (
            f". The earlier checkpoints {earlier} are intact; rerunning the same command resumes "
            f"from {max(earlier)}."
            if earlier
            else ". No earlier checkpoint: a rerun starts from the beginning."
        )
        if partial:
            text += (
                f" The partial write {partial} is not a checkpoint (never restored; delete it to "
                "free its space)."
            )
        return text

    def restore(self, step: int, abstract_state: Any) -> tuple[Any, dict[str, Any]]:
        """``abstract_state``: a pytree of arrays or ShapeDtypeStructs carrying target shardings.

        Reads the items through their handlers: no barrier, so a read that raises on one process
        does not leave the others waiting (``restore_latest`` makes them agree instead).
        """
        target = jax.tree.map(ocp.utils.to_shape_dtype_struct, abstract_state)
        path = self.directory / str(step)
        state = self._state_reader.restore(path / "state", args=ocp.args.StandardRestore(target))
        loop = self._loop_reader.restore(path / "loop", args=ocp.args.JsonRestore())
        return state, loop

    def restore_latest(self, abstract_state: Any) -> tuple[int, Any, dict[str, Any]] | None:
        """The newest checkpoint that restores, as ``(step, state, loop)``; None when there is
        none. Restoring validates too: orbax checks each array against ``abstract_state``'s
        shapes and dtypes, and the loop item must be a JSON object.

        Newer checkpoints that failed are moved aside to ``<step>.corrupt`` once an older one has
        restored; if none restores, raises ``CheckpointError`` listing each and moves nothing.
        """
        steps = distributed.main_process_ints(sorted(self._manager.all_steps(), reverse=True))
        failed: list[tuple[int, str]] = []
        for step in steps:
            restored, error = None, None
            try:
                state, loop = self.restore(step, abstract_state)
                if not isinstance(loop, dict):
                    raise ValueError(f"loop item is {type(loop).__name__}, not a JSON object")
                restored = (step, state, loop)
            except Exception as e:  # any read or validation error: try the previous one
                error = e
            where = distributed.failing_processes(error is not None)
            if not where:
                self._move_aside([s for s, _ in failed], step)
                return restored
            reason = _first_line(error) if error is not None else f"failed on processes {where}"
            logger.warning(
                "checkpoint %s does not restore (%s)%s",
                self.directory / str(step),
                reason,
                "; trying the previous one" if step != steps[-1] else "",
            )
            failed.append((step, reason))
        if failed:
            listing = "\n".join(f"  {self.directory / str(s)}: {why}" for s, why in failed)
            raise CheckpointError(
                f"no checkpoint in {self.directory} restores:\n{listing}\nThey are left in "
                f"place. If the config changed, run it in a new --workdir; otherwise move the "
                f"damaged ones aside (a run without checkpoints starts from the beginning)."
            )
        return None

    def _move_aside(self, steps: Sequence[int], restored: int) -> None:
        """Renames each damaged ``<step>`` to ``<step>.corrupt`` (``.corrupt.1``, ... if taken)
        on process 0, then every process re-lists the directory. A rename that fails stops the
        run on every process (left in place, the damaged step would be restored again, or collide
        with the next save of that step)."""
        if not steps:
            return
        error = None
        if distributed.is_main_process():
            for step in steps:
                source = self.directory / str(step)
                target = self.directory / f"{step}{CORRUPT_SUFFIX}"
                n = 0
                try:
                    while target.exists():
                        n += 1
                        target = self.directory / f"{step}{CORRUPT_SUFFIX}.{n}"
                    source.rename(target)
                except Exception as e:
                    error = f"{source} could not be renamed to {target} ({_first_line(e)})"
                    break
                logger.warning(
                    "restored checkpoint %d; moved the damaged checkpoint %s aside to %s (kept, "
                    "never read again)",
                    restored,
                    source,
                    target,
                )
        if distributed.failing_processes(error is not None):  # also the barrier before reload
            raise CheckpointError(
                f"checkpoint {restored} restores, but the newer damaged checkpoints {list(steps)} "
                f"in {self.directory} must be moved aside first: "
                f"{error or 'the rename failed on process 0 (see its log)'}. Move them by hand "
                f"(e.g. to <step>.corrupt), then rerun."
            )
        self._manager.reload()

    def close(self) -> None:
        self._manager.close()
        self._state_reader.close()
