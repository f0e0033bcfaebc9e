"""The embedded default's whole pipeline at smoke size, and its reuse of finished stages."""

import json
import os
import pathlib
import subprocess
import sys
import time

ROOT = pathlib.Path(__file__).resolve().parents[2]
VARIANTS = ("success_only", "orm", "prm_raw", "prm_clip_delta", "implicit_prm")
SEEDS = (0, 1)


def _run(workdir):
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    t0 = time.perf_counter()
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl.reproduce",
            f"--workdir={workdir}",
            "--config=configs/toy.py:smoke",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert proc.returncode == 0, proc.stdout[-2000:] + proc.stderr[-3000:]
    return proc.stdout, time.perf_counter() - t0


def test_reproduce_smoke_end_to_end_and_reuse(tmp_path):
    out, seconds = _run(tmp_path)
    print(f"reproduce smoke: {seconds:.0f} s")
    results = json.loads((tmp_path / "results.json").read_text())
    assert set(results["variants"]) == set(VARIANTS)
    for entry in [results["initial"], *results["variants"].values()]:
        for key in ("accuracy", "steps_per_response", "repeated_step_fraction", "response_length"):
            assert isinstance(entry[key], (int, float)), (key, entry)
        assert 0.0 <= entry["accuracy"] <= 1.0
    # Every variant ran with both seeds (in worker processes), each through the real trainer: one
    # metrics line per iteration; the table gives each variant's spread and interval.
    for v in VARIANTS:
        assert set(results["variants"][v]["seeds"]) == {str(s) for s in SEEDS}
        assert isinstance(results["variants"][v]["accuracy_ci95"], float)
        for seed in SEEDS:
            run = tmp_path / "ppo" / v / f"seed{seed}"
            lines = (run / "metrics.jsonl").read_text().splitlines()
            assert [json.loads(line)["step"] for line in lines] == [1, 2, 3]
    md = (tmp_path / "results.md").read_text()
    assert all(v in md for v in VARIANTS) and "95% interval" in md and " ± " in md
    assert "PPO iterations per run: 3;" in md
    assert all(len(c["noise_basis"]) > 0 for c in results["checks"] if "noise" in c)
    assert len(results["curves_std"]["rollout/batch_accuracy"]["success_only"]) == 3  # the band
    for name in ("accuracy.png", "steps_per_response.png", "prm_return.png"):
        assert (tmp_path / name).stat().st_size > 1000
    for kind in ("orm", "prm", "implicit_prm"):
        assert (tmp_path / "reward_models" / kind / "config.json").exists()
    # The premise was measured before PPO: every figure present, the picks within the ceiling.
    premise = results["premise"]
    assert premise["samples"] == 4 and premise["problems"] == results["initial"]["n"]
    for name in ("orm", "prm_min", "prm_last", "prm_product"):
        assert 0.0 <= premise["best_of_n"][name]["accuracy"] <= premise["pass@n"], name
    assert isinstance(premise["check"]["holds"], bool) and "The premise, before PPO" in md

    # Re-running reuses every finished stage: no training, no evaluation.
    out2, _ = _run(tmp_path)
    assert "1/5" not in out2 and "2b/5" not in out2 and "3/5" not in out2, out2
    assert "4/5" not in out2, out2
    assert json.loads((tmp_path / "results.json").read_text())["variants"] == results["variants"]
