"""Multi-host: start-up, host data <-> global arrays, and the shared run directory.

On Cloud TPU VMs JAX discovers the slice from the TPU metadata; elsewhere (a CPU test with two
local processes) the coordinator is given through the standard environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Single-process runs do
nothing here. On CPU, cross-process collectives use gloo (jax's default
``jax_cpu_collectives_implementation``), so nothing needs configuring before ``initialize``.

Every process runs the same program on the same host data: each builds the full global batch from
the same seed, ``to_global`` turns it into a global ``jax.Array`` (each process fills only its own
devices' shards), and ``to_host`` brings device results back whole to every process, so the
host-side text work (decoding, verifying, step splitting) and the metrics agree on all of them.
Only process 0 writes metrics, logs and exported files; checkpoints are saved by all processes
(orbax coordinates them). With one process every helper is the plain single-process call.

The run directory may be a ``gs://`` (or other URL-like) path, as on TPU pods where it must be
shared by all hosts and outlive the VMs: ``run_path`` keeps it as an ``etils.epath.Path``.
"""

from __future__ import annotations

import contextlib
import os
from collections.abc import Iterator, Sequence
from typing import Any

import jax
import numpy as np
from etils import epath
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec


def maybe_initialize() -> None:
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]),
        )
    elif (
        os.environ.get("RLREWARD_DISTRIBUTED") == "1"
        or os.environ.get("TPU_WORKER_HOSTNAMES")
        or os.environ.get("CLOUD_TPU_TASK_ID")
    ):
        # On Cloud TPU VMs JAX reads the slice from the TPU metadata; launch/tpu.sh run sets
        # RLREWARD_DISTRIBUTED=1, as an ssh shell need not export the TPU variables.
        jax.distributed.initialize()


def is_main_process() -> bool:
    """The process that writes metrics, logs and exported files."""
    return jax.process_index() == 0


def to_global(tree: Any, sharding: jax.sharding.Sharding) -> Any:
    """Host arrays (the same full value on every process) as global arrays with ``sharding``.

    One process: ``jax.device_put``. Several: ``jax.make_array_from_callback``, each process
    copying only the slices its own devices hold; unlike ``device_put`` of a numpy array onto
    non-addressable devices, this does not all-gather the value to check it is the same everywhere.
    """
    if jax.process_count() == 1 or sharding.is_fully_addressable:
        return jax.device_put(tree, sharding)

    def one(x):
        if isinstance(x, jax.Array) and not x.is_fully_addressable:
            return jax.device_put(x, sharding)  # already global: a reshard
        x = np.asarray(x)
        return jax.make_array_from_callback(x.shape, sharding, lambda index: x[index])

    return jax.tree.map(one, tree)


def _identity(tree):
    return tree


def to_host(tree: Any) -> Any:
    """Numpy copies of a pytree of arrays, each the whole global value, on every process.

    One process: ``jax.device_get``. Several: arrays sharded over devices of other processes are
    first all-gathered into a replicated copy (one compiled identity program for the whole tree);
    replicated arrays are read from a local device.
    """
    if jax.process_count() == 1:
        return jax.device_get(tree)
    leaves, treedef = jax.tree.flatten(tree)
    split = [
        i
        for i, x in enumerate(leaves)
        if isinstance(x, jax.Array) and not x.is_fully_addressable and not x.is_fully_replicated
    ]
    named = [i for i in split if isinstance(leaves[i].sharding, NamedSharding)]
    if named:
        out_shardings = [NamedSharding(leaves[i].sharding.mesh, PartitionSpec()) for i in named]
        gathered = jax.jit(_identity, out_shardings=out_shardings)([leaves[i] for i in named])
        for i, x in zip(named, gathered):
            leaves[i] = x
    for i in split:  # other shardings (none in this project): one collective per array
        if i not in named:
            leaves[i] = multihost_utils.process_allgather(leaves[i], tiled=True)
    return jax.device_get(jax.tree.unflatten(treedef, leaves))


def any_process(flag: bool) -> bool:
    """Whether ``flag`` is True on any process; a collective, so every process must call it.

    For host-side decisions that change the program's control flow (stopping on SIGTERM, which
    reaches the hosts of a pod at different moments): all processes must take the same branch.
    """
    if jax.process_count() == 1:
        return bool(flag)
    return bool(np.any(multihost_utils.process_allgather(np.int32(flag))))


def failing_processes(failed: bool) -> list[int]:
    """The indices of the processes on which ``failed`` is True; a collective, so every process
    must call it, and all get the same list.

    For decisions every host must take alike although each saw only its own part (a checkpoint
    whose shards restored on some hosts and not on others is unusable on all of them).
    """
    if jax.process_count() == 1:
        return [0] if failed else []
    flags = np.asarray(multihost_utils.process_allgather(np.int32(failed)))
    return [int(i) for i in np.flatnonzero(flags)]


def main_process_ints(values: Sequence[int]) -> list[int]:
    """Process 0's list of integers, on every process (a collective; the lists may differ in
    length). For listings each host reads itself (a shared directory mid-sync): all act on one."""
    if jax.process_count() == 1:
        return [int(v) for v in values]
    n = int(multihost_utils.broadcast_one_to_all(np.int32(len(values))))
    if n == 0:
        return []
    mine = np.zeros(n, np.int32)
    if is_main_process():
        mine[:] = np.asarray(values, np.int32)
    return [int(v) for v in multihost_utils.broadcast_one_to_all(mine)]


@contextlib.contextmanager
def main_process_first(name: str) -> Iterator[None]:
    """Process 0 runs the block first, then the others (a barrier between): for builds into a
    cache directory the hosts may share (a TFDS ``data_dir`` on ``gs://`` or NFS), which
    concurrent writers would race on, while a host-local cache is still built on every host.
    Every process must enter it, under the same ``name``.
    """
    if jax.process_count() == 1:
        yield
        return
    if not is_main_process():
        multihost_utils.sync_global_devices(name)
    yield
    if is_main_process():
        multihost_utils.sync_global_devices(name)


def is_remote(path: str | os.PathLike) -> bool:
    """A URL-like path (``gs://``, ``s3://``, ...), which must never be resolved as a local one."""
    return "://" in os.fspath(path)


def run_path(path: str | os.PathLike) -> epath.Path:
    """A run directory as an ``epath.Path``: ``gs://`` kept as is, a local path made absolute.

    ``pathlib.Path("gs://b/run")`` would collapse the scheme's ``//`` into ``gs:/b/run``, a local
    directory named ``gs:``; ``epath`` keeps the URL and reads/writes it through gcsfs or tf.io.
    """
    path = os.fspath(path)
    return epath.Path(path) if is_remote(path) else epath.Path(path).resolve()
