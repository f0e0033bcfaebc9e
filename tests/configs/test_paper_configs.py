"""The paper configs: they validate, each TPU slice gives a mesh of its device count, the documented
choices are the values, and the command line reaches them."""

import json
import math
import pathlib
import subprocess
import sys

import pytest

from configs import qwen2_1p5b, qwen2p5_math_1p5b, qwen2p5_math_7b, topologies
from models import presets as model_presets
from rl.config import ModelSpec, RLConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
PAPER = {  # module: (policy directory, shape preset, default slice)
    qwen2_1p5b: ("Qwen2-1.5B-Instruct", "qwen2_1_5b", "v4-32"),
    qwen2p5_math_1p5b: ("Qwen2.5-Math-1.5B-Instruct", "qwen2_5_math_1_5b", "v4-32"),
    qwen2p5_math_7b: ("Qwen2.5-Math-7B-Instruct", "qwen2_5_math_7b", "v5p-128"),
}
SLICES = [(m, t) for m in PAPER for t in m.get_config().topologies]


@pytest.mark.parametrize(
    "module, topology", SLICES, ids=[f"{m.__name__.split('.')[-1]}:{t}" for m, t in SLICES]
)
def test_every_supported_slice_validates_with_a_mesh_of_its_devices(module, topology):
    c = module.get_config(topology)
    rl = RLConfig.from_config_dict(c)
    assert c.topology == topology
    assert math.prod(rl.mesh.shape) == topologies.get(topology).devices
    data, fsdp, tensor = rl.mesh.shape
    rows = rl.data.prompts_per_batch * rl.data.samples_per_prompt
    per_update = rows // rl.ppo.minibatches
    # What the trainer checks, and what the update's batch sharding over (data, fsdp) needs.
    assert rows % rl.ppo.minibatches == 0 and per_update % rl.ppo.microbatches == 0
    assert per_update % (data * fsdp) == 0
    # One row per device per microbatch (the documented activation budget).
    assert per_update // rl.ppo.microbatches == data * fsdp
    for name in ("policy", "prm"):
        assert ModelSpec.from_section(name, c[name]).configured


@pytest.mark.parametrize("module", PAPER, ids=lambda m: m.__name__.split(".")[-1])
def test_documented_choices_are_the_values(module):
    policy_dir, preset, default_slice = PAPER[module]
    c = module.get_config()
    assert c.topology == default_slice
    assert c.policy.path.endswith(policy_dir) and not c.policy.preset
    assert c.aot_presets.policy == preset and c.aot_presets.prm == "qwen2_5_math_7b"
    assert set(c.aot_presets.values()) <= set(model_presets.PRESETS)
    assert (c.policy.dtype, c.policy.param_dtype, c.policy.remat) == ("bfloat16", "float32", True)
    assert (c.prm.kind, c.prm.dtype, c.prm.param_dtype) == ("two_class", "bfloat16", "bfloat16")
    assert c.prm.path.endswith("Qwen2.5-Math-7B-PRM800K")
    rl = RLConfig.from_config_dict(c)
    assert (rl.data.dataset, rl.data.step_separator) == ("math", "\n\n")
    assert (rl.data.prompts_per_batch, rl.data.samples_per_prompt) == (32, 4)
    assert (rl.rollout.max_new_tokens, rl.rollout.temperature) == (1024, 1.0)
    assert (rl.reward.prm_transform, rl.reward.prm_weight, rl.reward.prm_eta) == (
        "clip_delta",
        1.0,
        0.5,
    )
    assert (rl.reward.kl_coef, rl.reward.kl_in) == (0.05, "reward")
    assert (rl.ppo.gamma, rl.ppo.lam, rl.ppo.clip_eps, rl.ppo.epochs, rl.ppo.minibatches) == (
        1.0,
        0.95,
        0.2,
        1,
        2,
    )
    assert (rl.optim.learning_rate, rl.optim.critic_learning_rate) == (1e-6, 5e-6)
    # The reasons live in the shared docstring; each config file says where.
    doc = qwen2_1p5b.__doc__
    for phrase in (
        "clip_delta(eta=0.5)",
        "lr 1e-6 actor / 5e-6 critic",
        "KL to the reference 0.05",
        "GAE lambda 0.95",
        "gamma 1",
        "max_new_tokens=1024",
        "4 samples",
        "huggingface-cli download",
        "do not publish",
    ):
        assert phrase in doc, phrase
    assert "huggingface-cli download" in module.__doc__ and "launch.aot" in module.__doc__


def test_unknown_slice_names_the_supported_ones():
    with pytest.raises(ValueError, match="v5e-64") as e:
        qwen2_1p5b.get_config("v5e-7")
    assert "v5e-7" in str(e.value)


def test_slice_arg_and_overrides_reach_the_validated_config():
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl.config",
            "--config=configs/qwen2p5_math_7b.py:v5e-64",
            "--config.data.dataset=gsm8k",
        ],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["mesh"]["shape"] == [1, 64, 1]
    assert resolved["ppo"]["microbatches"] == 1  # 64 rows per update over 64 devices
    assert resolved["data"]["dataset"] == "gsm8k"
