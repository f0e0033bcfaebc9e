"""launch.aot on a small model: compiled per-device bytes agree with the analytic count; a slice
too small exits naming config, slice, needed and available bytes; importing the entry point does
not import JAX. Each step's own tests are in tests/launch/memory/ (the slice table's in
tests/configs/test_topologies.py).

The AOT run is a subprocess: it must set its own fake device count before importing JAX.
"""

import json
import math
import pathlib
import subprocess
import sys

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[2]
SMALL = [
    "--config.policy.path=",
    "--config.policy.preset=qwen2_like:64,2",
    "--config.prm.path=",
    "--config.prm.preset=qwen2_like:64,2",
    "--config.data.prompts_per_batch=8",
    "--config.data.max_prompt_len=16",
    "--config.rollout.max_new_tokens=16",
    "--config.ppo.microbatches=1",
]


@pytest.fixture(scope="module")
def small_run(tmp_path_factory):
    """The 1.5B paper config shrunk to a 2-layer width-64 model, on v5p-16 (8 devices), checked
    against a 1 MiB HBM so that it cannot fit."""
    out = tmp_path_factory.mktemp("aot") / "report.json"
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "launch.aot",
            "--config=configs/qwen2_1p5b.py",
            "--topology=v5p-16",
            "--backend=cpu",
            "--hbm_gib=0.0009765625",
            f"--json={out}",
            *SMALL,
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=300,
    )
    return proc, json.loads(out.read_text()) if out.exists() else None


def test_compiled_arguments_match_the_analytic_count(small_run):
    proc, report = small_run
    assert report is not None, proc.stderr[-3000:]
    assert math.prod(report["mesh"].values()) == 8
    for program in ("update", "sample", "score"):
        compiled = report["compiled"][program]["argument"]
        analytic = report["analytic"]["programs"][program]["args"]
        assert abs(compiled / analytic - 1) < 0.10, (program, compiled, analytic)
        assert report["compiled"][program]["temp"] > 0
        assert report["peaks"][program]["compiled"] >= compiled
    # The update donates its state: nearly all of its output reuses the argument buffers.
    state = report["analytic"]["programs"]["update"]["args"] - report["analytic"]["minibatch"]
    assert report["compiled"]["update"]["alias"] >= 0.9 * state
    assert "compiled / analytic" in proc.stdout and "PEAK update" in proc.stdout


def test_a_slice_too_small_exits_naming_config_slice_and_bytes(small_run):
    proc, report = small_run
    assert proc.returncode == 1
    needed = report["needed_bytes"]
    assert not report["fits"] and needed > 2**20
    assert (
        f"error: configs/qwen2_1p5b.py does not fit on v5p-16: needs {needed} bytes" in proc.stderr
    )
    assert f"{2**20} bytes (0.00 GiB) available" in proc.stderr
    assert "Traceback" not in proc.stderr
    # The analytic verdict for every supported slice is printed, the chosen one compiled only.
    assert "fits on (analytic peak/HBM GiB): v4-16" in proc.stdout
    assert set(report["fits_on"]) == set(
        (
            "v4-16",
            "v4-32",
            "v4-64",
            "v4-128",
            "v5e-16",
            "v5e-32",
            "v5e-64",
            "v5e-128",
            "v5p-16",
            "v5p-32",
            "v5p-64",
            "v5p-128",
        )
    )


def test_the_entry_point_imports_no_jax():
    """launch.aot must be importable before the device count is known (set_fake_devices refuses
    to run once JAX is imported)."""
    code = "import sys, launch.aot; print('jax' in sys.modules)"
    proc = subprocess.run(
        [sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, check=True
    )
    assert proc.stdout.strip() == "False"
