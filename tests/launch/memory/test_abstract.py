"""launch.memory.abstract: where each model's shapes come from, and which models a run holds."""

import json

import pytest

from launch.memory import abstract as ab
from models.config import count_params
from rl.config import ConfigError, ModelSpec, RLConfig
from tests.launch.memory.tiny import POLICY_PARAMS, tiny_config


def test_shapes_from_a_preset_with_the_sections_numerics():
    spec = ModelSpec(name="policy", preset="qwen2_like:64,2", dtype="bfloat16", remat=True)
    config, source = ab.model_config("policy", spec, {})
    assert source == "preset qwen2_like:64,2"
    assert (config.hidden_size, config.num_layers, config.num_heads) == (64, 2, 1)
    assert (config.dtype.name, config.param_dtype.name, config.remat) == (
        "bfloat16",
        "float32",
        True,
    )


def test_shapes_from_a_checkpoints_config_json(tmp_path):
    hf = dict(
        model_type="qwen2",
        vocab_size=256,
        hidden_size=64,
        intermediate_size=384,
        num_hidden_layers=2,
        num_attention_heads=1,
        num_key_value_heads=1,
        head_dim=64,
        rope_theta=10000.0,
        tie_word_embeddings=True,
    )
    (tmp_path / "config.json").write_text(json.dumps(hf))
    spec = ModelSpec(
        name="prm", path=str(tmp_path), remat=True, overrides=(("max_position_embeddings", 128),)
    )
    config, source = ab.model_config("prm", spec, {"prm": "qwen2_5_math_7b"})
    assert source == str(tmp_path / "config.json")  # the checkpoint wins over aot_presets
    assert count_params(config) == POLICY_PARAMS
    assert config.remat and config.max_position_embeddings == 128


def test_shapes_from_aot_presets_when_the_checkpoint_is_absent(tmp_path):
    spec = ModelSpec(name="policy", path=str(tmp_path / "missing"))
    config, source = ab.model_config("policy", spec, {"policy": "qwen2_like:64,2"})
    assert source == f"preset qwen2_like:64,2 (no checkpoint at {tmp_path / 'missing'})"
    assert config.hidden_size == 64
    with pytest.raises(ConfigError, match=r"config.policy.path=.*no aot_presets.policy"):
        ab.model_config("policy", spec, {"prm": "qwen2_like:64,2"})


def test_the_runs_models_abstractly(tiny_models):
    assert list(tiny_models) == ["policy", "critic", "ref"]
    assert tiny_models["ref"] is tiny_models["policy"]  # the reference is a copy of the policy
    policy = tiny_models["policy"]
    assert policy.source == "preset qwen2_like:64,2"
    assert count_params(policy.config) == POLICY_PARAMS
    assert type(tiny_models["critic"].graphdef) is type(policy.graphdef)


def test_frozen_models_are_there_when_the_reward_uses_them():
    c = tiny_config()
    c.prm.preset = "qwen2_like:64,2"  # configured: loaded, whatever its weight
    c.orm.preset = "qwen2_like:64,1"
    c.orm.kind = "token_prob"
    c.implicit_prm.preset = "qwen2_like:64,1"
    assert list(ab.abstract_models(RLConfig.from_config_dict(c))) == [
        "policy",
        "critic",
        "ref",
        "prm",
    ]
    c.reward.orm_weight = 1.0
    c.reward.implicit_prm_weight = 1.0
    models = ab.abstract_models(RLConfig.from_config_dict(c))
    assert list(models) == ["policy", "critic", "ref", "prm", "orm", "implicit"]
    assert models["orm"].config.num_layers == 1 and models["implicit"].source.endswith(":64,1")
