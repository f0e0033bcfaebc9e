"""launch.aot on a small model: compiled per-device bytes agree with the analytic count; a slice
too small exits naming config, slice, needed and available bytes; the analytic count is the
sharding rules' arithmetic; the slice table's facts (configs/topologies.py).

The AOT run is a subprocess: it must set its own fake device count before importing JAX.
"""

import json
import math
import pathlib
import subprocess
import sys

import jax
import pytest
from flax import nnx

from configs import topologies
from configs.sharding import RULES
from launch import aot
from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.sharding import make_mesh, state_shardings

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


def test_analytic_bytes_are_the_shard_shapes_of_the_rules():
    values = model_presets.get_config("qwen2_like:64,2").to_dict()
    config = ModelConfig.from_dict(values)
    _, state = nnx.split(nnx.eval_shape(lambda: CausalLM(config, rngs=nnx.Rngs(0))))
    for shape in ((1, 8, 1), (2, 2, 2), (1, 2, 4)):
        mesh = make_mesh(shape)
        shardings = state_shardings(state, mesh, RULES)
        exact = sum(
            math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize
            for a, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings))
        )
        assert aot.state_bytes(state, dict(mesh.shape), RULES) == exact


def test_fake_devices_must_be_set_before_jax_is_imported():
    with pytest.raises(RuntimeError, match="before the device count"):
        aot.set_fake_devices(32)


@pytest.mark.parametrize(
    "name, chips, devices, hbm_gib, hosts",
    [
        ("v4-32", 16, 16, 32, 4),
        ("v4-64", 32, 32, 32, 8),
        ("v5e-32", 32, 32, 16, 4),
        ("v5e-64", 64, 64, 16, 8),
        ("v5p-128", 64, 64, 95, 16),
    ],
)
def test_slice_table(name, chips, devices, hbm_gib, hosts):
    t = topologies.get(name)
    assert (t.chips, t.devices, t.hbm_gib, t.hosts) == (chips, devices, hbm_gib, hosts)
    assert math.prod(topologies.mesh_shape(name)) == devices
    assert topologies.mesh_shape(name, fsdp=16) == (devices // 16, 16, 1)


def test_xla_tpu_refusal_is_read_for_its_temporaries():
    message = (
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (39.95G) exceeds available HBM (30.75G)."
    )
    assert aot._refused_temp_bytes(message) == int(39.95 * 2**30)
    assert aot._refused_temp_bytes("RESOURCE_EXHAUSTED: something else") is None
