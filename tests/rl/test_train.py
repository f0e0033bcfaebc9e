"""`python -m rl.train`, as a user runs it: the smoke run, SIGKILL and resume to the same final
state, and config errors reported before anything compiles."""

import pathlib
import signal
import subprocess
import time

import jax
import numpy as np
import pytest

from configs import smoke
from tests.rl.train_cli import final_state as _final_state
from tests.rl.train_cli import metrics as _metrics
from tests.rl.train_cli import train_command as _cmd

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_smoke_run_then_sigkill_and_resume_match_uninterrupted(tmp_path, env):
    e, data_dir = env
    iters = smoke.get_config().train.iterations

    straight = tmp_path / "straight"
    t0 = time.perf_counter()
    proc = subprocess.run(
        _cmd(straight, data_dir), cwd=ROOT, env=e, capture_output=True, text=True, timeout=300
    )
    seconds = time.perf_counter() - t0
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert seconds < 120, f"smoke run took {seconds:.0f}s"
    records = _metrics(straight)
    assert [r["step"] for r in records] == list(range(1, iters + 1))
    for key in (
        "reward/success",
        "reward/prm_raw",
        "reward/prm_shaped",
        "reward/kl",
        "rollout/response_length",
        "rollout/steps_per_response",
        "rollout/repeated_step_fraction",
        "update/policy_loss",
        "update/value_loss",
        "update/clip_frac",
        "update/approx_kl",
        "update/entropy",
        "value/explained_variance",
        "time/rollout_tokens_per_s",
        "time/update",
    ):
        assert key in records[-1], key
    assert (straight / "tensorboard").is_dir()

    # Kill a second run with SIGKILL after its first checkpoint, re-run the same command.
    killed = tmp_path / "killed"
    proc = subprocess.Popen(
        _cmd(killed, data_dir),
        cwd=ROOT,
        env=e,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    deadline = time.time() + 240
    while time.time() < deadline and len(_metrics(killed)) < 3:
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    interrupted_at = len(_metrics(killed))
    assert 3 <= interrupted_at < iters, interrupted_at
    proc = subprocess.run(
        _cmd(killed, data_dir), cwd=ROOT, env=e, capture_output=True, text=True, timeout=300
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in _metrics(killed)] == list(range(1, iters + 1))

    step_a, state_a = _final_state(straight)
    step_b, state_b = _final_state(killed)
    assert step_a == step_b == iters
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    # Metrics after the resume equal the uninterrupted run's, iteration by iteration.
    for ra, rb in zip(_metrics(straight), _metrics(killed), strict=True):
        assert ra["reward/success"] == rb["reward/success"]
        assert ra["update/policy_loss"] == pytest.approx(rb["update/policy_loss"], abs=0)


def test_config_error_is_reported_before_compiling(tmp_path, env):
    e, data_dir = env
    proc = subprocess.run(
        _cmd(tmp_path, data_dir, "--config.ppo.minibatches=3"),
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "config.ppo.minibatches=3" in proc.stderr
