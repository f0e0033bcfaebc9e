"""Single-process behaviour of the multi-host helpers, on the 8 fake CPU devices: host data to
sharded global arrays and back, the main-process gates, and run directories (local and gs://).

Two real processes are tested in test_multihost.py."""

import os
import pathlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from etils import epath
from jax.sharding import NamedSharding, PartitionSpec

from models.sharding import make_mesh
from rl.runtime import distributed


@pytest.fixture(scope="module")
def mesh():
    return make_mesh((2, 2, 2))


def test_to_global_shards_a_pytree_and_to_host_brings_it_back_whole(mesh):
    batch = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    host = {
        "tokens": np.arange(8 * 6, dtype=np.int32).reshape(8, 6),
        "mask": np.arange(8 * 6).reshape(8, 6) % 3 == 0,
        "reward": np.linspace(0, 1, 8, dtype=np.float32),
    }
    placed = distributed.to_global(host, batch)
    for key, x in placed.items():
        assert isinstance(x, jax.Array) and x.sharding == batch, key
        # Each of the 4 (data x fsdp) groups of devices holds 2 consecutive rows.
        for shard in x.addressable_shards:
            np.testing.assert_array_equal(shard.data, host[key][shard.index])
            assert shard.data.shape[0] == 2
    doubled = jax.jit(lambda t: jax.tree.map(lambda a: ~a if a.dtype == jnp.bool_ else a * 2, t))(
        placed
    )
    back = distributed.to_host({"doubled": doubled, "sum": doubled["reward"].sum()})
    assert isinstance(back["doubled"]["tokens"], np.ndarray)
    np.testing.assert_array_equal(back["doubled"]["tokens"], host["tokens"] * 2)
    np.testing.assert_array_equal(back["doubled"]["mask"], ~host["mask"])
    assert {k: v.dtype for k, v in back["doubled"].items()} == {k: v.dtype for k, v in host.items()}
    np.testing.assert_allclose(back["sum"], 2 * host["reward"].sum(), rtol=1e-6)


def test_to_global_reshards_an_existing_array(mesh):
    x = jnp.arange(16.0).reshape(8, 2)
    tensor = NamedSharding(mesh, PartitionSpec("tensor", None))
    y = distributed.to_global(x, tensor)
    assert y.sharding == tensor
    np.testing.assert_array_equal(distributed.to_host(y), np.arange(16.0).reshape(8, 2))


def test_main_process_gates_in_one_process():
    assert jax.process_count() == 1 and distributed.is_main_process()
    assert distributed.any_process(True) is True and distributed.any_process(False) is False
    entered = []
    with distributed.main_process_first("single"):
        entered.append(True)
    assert entered == [True]


def test_agreement_helpers_in_one_process():
    """(Across two processes: the two-host test in test_checkpoint.py.)"""
    assert distributed.failing_processes(True) == [0]
    assert distributed.failing_processes(False) == []
    assert distributed.main_process_ints([3, 1]) == [3, 1]
    assert distributed.main_process_ints([]) == []


def test_maybe_initialize_does_nothing_without_a_coordinator(monkeypatch):
    for name in (
        "JAX_COORDINATOR_ADDRESS",
        "RLREWARD_DISTRIBUTED",
        "TPU_WORKER_HOSTNAMES",
        "CLOUD_TPU_TASK_ID",
    ):
        monkeypatch.delenv(name, raising=False)
    distributed.maybe_initialize()
    assert jax.process_count() == 1 and jax.device_count() == 8


def test_run_path_keeps_urls_and_pathlib_would_not():
    run = distributed.run_path("gs://b/run")
    assert os.fspath(run / "metrics.jsonl") == "gs://b/run/metrics.jsonl"
    assert os.fspath(distributed.run_path("s3://b/run")) == "s3://b/run"
    assert str(pathlib.Path("gs://b/run")) == "gs:/b/run"  # why the trainer does not use pathlib
    assert distributed.is_remote("gs://b") and not distributed.is_remote("/tmp/gs:")


def test_run_path_makes_local_paths_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    run = distributed.run_path("runs/ppo")
    assert isinstance(run, epath.Path) and run.is_absolute()
    assert os.fspath(run) == os.fspath((tmp_path / "runs" / "ppo").resolve())
    assert distributed.run_path(pathlib.Path("runs") / "ppo") == run
    (run / "metrics.jsonl").parent.mkdir(parents=True)
    (run / "metrics.jsonl").write_text("{}\n")  # an ordinary local directory
    assert (tmp_path / "runs" / "ppo" / "metrics.jsonl").read_text() == "{}\n"
