"""The online implicit PRM (PRIME) end to end: `python -m rl.train --config=configs/prime_smoke.py`
killed with SIGKILL mid-run and resumed by the same command ends with the parameters of an
uninterrupted run, the implicit PRM's and its optimizer state included; and minibatches the mesh
cannot split fail before the model is touched. (Config errors: tests/rl/test_config_prime.py.)"""

import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import pytest
from jax.sharding import Mesh

from configs import prime_smoke
from rl.config import ConfigError, RLConfig
from rl.trainers.implicit_prm_online import CHECKPOINT_KEY, OnlineImplicitPRM
from tests.rl.train_cli import final_state, metrics

ROOT = pathlib.Path(__file__).resolve().parents[3]
ITERATIONS = prime_smoke.get_config().train.iterations  # 8, a checkpoint every 2


def _command(workdir, data_dir):
    return [
        sys.executable,
        "-m",
        "rl.train",
        "--config=configs/prime_smoke.py",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
    ]


@pytest.fixture(scope="module")
def cached_env(env):
    """The shared cache of tests/rl/conftest.py, holding every program (even those compiled in
    under a second): the killed and resumed runs load all of theirs from the first run."""
    e, data_dir = env
    return dict(e, JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0"), data_dir


def _run(workdir, env):
    e, data_dir = env
    proc = subprocess.run(
        _command(workdir, data_dir), cwd=ROOT, env=e, capture_output=True, text=True, timeout=400
    )
    assert proc.returncode == 0, proc.stderr[-3000:]


def test_killed_and_resumed_run_ends_as_the_uninterrupted_one(tmp_path, cached_env):
    env = cached_env
    straight, killed = tmp_path / "straight", tmp_path / "killed"
    _run(straight, env)
    rows = metrics(straight)
    assert [r["step"] for r in rows] == list(range(1, ITERATIONS + 1))
    first = rows[0]
    # The implicit PRM starts as the policy's copy, its reference the PPO reference: r = 0, so
    # the first loss is log 2; its step learns from the outcomes (loss_after < loss).
    assert first["implicit_prm/loss"] == pytest.approx(np.log(2), abs=1e-6)
    assert all(r["implicit_prm/loss_after"] < r["implicit_prm/loss"] for r in rows)
    assert all(r["implicit_prm/skipped"] == 0 for r in rows)
    # The random policy solves nothing: both filter rounds run, the batch is filled out of band.
    assert all(r["filter/rounds"] == 2 and r["filter/out_of_band"] == 4 for r in rows)

    e, data_dir = env
    proc = subprocess.Popen(
        _command(killed, data_dir),
        cwd=ROOT,
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 300
    while time.time() < deadline and len(metrics(killed)) < 3:  # checkpoint 2 is written
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = len(metrics(killed))
    assert 3 <= interrupted_at < ITERATIONS, interrupted_at
    _run(killed, env)
    assert [r["step"] for r in metrics(killed)] == list(range(1, ITERATIONS + 1))

    step_a, state_a = final_state(straight)
    step_b, state_b = final_state(killed)
    assert step_a == step_b == ITERATIONS
    assert int(state_a[CHECKPOINT_KEY]["step"]) == ITERATIONS  # one PRM step per iteration
    assert jax.tree.leaves(state_a[CHECKPOINT_KEY]["opt_state"])  # AdamW moments are saved
    assert jax.tree.structure(state_a) == jax.tree.structure(state_b)
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    for ra, rb in zip(metrics(straight), metrics(killed), strict=True):
        assert ra["implicit_prm/loss"] == rb["implicit_prm/loss"]
        assert ra["reward/process"] == rb["reward/process"]


def test_a_minibatch_the_mesh_cannot_split_is_named():
    """16 rows in 4 minibatches: 4 rows per step cannot be split over 8 devices (checked before
    the model is touched)."""
    c = prime_smoke.get_config()
    c.reward.implicit_prm_minibatches = 4
    cfg = RLConfig.from_config_dict(c)
    mesh = Mesh(np.array(jax.devices()).reshape(1, 8, 1), ("data", "fsdp", "tensor"))
    with pytest.raises(ConfigError, match=r"implicit_prm_minibatches=4: a microbatch of 4 rows"):
        OnlineImplicitPRM(cfg, (None, None), None, mesh, cfg.mesh.rules)
