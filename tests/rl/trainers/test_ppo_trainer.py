"""The training loop end to end: the smoke run, resume after SIGKILL, and learning an easy
reward."""

import json
import os
import pathlib
import signal
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp
import pytest
from flax import nnx

from configs import smoke
from models import hf_io
from rl import data as data_lib
from rl.config import ConfigError, RLConfig
from rl.eval.evaluator import evaluate_policy
from rl.runtime.checkpoint import Checkpointer
from rl.trainers.ppo_trainer import Trainer

ROOT = pathlib.Path(__file__).resolve().parents[3]


@pytest.fixture(scope="module")
def env(tmp_path_factory):
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


def _cmd(workdir, data_dir, *overrides):
    return [
        sys.executable,
        "-m",
        "rl.train",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        *overrides,
    ]


def _metrics(workdir):
    path = pathlib.Path(workdir) / "metrics.jsonl"
    if not path.exists():
        return []
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _final_state(workdir):
    """The last checkpoint's arrays, as numpy."""
    ckpt = Checkpointer(pathlib.Path(workdir) / "checkpoints", keep=3)
    step = ckpt.latest_step()
    directory = pathlib.Path(workdir) / "checkpoints" / str(step) / "state"
    restored = ocp.StandardCheckpointer().restore(directory)
    ckpt.close()
    return step, jax.tree.map(np.asarray, restored)


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


def test_batch_the_mesh_cannot_split_is_a_config_error(tmp_path):
    cfg = smoke.get_config()  # 4 prompts x 2 samples / 2 minibatches = 4 rows per update
    cfg.mesh.shape = (1, 8, 1)
    with pytest.raises(ConfigError, match=r"config.mesh.shape=\(1, 8, 1\).* 8 devices.* 4 rows"):
        Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run")


def test_ppo_learns_an_easy_reward(tmp_path):
    """Reward = fraction of response tokens equal to one target token: PPO must raise it."""
    cfg = smoke.get_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.reward.prm_weight = 0.0
    cfg.reward.kl_coef = 0.0
    cfg.rollout.max_new_tokens = 8
    cfg.data.prompts_per_batch = 8
    cfg.data.samples_per_prompt = 4
    cfg.optim.learning_rate = 3e-3
    cfg.optim.critic_learning_rate = 3e-3
    cfg.train.iterations = 20
    cfg.train.checkpoint_every = 1000

    trainer = None

    def reward(texts, answers, tokens, response):
        target = trainer.tokenizer.convert_tokens_to_ids("7")
        return ((tokens == target) & response).sum(1) / np.maximum(response.sum(1), 1)

    trainer = Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run", success_fn=reward)
    try:
        trainer.run()
    finally:
        trainer.close()
    success = [r["reward/success"] for r in _metrics(tmp_path / "run")]
    assert success[0] < 0.15, success  # about 1/27 for a random policy over the toy vocabulary
    assert np.mean(success[-3:]) > 0.6, success


def test_eval_every_logs_the_greedy_accuracy_of_the_policy_it_exports(tmp_path, env):
    """train.eval_every=2 over 4 iterations: eval/* at iterations 2 and 4 only, and the last equals
    a separate greedy evaluation (rl.eval.evaluator, no mesh) of the exported policy on the same
    problems."""
    e, data_dir = env
    run = tmp_path / "run"
    proc = subprocess.run(
        _cmd(
            run,
            data_dir,
            "--config.train.iterations=4",
            "--config.train.eval_every=2",
            "--config.train.eval_limit=12",
        ),
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    rows = _metrics(run)
    assert [r["step"] for r in rows if "eval/accuracy" in r] == [2, 4]
    last = rows[-1]
    assert last["eval/n"] == 12

    cfg = smoke.get_config()
    d = cfg.data
    examples = data_lib.load(
        "toy",
        "test",
        data_dir=data_dir,
        seed=d.toy_seed,
        train_size=d.toy_train_size,
        test_size=d.toy_test_size,
    )[:12]
    policy = hf_io.load_causal_lm(run / "policy")
    ref = evaluate_policy(
        policy,
        nnx.state(policy),
        hf_io.load_tokenizer(run / "policy"),
        examples,
        dataset="toy",
        max_new_tokens=cfg.rollout.max_new_tokens,
        batch_size=d.prompts_per_batch * d.samples_per_prompt,
        step_separator=d.step_separator,
        max_prompt_len=d.max_prompt_len,
    )
    for key in ("accuracy", "steps_per_response", "repeated_step_fraction", "response_length"):
        assert last[f"eval/{key}"] == pytest.approx(ref[key], abs=1e-6), key


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("eval_every", -1, "config.train.eval_every=-1"),
        ("eval_limit", -3, "config.train.eval_limit=-3"),
        ("eval_split", "", "config.train.eval_split=''"),
    ],
)
def test_eval_settings_are_validated(tmp_path, key, value, message):
    cfg = smoke.get_config()
    cfg.train[key] = value
    with pytest.raises(ConfigError, match=message.replace("(", r"\(")):
        Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run")
