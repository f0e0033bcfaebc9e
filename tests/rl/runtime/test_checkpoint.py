"""Orbax checkpoints: a sharded state and the loop's JSON round-trip, the last N are kept, the
latest step survives a restart, and gs:// directories reach orbax unchanged."""

import os
import pathlib

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
