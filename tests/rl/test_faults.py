"""Fault injection on `python -m rl.train`, as a user meets faults: a run SIGKILLed at seeded
random moments (one during its first compile, one during a checkpoint write), a checkpoint that
cannot be written, a damaged latest checkpoint, each followed by the same command, ends exactly
where one uninterrupted run ends; NaN scores from a PRM skip the update; a verifier worker killed
mid-batch is replaced and counted.

One workdir goes through the whole sequence (each start begins from what the previous fault left),
next to one uninterrupted reference run started at the same time: five processes in all, each
paying Python's and JAX's start-up, which is most of this module's time. Unit-level faults (each
way a checkpoint fails to restore or write, two hosts disagreeing, a verifier failing on every
answer) are tested beside their code: tests/rl/runtime/test_checkpoint.py,
tests/rl/runtime/test_verifier_watch.py, tests/rewards/test_verifier_pool.py.
"""

import os
import pathlib
import random
import resource
import shutil
import signal
import subprocess
import threading
import time

import jax
import numpy as np
import pytest

from configs import smoke
from rewards.verifier_pool import Verifier
from rl import data as data_lib
from rl.config import RLConfig
from rl.runtime.checkpoint import Checkpointer
from rl.runtime.verifier_watch import VerifierWatch
from rl.trainers.ppo_trainer import Trainer
from tests.rewards.verify_cases import SLOW_SYMBOLIC
from tests.rl.train_cli import final_state, train_command
from tests.rl.train_cli import metrics as _metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
SEED = 18  # the moments of the kills
ITERATIONS = smoke.get_config().train.iterations  # 6, a checkpoint every 2
WAIT_S = 240.0
# A file-size limit far below a checkpoint's largest array file (about 1 MB for the smoke state)
# and far above anything else the run writes: a real kernel write failure (EFBIG, as from a quota),
# imposed on a running process without root. ENOSPC itself is tested at the checkpointer.
FILE_SIZE_LIMIT = 256 << 10


@pytest.fixture
def started():
    """The runs a test starts; any still running when it ends (a failed assertion) are killed."""
    procs = []
    yield procs
    for proc in procs:
        if proc.poll() is None:
            proc.kill()
            proc.wait()


def _start(procs, workdir, data_dir, e):
    """``python -m rl.train`` in the background, its output (stdout and stderr) in a log file
    next to the workdir (``proc.log``), one per start."""
    log = workdir.parent / f"{workdir.name}.{len(procs)}.log"
    with log.open("w") as out:
        proc = subprocess.Popen(
            train_command(workdir, data_dir, "--config.verifier_workers=1"),
            cwd=ROOT,
            env=e,
            stdout=out,
            stderr=subprocess.STDOUT,
        )
    proc.log = log
    procs.append(proc)
    return proc


def _finish(proc) -> str:
    proc.wait(timeout=WAIT_S)
    return proc.log.read_text()


def _wait_for(condition, proc, what: str, poll_s: float = 0.02) -> None:
    deadline = time.monotonic() + WAIT_S
    while not condition():
        if proc.poll() is not None:
            raise AssertionError(f"the run exited before {what}:\n{_finish(proc)[-3000:]}")
        if time.monotonic() > deadline:
            proc.kill()
            raise AssertionError(f"no {what} within {WAIT_S} s")
        time.sleep(poll_s)


def _kill(proc) -> None:
    proc.send_signal(signal.SIGKILL)
    _finish(proc)
    assert proc.returncode == -signal.SIGKILL


def _steps(workdir) -> list[int]:
    return [r["step"] for r in _metrics(workdir)]


def _checkpoint_names(workdir) -> list[str]:
    directory = pathlib.Path(workdir) / "checkpoints"
    return sorted(p.name for p in directory.iterdir()) if directory.exists() else []


def _writing(workdir, step: int) -> bool:
    return any(n.startswith(f"{step}.orbax-checkpoint-tmp") for n in _checkpoint_names(workdir))


def _without_times(rows):
    """Metrics rows without their wall-clock measurements (time/*), the only keys that may
    differ between two runs of the same command."""
    return [{k: v for k, v in row.items() if not k.startswith("time/")} for row in rows]


def test_killed_damaged_and_unwritable_runs_end_as_one_uninterrupted_run(tmp_path, env, started):
    """Four starts of the same command in one workdir, each after a fault, beside one
    uninterrupted run: (1) SIGKILL at a seeded random moment of the first compile; (2) the disk
    stops taking the checkpoint after 4 (a file-size limit put on the running process): the run
    stops at checkpoint 6 naming the path and the cause; (3) checkpoint 4 damaged: the run falls
    back to 2, moves 4 aside, and is SIGKILLed during a seeded random one of its checkpoint writes
    (4 or 6); (4) the run completes, exactly as the uninterrupted one."""
    e, data_dir = env
    # LLVM without optimisation passes (as in test_multihost.py), and every program cached for the
    # runs after the first: compiling is most of each run's time. All runs use the same flags.
    e = dict(
        e,
        XLA_FLAGS=e["XLA_FLAGS"] + " --xla_backend_optimization_level=0",
        JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS="0",
    )
    rng = random.Random(SEED)
    # The toy dataset, built once before two processes would race to build it.
    cfg = RLConfig.from_config_dict(smoke.get_config())
    data_lib.load("toy", "train", data_dir=data_dir, **cfg.data.builder_kwargs())
    straight, run = tmp_path / "straight", tmp_path / "run"
    ckpts = run / "checkpoints"
    reference = _start(started, straight, data_dir, e)

    # 1. SIGKILL during the first compile: the trainer has started (config.json written) and no
    # iteration has finished yet.
    proc = _start(started, run, data_dir, e)
    _wait_for(lambda: (run / "config.json").exists(), proc, "config.json")
    time.sleep(rng.uniform(0.5, 2.5))
    assert not _steps(run), "the kill was meant to land before the first iteration ended"
    _kill(proc)
    assert not _checkpoint_names(run)

    # 2. A checkpoint that cannot be written: once checkpoint 4 is complete, no file of the run may
    # grow past FILE_SIZE_LIMIT. The next save (6) fails, and the run stops saying where and why.
    proc = _start(started, run, data_dir, e)
    _wait_for(lambda: "4" in _checkpoint_names(run), proc, "checkpoint 4", poll_s=0.002)
    resource.prlimit(proc.pid, resource.RLIMIT_FSIZE, (FILE_SIZE_LIMIT, resource.RLIM_INFINITY))
    out = _finish(proc)
    assert proc.returncode == 1, out[-3000:]
    # One line says it all (orbax and asyncio log the failed write around it, in no fixed order).
    said = [line for line in out.splitlines() if line.startswith("error: ")]
    assert len(said) == 1, out[-3000:]
    assert said[0].startswith(
        f"error: could not write checkpoint 6 to {ckpts / '6'}: File too large (EFBIG)"
    ), said
    intact = "The earlier checkpoints [2, 4] are intact; rerunning the same command resumes from 4"
    assert intact in said[0], said
    partial = [n for n in _checkpoint_names(run) if n.startswith("6.")]
    assert partial and f"The partial write {[os.fspath(ckpts / n) for n in partial]}" in said[0]
    assert _steps(run) == list(range(1, ITERATIONS + 1))
    checkpointer = Checkpointer(ckpts, keep=3)
    assert checkpointer.latest_step() == 4  # the partial write is no checkpoint
    checkpointer.close()
    for name in partial:  # as the message says: delete it to free its space
        shutil.rmtree(ckpts / name)

    # 3. The latest checkpoint damaged (its array files truncated, as a partial sync leaves them):
    # the run falls back to checkpoint 2 with a warning naming 4 and its error and moves 4 aside;
    # then SIGKILL during one of its checkpoint writes.
    for f in (ckpts / "4" / "state").rglob("*"):
        if f.is_file():
            f.write_bytes(f.read_bytes()[: f.stat().st_size // 2])
    during = rng.choice([4, 6])
    proc = _start(started, run, data_dir, e)
    _wait_for(lambda: _writing(run, during), proc, f"checkpoint {during}'s write", poll_s=0.001)
    _kill(proc)
    out = proc.log.read_text()
    assert f"checkpoint {ckpts / '4'} does not restore (JSONDecodeError" in out, out[-3000:]
    assert f"moved the damaged checkpoint {ckpts / '4'} aside to {ckpts / '4.corrupt'}" in out
    names = _checkpoint_names(run)
    assert _writing(run, during), names  # killed mid-write: orbax's temporary directory is left
    assert [n for n in names if n.isdigit()] == (["2"] if during == 4 else ["2", "4"]), names
    assert "4.corrupt" in names, names

    # 4. The same command again completes the run.
    proc = _start(started, run, data_dir, e)
    out = _finish(proc)
    assert proc.returncode == 0, out[-3000:]
    out = _finish(reference)
    assert reference.returncode == 0, out[-3000:]

    # Exactly the uninterrupted run: the exported policy byte for byte, every metric but the
    # wall-clock times, each iteration logged once.
    assert _steps(straight) == _steps(run) == list(range(1, ITERATIONS + 1))
    assert _without_times(_metrics(run)) == _without_times(_metrics(straight))
    exported = sorted(p.name for p in (straight / "policy").iterdir())
    assert "model.safetensors" in exported
    assert sorted(p.name for p in (run / "policy").iterdir()) == exported
    for name in exported:
        assert (run / "policy" / name).read_bytes() == (straight / "policy" / name).read_bytes()
    # And the whole train state (critic, optimizer moments, update count) of the last checkpoint.
    step_a, state_a = final_state(straight)
    step_b, state_b = final_state(run)
    assert step_a == step_b == ITERATIONS
    for a, b in zip(jax.tree.leaves(state_a), jax.tree.leaves(state_b), strict=True):
        np.testing.assert_array_equal(a, b)
    # The moved-aside checkpoint is kept, never read again, never garbage-collected.
    assert "4.corrupt" in _checkpoint_names(run)

    # What an uninterrupted smoke run logs.
    last = _metrics(straight)[-1]
    for key in (
        "reward/success",
        "reward/prm_raw",
        "reward/prm_shaped",
        "reward/kl",
        "rollout/response_length",
        "rollout/steps_per_response",
        "rollout/repeated_step_fraction",
        "rollout/verifier_timeouts",
        "rollout/verifier_crashes",
        "update/policy_loss",
        "update/value_loss",
        "update/clip_frac",
        "update/approx_kl",
        "update/entropy",
        "value/explained_variance",
        "time/rollout_tokens_per_s",
        "time/update",
    ):
        assert key in last, key
    assert (straight / "tensorboard").is_dir()


def test_nan_prm_scores_skip_the_update_and_are_counted(tmp_path):
    """A PRM whose score head is NaN (the trainer's own tiny PRM, its head weights poisoned in
    place): every reward is NaN, so each update is skipped and counted (towards
    train.max_bad_updates), the policy is left as it was, and the run goes on. Today's check on
    reward/total catches it: any non-finite per-token reward makes that mean non-finite."""
    cfg = smoke.get_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.data.prompts_per_batch = 8  # 8 rows per update microbatch: one per device
    cfg.train.iterations = 2
    cfg.train.checkpoint_every = 1000
    trainer = Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run")
    try:
        poisoned = 0

        def poison(path, x):
            nonlocal poisoned
            if "score" not in jax.tree_util.keystr(path):
                return x
            poisoned += x.size
            return x * np.float32("nan")  # elementwise: keeps the array's sharding

        prm = trainer.frozen_params["prm"]
        trainer.frozen_params["prm"] = jax.tree_util.tree_map_with_path(poison, prm)
        assert poisoned > 0
        before = jax.tree.map(np.asarray, trainer.state.policy)
        trainer.run()
        after = jax.tree.map(np.asarray, trainer.state.policy)
    finally:
        trainer.close()
    rows = _metrics(tmp_path / "run")
    assert [r["step"] for r in rows] == [1, 2]
    for r in rows:
        assert r["reward/prm_raw"] == "nan" and r["reward/total"] == "nan"
        assert (r["update/skipped"], r["update/nonfinite_reward"]) == (1.0, 1.0)
        assert "update/policy_loss" not in r
    assert [r["update/bad_in_a_row"] for r in rows] == [1, 2]
    for a, b in zip(jax.tree.leaves(before), jax.tree.leaves(after), strict=True):
        np.testing.assert_array_equal(a, b)


def test_a_verifier_worker_killed_mid_batch_is_replaced_and_counted():
    """SIGKILL (as the kernel's OOM killer sends it) to the worker grading a slow answer: that
    answer scores 0 and counts as a crash in the iteration's metrics, and a replacement worker
    grades the batch's other answers and the next batch."""
    with Verifier(num_workers=1, timeout_s=30.0) as pool:
        pool.check_batch(["\\boxed{1}"], ["1"])  # the worker is up
        busy = pool.worker_pids[0]  # and takes the slow first answer (SymPy: over 30 s)
        threading.Timer(0.5, os.kill, (busy, signal.SIGKILL)).start()
        responses = [SLOW_SYMBOLIC[0], "\\boxed{2}", "\\boxed{3}", "\\boxed{5}"]
        result = pool.check_batch(responses, [SLOW_SYMBOLIC[1], "2", "3", "4"])
        assert result.correct == [False, True, True, False]
        assert (result.num_checked, result.num_crashes, result.num_timeouts) == (4, 1, 0)
        assert not result.all_failed
        assert VerifierWatch(1).observe(result, 1) == {
            "rollout/verifier_timeouts": 0,
            "rollout/verifier_crashes": 1,
            "rollout/verifier_errors": 0,
        }
        assert busy not in pool.worker_pids
        assert pool.check_batch(["\\boxed{6}"], ["6"]).correct == [True]
