"""ModelConfig validation and HF config conversion (the presets' sizes: test_presets.py)."""

import jax.numpy as jnp
import pytest

from models import presets as model_presets
from models.config import ModelConfig

BASE = dict(
    vocab_size=32, hidden_size=16, intermediate_size=32, num_layers=1, num_heads=4, num_kv_heads=2
)


@pytest.mark.parametrize(
    "change,message",
    [
        (dict(num_kv_heads=3), r"num_kv_heads=3 must divide num_heads=4"),
        (dict(hidden_size=0), r"hidden_size=0 must be a positive int"),
        (dict(head_dim=5), r"head_dim=5 must be a positive even int"),
        (dict(dtype="int8"), r"dtype='int8' is not supported"),
        (dict(rope_type="yarn"), r"rope_type='yarn' is not supported"),
        (dict(remat_policy="some"), r"remat_policy='some'"),
        (dict(arch="gpt2"), r"arch='gpt2'"),
        (dict(rope_theta=-1.0), r"rope_theta=-1.0 must be a positive"),
    ],
)
def test_validation_names_field_and_value(change, message):
    with pytest.raises(ValueError, match=message):
        ModelConfig(**{**BASE, **change})


def test_derived_and_canonical_fields():
    cfg = ModelConfig(**BASE, dtype=jnp.bfloat16, eos_token_id=[1, 2])
    assert cfg.head_dim == 4 and cfg.num_groups == 2
    assert cfg.dtype == jnp.bfloat16 and cfg.param_dtype == jnp.float32
    assert cfg.eos_token_id == (1, 2)
    hash(cfg)  # Static structure in modules and a cache key.
    with pytest.raises(ValueError, match=r"no field\(s\) \['hidden'\]"):
        ModelConfig.from_dict({**BASE, "hidden": 3})


def test_from_hf_legacy_and_transformers5_layouts():
    legacy = {
        "model_type": "qwen2",
        "vocab_size": 151936,
        "hidden_size": 1536,
        "intermediate_size": 8960,
        "num_hidden_layers": 28,
        "num_attention_heads": 12,
        "num_key_value_heads": 2,
        "rope_theta": 10000.0,
        "rope_scaling": None,
        "max_position_embeddings": 4096,
        "tie_word_embeddings": True,
        "use_sliding_window": False,
        "sliding_window": 4096,
        "hidden_act": "silu",
    }
    cfg = ModelConfig.from_hf(legacy, dtype="bfloat16")
    assert cfg == ModelConfig.from_dict(model_presets.qwen2_5_math_1_5b().to_dict()).replace(
        bos_token_id=None, eos_token_id=None
    )
    modern = {k: v for k, v in legacy.items() if k not in ("rope_theta", "rope_scaling")}
    modern["rope_parameters"] = {"rope_type": "default", "rope_theta": 10000.0}
    assert ModelConfig.from_hf(modern, dtype="bfloat16") == cfg
    # to_hf → from_hf round trip, both families.
    assert ModelConfig.from_hf(cfg.to_hf()).replace(dtype="bfloat16") == cfg
    llama = ModelConfig(
        **BASE, arch="llama", rope_type="llama3", rope_factor=8.0, rope_original_max_position=64
    )
    assert ModelConfig.from_hf(llama.to_hf()) == llama


def test_from_hf_rejects_unsupported_features():
    base = {
        "model_type": "qwen2",
        "vocab_size": 8,
        "hidden_size": 8,
        "intermediate_size": 8,
        "num_hidden_layers": 1,
        "num_attention_heads": 2,
    }
    with pytest.raises(ValueError, match="use_sliding_window=True"):
        ModelConfig.from_hf({**base, "use_sliding_window": True})
    with pytest.raises(ValueError, match="model_type='gemma2'"):
        ModelConfig.from_hf({**base, "model_type": "gemma2"})
    with pytest.raises(ValueError, match=r"rope_parameters\.rope_type='dynamic'"):
        ModelConfig.from_hf({**base, "rope_parameters": {"rope_type": "dynamic", "factor": 2.0}})
    with pytest.raises(ValueError, match="needs attention_bias=True"):
        ModelConfig(**BASE).to_hf("qwen2")


def test_mistral_reads_and_writes_its_sliding_window_and_has_no_biases():
    hf = {
        "model_type": "mistral",
        "vocab_size": 32000,
        "hidden_size": 4096,
        "intermediate_size": 14336,
        "num_hidden_layers": 32,
        "num_attention_heads": 32,
        "num_key_value_heads": 8,
        "max_position_embeddings": 32768,
        "rope_theta": 10000.0,
        "sliding_window": 4096,
        "hidden_act": "silu",
        "attention_bias": True,  # Not a MistralConfig key: ignored, Mistral has no biases.
    }
    cfg = ModelConfig.from_hf(hf)
    assert (cfg.arch, cfg.sliding_window, cfg.head_dim) == ("mistral", 4096, 128)
    assert not cfg.attention_bias and not cfg.attention_out_bias
    out = cfg.to_hf()
    assert out["architectures"] == ["MistralForCausalLM"] and out["sliding_window"] == 4096
    assert ModelConfig.from_hf(out) == cfg
    assert ModelConfig.from_hf({**hf, "sliding_window": None}).sliding_window is None
    # The window belongs to Mistral only; other families never read or write one.
    assert (
        ModelConfig.from_hf({**hf, "model_type": "llama", "attention_bias": False}).sliding_window
        is None
    )
    with pytest.raises(ValueError, match=r"to_hf\(arch='llama'\) cannot write sliding_window=4096"):
        cfg.to_hf("llama")
    with pytest.raises(ValueError, match="to_hf\\(arch='mistral'\\) needs attention_bias"):
        ModelConfig(**BASE, attention_bias=True).to_hf("mistral")
    with pytest.raises(ValueError, match="sliding_window=0 must be None or a positive int"):
        ModelConfig(**BASE, sliding_window=0)
