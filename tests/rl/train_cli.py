"""Helpers for tests that run `python -m rl.train` as a subprocess, as a user does."""

import json
import os
import pathlib
import sys

import jax
import numpy as np
import orbax.checkpoint as ocp

from rl.runtime.checkpoint import Checkpointer


def subprocess_env(tmp_path_factory):
    """Subprocess environment: a shared compilation cache and TFDS dir, so runs after the first
    skip most of their compilation; one CPU device (the smoke mesh is (1, -1, 1))."""
    cache = tmp_path_factory.mktemp("cache")
    e = dict(os.environ)
    e.update(
        JAX_COMPILATION_CACHE_DIR=str(cache / "jax"),
        JAX_PLATFORMS="cpu",
        XLA_FLAGS="--xla_force_host_platform_device_count=1",
    )
    e.pop("JAX_COORDINATOR_ADDRESS", None)
    return e, str(cache / "tfds")


def train_command(workdir, data_dir, *overrides):
    return [
        sys.executable,
        "-m",
        "rl.train",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        *overrides,
    ]


def metrics(workdir):
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def final_state(workdir):
    """The last checkpoint's arrays, as numpy."""
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", keep=3)
    step = ckpt.latest_step()
    directory = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
    restored = ocp.StandardCheckpointer().restore(directory)
    ckpt.close()
    return step, jax.tree.map(np.asarray, restored)
