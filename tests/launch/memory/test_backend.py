"""launch.memory.backend: the environment each backend needs, set before JAX is imported.

What needs a fresh process (JAX not yet imported) runs in a subprocess.
"""

import importlib.util
import os
import pathlib
import subprocess
import sys

import pytest

from configs import topologies
from launch.memory import backend

ROOT = pathlib.Path(__file__).resolve().parents[3]


def test_fake_devices_must_be_set_before_jax_is_imported():
    with pytest.raises(RuntimeError, match="before the device count"):
        backend.set_fake_devices(32)


def test_fake_devices_replace_an_earlier_count_and_keep_other_flags():
    code = (
        "import os\n"
        "from launch.memory import backend\n"
        "backend.set_fake_devices(16)\n"
        "import jax\n"
        "print(os.environ['XLA_FLAGS'], os.environ['JAX_PLATFORMS'], jax.device_count())\n"
    )
    env = dict(
        os.environ,
        XLA_FLAGS="--xla_cpu_enable_fast_math=false --xla_force_host_platform_device_count=8",
        JAX_PLATFORMS="",
    )
    out = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, env=env, capture_output=True, text=True, check=True
    ).stdout.split()
    assert out == [
        "--xla_cpu_enable_fast_math=false",
        "--xla_force_host_platform_device_count=16",
        "cpu",
        "16",
    ]


def test_auto_picks_tpu_where_libtpu_is_installed(monkeypatch):
    assert backend.pick_backend("cpu") == "cpu"
    assert backend.pick_backend("tpu") == "tpu"
    installed = {"libtpu": object()}
    monkeypatch.setattr(importlib.util, "find_spec", lambda name: installed.get(name))
    assert backend.pick_backend("auto") == "tpu"
    installed.clear()
    assert backend.pick_backend("auto") == "cpu"
    assert backend.pick_backend("tpu") == "tpu"


def test_tpu_description_runs_jax_on_cpu_and_names_the_slice(monkeypatch):
    monkeypatch.setenv("JAX_PLATFORMS", "tpu")
    monkeypatch.delenv("TPU_ACCELERATOR_TYPE", raising=False)
    monkeypatch.setenv("TPU_WORKER_HOSTNAMES", "host-a")
    backend.prepare("tpu", topologies.get("v5e-32"))
    assert os.environ["JAX_PLATFORMS"] == "cpu"
    assert os.environ["TPU_ACCELERATOR_TYPE"] == "v5e-32"
    assert os.environ["TPU_WORKER_HOSTNAMES"] == "host-a"  # one already set is kept
