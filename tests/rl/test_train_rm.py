"""The reward-model entry point end to end, as a user runs it."""

import json
import os
import pathlib
import subprocess
import sys

from configs import rm_smoke
from models.reward_io import load_reward_model
from rl.reward_models import sources

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_cli_smoke(tmp_path):
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl.train_rm",
            "--config=configs/rm_smoke.py",
            f"--workdir={tmp_path}",
            "--config.train.steps=4",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["eval"]["heldout"]["n"] > 0
    _, info = load_reward_model(tmp_path / "model")
    assert info["kind"] == "prm" and info["sigmoid"] and info["data_source"] == "synthetic"
    labelled = sources.load_jsonl(tmp_path / "labels.jsonl")
    assert len(labelled) == rm_smoke.get_config().data.num_problems
