"""Orbax checkpoints: a sharded state and the loop's JSON round-trip, the last N are kept, the
latest step survives a restart, and gs:// directories reach orbax unchanged. Faults: damaged
checkpoints are moved aside and an older one restores (or none does, and the error lists each), a
full disk stops a save without harming earlier checkpoints, and two hosts of which only one cannot
read a checkpoint fall back together."""

import errno
import json
import os
import pathlib
import re
import socket
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import orbax.checkpoint as ocp
import pytest
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec
from orbax.checkpoint.checkpoint_manager import StepAlreadyExistsError

from models.sharding import make_mesh
from rl.runtime import checkpoint as checkpoint_lib
from rl.runtime import distributed
from rl.runtime.checkpoint import Checkpointer

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def mesh():
    return make_mesh((1, 4, 2))  # all 8 fake devices


def _state(mesh, scale: float):
    w = np.arange(32, dtype=np.float32).reshape(8, 4) * scale
    return {
        "params": {
            "w": jax.device_put(w, NamedSharding(mesh, PartitionSpec("fsdp", "tensor"))),
            "b": jax.device_put(
                np.full(4, scale, np.float32), NamedSharding(mesh, PartitionSpec())
            ),
        },
        "step": jnp.int32(int(scale)),
    }


def test_save_restore_round_trip_into_the_target_shardings(tmp_path, mesh):
    ckpt = Checkpointer(tmp_path / "ckpt", keep=3)
    assert ckpt.latest_step() is None
    state = _state(mesh, 3.0)
    loop = {"iteration": 3, "seed_path": [0, 3], "data": {"epoch": 1, "position": 17}}
    ckpt.save(3, state, loop)
    # The target: fresh zeros with other shardings than the saved ones.
    other = NamedSharding(mesh, PartitionSpec("tensor", None))
    target = {
        "params": {"w": jax.device_put(np.zeros((8, 4), np.float32), other), "b": jnp.zeros(4)},
        "step": jnp.int32(0),
    }
    restored, restored_loop = ckpt.restore(3, target)
    ckpt.close()
    assert restored_loop == loop
    np.testing.assert_array_equal(restored["params"]["w"], state["params"]["w"])
    np.testing.assert_array_equal(restored["params"]["b"], np.full(4, 3.0))
    assert int(restored["step"]) == 3
    assert restored["params"]["w"].sharding.is_equivalent_to(other, 2)
    # Abstract targets (shapes, dtypes, shardings only) work the same.
    abstract = jax.tree.map(
        lambda x: jax.ShapeDtypeStruct(x.shape, x.dtype, sharding=x.sharding), state
    )
    again, _ = Checkpointer(tmp_path / "ckpt", keep=3).restore(3, abstract)
    assert again["params"]["w"].sharding.is_equivalent_to(state["params"]["w"].sharding, 2)
    np.testing.assert_array_equal(again["params"]["w"], state["params"]["w"])


def test_keeps_the_last_n_and_a_restart_sees_the_latest(tmp_path, mesh):
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep=2)
    for step in (1, 2, 3, 4, 5):
        ckpt.save(step, _state(mesh, float(step)), {"iteration": step})
        assert ckpt.latest_step() == step
    ckpt.close()
    assert sorted(int(p.name) for p in directory.iterdir() if p.name.isdigit()) == [4, 5]
    # A new process (a resumed run) finds the latest complete checkpoint and restores it.
    resumed = Checkpointer(directory, keep=2)
    assert resumed.latest_step() == 5
    state, loop = resumed.restore(4, _state(mesh, 0.0))
    assert loop == {"iteration": 4} and int(state["step"]) == 4
    np.testing.assert_array_equal(state["params"]["b"], np.full(4, 4.0))
    resumed.close()


def test_a_saved_step_is_never_overwritten(tmp_path, mesh):
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    ckpt.save(1, _state(mesh, 1.0), {"iteration": 1, "note": "first"})
    with pytest.raises(StepAlreadyExistsError):
        ckpt.save(1, _state(mesh, 7.0), {"iteration": 1, "note": "second"})
    state, loop = ckpt.restore(1, _state(mesh, 0.0))
    ckpt.close()
    assert loop["note"] == "first"
    np.testing.assert_array_equal(state["params"]["b"], np.full(4, 1.0))


def test_a_relative_directory_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    ckpt = Checkpointer("runs/ckpt", keep=1)
    assert os.fspath(ckpt.directory) == os.fspath((tmp_path / "runs" / "ckpt").resolve())
    assert ckpt.directory.is_dir()  # created
    ckpt.close()


def test_gs_checkpoint_directory_reaches_orbax_unchanged(monkeypatch):
    """No network: orbax's manager is replaced by one that records the directory it is given, and
    resolving a URL-like path (which would turn gs://b into a local ./gs:/b) fails the test."""
    seen = {}

    class RecordingManager:
        def __init__(self, directory, options=None, item_names=None):
            seen["directory"] = directory

    def no_resolve(self, *args, **kwargs):
        if "://" in os.fspath(self):
            raise AssertionError(f"resolve() called on {self}")
        return original_resolve(self, *args, **kwargs)

    original_resolve = type(epath.Path("/x")).resolve
    monkeypatch.setattr(type(epath.Path("/x")), "resolve", no_resolve)
    monkeypatch.setattr(pathlib.Path, "resolve", no_resolve)
    monkeypatch.setattr(ocp, "CheckpointManager", RecordingManager)

    workdir = distributed.run_path("gs://bucket/runs/ppo")  # as the trainer takes --workdir
    checkpoint_lib.Checkpointer(workdir / "checkpoints", keep=2)
    assert os.fspath(seen["directory"]) == "gs://bucket/runs/ppo/checkpoints"
    checkpoint_lib.Checkpointer("gs://bucket/runs/ppo/checkpoints", keep=2)
    assert os.fspath(seen["directory"]) == "gs://bucket/runs/ppo/checkpoints"
    # Local paths still become absolute, as orbax requires.
    checkpoint_lib.Checkpointer("relative/checkpoints", keep=2)
    assert os.fspath(seen["directory"]) == os.path.abspath("relative/checkpoints")


# --- faults: damaged checkpoints, failed writes, hosts that disagree ------------------------------


def _truncate(files) -> int:
    """Cuts each file to half its length, as a partial write or sync leaves it."""
    count = 0
    for f in files:
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
            count += 1
    return count


def _array_files(step_dir: pathlib.Path):
    """The OCDBT data files holding a checkpoint's arrays (not its JSON metadata)."""
    return [f for f in (step_dir / "state").rglob("*") if f.parent.name == "d"]


def _names(directory: pathlib.Path) -> list[str]:
    return sorted(p.name for p in directory.iterdir())


def test_restore_latest_is_none_without_checkpoints(tmp_path, mesh):
    ckpt = Checkpointer(tmp_path / "ckpt", keep=2)
    assert ckpt.restore_latest(_state(mesh, 0.0)) is None
    ckpt.close()


def test_damaged_checkpoints_are_moved_aside_and_the_newest_good_one_restores(
    tmp_path, mesh, caplog
):
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep=3)
    for step in (1, 2, 3):
        ckpt.save(step, _state(mesh, float(step)), {"iteration": step})
    ckpt.close()
    assert _truncate(_array_files(directory / "3")) > 0  # arrays cut short
    (directory / "2" / "loop" / "metadata").unlink()  # an item lost
    resumed = Checkpointer(directory, keep=3)
    assert resumed.latest_step() == 3
    with caplog.at_level("WARNING", logger="rl.runtime.checkpoint"):
        step, state, loop = resumed.restore_latest(_state(mesh, 0.0))
    assert (step, loop) == (1, {"iteration": 1})
    np.testing.assert_array_equal(state["params"]["w"], np.arange(32).reshape(8, 4))
    assert _names(directory) == ["1", "2.corrupt", "3.corrupt"]
    warnings = [r.getMessage() for r in caplog.records]
    assert any(
        f"checkpoint {directory / '3'} does not restore (ValueError: OUT_OF_RANGE" in w
        for w in warnings
    ), warnings
    assert any(
        f"checkpoint {directory / '2'} does not restore (FileNotFoundError" in w for w in warnings
    ), warnings
    assert any(
        f"restored checkpoint 1; moved the damaged checkpoint {directory / '3'} aside to "
        f"{directory / '3.corrupt'}" in w
        for w in warnings
    ), warnings
    # The run goes on: the same steps are saved again, and a later damage of one of them is moved
    # aside next to the first one, which is never overwritten.
    assert resumed.latest_step() == 1
    for step in (2, 3):
        resumed.save(step, _state(mesh, float(step)), {"iteration": step})
    resumed.close()
    _truncate(_array_files(directory / "3"))
    again = Checkpointer(directory, keep=3)
    assert again.restore_latest(_state(mesh, 0.0))[0] == 2
    again.close()
    assert _names(directory) == ["1", "2", "2.corrupt", "3.corrupt", "3.corrupt.1"]


def test_when_no_checkpoint_restores_the_error_lists_each_and_moves_nothing(tmp_path, mesh):
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep=3)
    for step in (1, 2):
        ckpt.save(step, _state(mesh, float(step)), {"iteration": step})
    _truncate([directory / "2" / "state" / "_METADATA"])
    with pytest.raises(checkpoint_lib.CheckpointError) as failure:
        # A target the checkpoints do not fit (a changed config) fails on each of them.
        ckpt.restore_latest({"params": {"w": jnp.zeros((4, 4)), "b": jnp.zeros(4)}, "step": 0})
    ckpt.close()
    message = str(failure.value)
    assert f"no checkpoint in {directory} restores:" in message
    assert f"{directory / '2'}: JSONDecodeError" in message
    assert f"{directory / '1'}: ValueError" in message and "(4, 4)" in message, message
    assert "left in place" in message
    assert _names(directory) == ["1", "2"]


def test_a_damaged_checkpoint_that_cannot_be_moved_aside_stops_the_run(tmp_path, mesh, monkeypatch):
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep=3)
    for step in (1, 2):
        ckpt.save(step, _state(mesh, float(step)), {"iteration": step})
    _truncate(_array_files(directory / "2"))

    def read_only(self, target):
        raise PermissionError(errno.EACCES, os.strerror(errno.EACCES), os.fspath(self))

    monkeypatch.setattr(type(ckpt.directory), "rename", read_only)
    with pytest.raises(checkpoint_lib.CheckpointError) as failure:
        ckpt.restore_latest(_state(mesh, 0.0))
    ckpt.close()
    message = str(failure.value)
    assert "checkpoint 1 restores, but the newer damaged checkpoints [2]" in message
    assert f"{directory / '2'} could not be renamed to {directory / '2.corrupt'}" in message
    assert "PermissionError" in message and "Move them by hand" in message
    assert _names(directory) == ["1", "2"]


def test_a_full_disk_stops_the_save_naming_the_path_and_leaves_earlier_checkpoints(
    tmp_path, mesh, monkeypatch
):
    """``OSError(ENOSPC)`` injected at the writer of the state's ``_METADATA`` (written after the
    array files): the checkpoint is half on disk, as when a disk fills up mid-write."""
    directory = tmp_path / "ckpt"
    ckpt = Checkpointer(directory, keep=3)
    ckpt.save(1, _state(mesh, 1.0), {"iteration": 1})
    path_type = type(ckpt.directory)
    write_text = path_type.write_text

    def full_disk(self, *args, **kwargs):
        if self.name == "_METADATA" and ".orbax-checkpoint-tmp" in os.fspath(self):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), os.fspath(self))
        return write_text(self, *args, **kwargs)

    monkeypatch.setattr(path_type, "write_text", full_disk)
    with pytest.raises(checkpoint_lib.CheckpointWriteError) as failure:
        ckpt.save(2, _state(mesh, 2.0), {"iteration": 2})
    monkeypatch.undo()
    ckpt.close()
    message = str(failure.value)
    assert message.startswith(
        f"could not write checkpoint 2 to {directory / '2'}: No space left on device (ENOSPC)"
    ), message
    assert "The earlier checkpoints [1] are intact" in message
    partial = [n for n in _names(directory) if n.startswith("2.")]
    assert partial and all(".orbax-checkpoint-tmp" in n for n in partial), partial
    assert f"The partial write {[os.fspath(directory / n) for n in partial]}" in message
    # Nothing half-written is taken for a checkpoint: a resumed run sees 1 and restores it.
    resumed = Checkpointer(directory, keep=3)
    assert resumed.latest_step() == 1
    step, state, _ = resumed.restore_latest(_state(mesh, 0.0))
    assert step == 1 and int(state["step"]) == 1
    # Space freed, the same step is written over the partial one.
    resumed.save(2, _state(mesh, 2.0), {"iteration": 2})
    assert resumed.restore_latest(_state(mesh, 0.0))[0] == 2
    resumed.close()
    assert _names(directory) == ["1", "2"]


TWO_HOSTS = """
import json, pathlib, sys
import jax
jax.distributed.initialize(sys.argv[1], num_processes=2, process_id=int(sys.argv[2]))
import numpy as np
from jax.experimental import multihost_utils
from jax.sharding import NamedSharding, PartitionSpec
from rl.runtime import distributed
from rl.runtime.checkpoint import Checkpointer

directory = pathlib.Path(sys.argv[3])
sharding = NamedSharding(jax.make_mesh((2,), ("fsdp",)), PartitionSpec("fsdp"))
# Large enough that OCDBT stores each host's shard in that host's own data files, not inline.
w = np.arange(1 << 16, dtype=np.float32)
state = lambda scale: {"w": distributed.to_global(w * scale, sharding)}
empty = Checkpointer(directory.parent / "empty", keep=1)
assert empty.restore_latest(state(0.0)) is None  # a first run: nothing to agree on
empty.close()
ckpt = Checkpointer(directory, keep=3)
for step in (1, 2):
    ckpt.save(step, state(float(step)), {"iteration": step})
multihost_utils.sync_global_devices("saved")
if jax.process_index() == 1:  # only this host's shards of checkpoint 2 are cut short
    for f in (directory / "2" / "state" / "ocdbt.process_1").rglob("*"):
        if f.is_file() and f.parent.name == "d":
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
multihost_utils.sync_global_devices("damaged")
step, restored, loop = ckpt.restore_latest(state(0.0))
shard = np.asarray(restored["w"].addressable_shards[0].data)
print(json.dumps({"step": step, "loop": loop, "shard": [shard[0].item(), shard.size],
                  "names": sorted(p.name for p in directory.iterdir())}))
ckpt.close()
"""


def test_two_hosts_take_one_decision_when_only_one_cannot_restore(tmp_path):
    """Checkpoint 2 restores on host 0 and not on host 1 (its own shards damaged): both fall back
    to 1 together, instead of one training on from 2 while the other waits or restarts."""
    with socket.socket() as s:
        s.bind(("localhost", 0))
        address = f"localhost:{s.getsockname()[1]}"
    e = {k: v for k, v in os.environ.items() if not k.startswith("JAX_")}
    e.update(JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1")
    directory = tmp_path / "ckpt"
    logs = [tmp_path / f"host{i}.log" for i in (0, 1)]
    procs = []
    for i, log in enumerate(logs):
        with log.open("w") as out:
            cmd = [sys.executable, "-c", TWO_HOSTS, address, str(i), str(directory)]
            procs.append(
                subprocess.Popen(cmd, cwd=ROOT, env=e, stdout=out, stderr=subprocess.STDOUT)
            )
    try:
        for p in procs:
            p.wait(timeout=180)
    finally:
        for p in procs:
            if p.poll() is None:
                p.kill()
                p.wait()
    outputs = [log.read_text() for log in logs]
    assert [p.returncode for p in procs] == [0, 0], outputs
    results = [json.loads(out.strip().splitlines()[-1]) for out in outputs]
    for i, result in enumerate(results):
        assert (result["step"], result["loop"]) == (1, {"iteration": 1})
        assert result["shard"] == [i * (1 << 15), 1 << 15]  # its own half of w, from 1
        assert result["names"] == ["1", "2.corrupt"]
    assert "does not restore (failed on processes [1])" in outputs[0], outputs[0]
    # Host 1 names its own read error (the wording is TensorStore's).
    assert re.search(r"ckpt/2 does not restore \((?!failed on processes).*read", outputs[1]), (
        outputs[1]
    )
