"""Model presets: the published Qwen2 / Qwen2.5-Math shapes, the qwen2_like sizing rule, the tiny
test model, and name parsing."""

import jax
import pytest
import transformers
from flax import nnx
from hypothesis import given
from hypothesis import strategies as st

from models import presets as model_presets
from models.config import ModelConfig, count_params
from models.decoder import CausalLM

# The published config.json values (Hugging Face Qwen/<name>/config.json).
PUBLISHED = {
    "qwen2_0_5b": dict(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_layers=24,
        num_heads=14,
        num_kv_heads=2,
        rope_theta=1_000_000.0,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
    ),
    "qwen2_1_5b": dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        rope_theta=1_000_000.0,
        max_position_embeddings=131072,
        tie_word_embeddings=True,
    ),
    "qwen2_5_math_1_5b": dict(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=True,
    ),
    "qwen2_5_math_7b": dict(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    ),
}


def _config(name: str) -> ModelConfig:
    return ModelConfig.from_dict(model_presets.get_config(name).to_dict())


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_published_shapes(name):
    cfg = _config(name)
    for field, value in PUBLISHED[name].items():
        assert getattr(cfg, field) == value, field
    # Heads of 64 (0.5B) or 128; q/k/v bias without output bias; eps 1e-6; token 151643.
    assert cfg.head_dim == (64 if name == "qwen2_0_5b" else 128) and cfg.arch == "qwen2"
    assert cfg.attention_bias and not cfg.attention_out_bias
    assert cfg.rms_norm_eps == 1e-6 and cfg.rope_type == "default"
    assert cfg.bos_token_id == cfg.eos_token_id == 151643
    # What the presets are for: random-weight runs of the real sizes in bf16 with fp32 masters.
    assert cfg.dtype.name == "bfloat16" and cfg.param_dtype.name == "float32"


@pytest.mark.parametrize(
    "name,params",
    [
        ("qwen2_0_5b", 494_032_768),
        ("qwen2_1_5b", 1_543_714_304),
        ("qwen2_5_math_1_5b", 1_543_714_304),
        ("qwen2_5_math_7b", 7_615_616_512),
    ],
)
def test_presets_have_published_sizes(name, params):
    cfg = _config(name)
    assert count_params(cfg) == params
    if name not in ("qwen2_0_5b", "qwen2_5_math_7b"):  # One tied and one untied module suffice.
        return
    # The module agrees with the formula, built abstractly (no memory).
    abstract = nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    sizes = [v.size for v in jax.tree.leaves(nnx.state(abstract, nnx.Param))]
    assert sum(sizes) == params


@pytest.mark.parametrize("name", sorted(PUBLISHED))
def test_presets_read_back_from_their_hf_config(name):
    """to_hf() of a preset is a config transformers accepts, and from_hf gives the preset back."""
    cfg = _config(name)
    hf = transformers.Qwen2Config(**cfg.to_hf())
    assert (hf.hidden_size, hf.num_hidden_layers, hf.num_key_value_heads) == (
        cfg.hidden_size,
        cfg.num_layers,
        cfg.num_kv_heads,
    )
    assert ModelConfig.from_hf(cfg.to_hf(), dtype="bfloat16") == cfg


def test_qwen2_like_and_arg_parsing():
    cfg = _config("qwen2_like:512,8")
    assert (cfg.hidden_size, cfg.num_layers, cfg.num_heads, cfg.num_kv_heads) == (512, 8, 8, 2)
    with pytest.raises(ValueError, match="unknown model preset 'gpt'"):
        model_presets.get_config("gpt")


@pytest.mark.parametrize(
    "hidden, heads, kv_heads, mlp",
    [
        # 896 / 64 = 14 heads; 14 // 4 = 3 does not divide 14, so 2; 5.5 x 896 / 128 = 38.5,
        # which rounds (half to even) to 38: 4864, Qwen2-0.5B's own MLP width.
        (896, 14, 2, 4864),
        (512, 8, 2, 2816),  # 5.5 x 512 / 128 = 22
        (1536, 24, 6, 8448),  # 66 x 128
        (64, 1, 1, 384),  # one head: one KV head; 2.75 rounds to 3
        (32, 1, 1, 128),  # narrower than a head: still one; the MLP never below 128
    ],
)
def test_qwen2_like_sizing_by_hand(hidden, heads, kv_heads, mlp):
    c = model_presets.qwen2_like(hidden, 3)
    assert (c.num_heads, c.num_kv_heads, c.intermediate_size, c.head_dim) == (
        heads,
        kv_heads,
        mlp,
        64,
    )
    assert (c.num_layers, c.vocab_size, c.max_position_embeddings) == (3, 151936, 4096)


@given(
    hidden=st.integers(1, 64).map(lambda k: 32 * k),
    head_dim=st.sampled_from([32, 64, 128]),
    kv_ratio=st.integers(1, 8),
)
def test_qwen2_like_always_gives_a_valid_grouped_query_model(hidden, head_dim, kv_ratio):
    c = model_presets.qwen2_like(hidden, 2, head_dim=head_dim, kv_ratio=kv_ratio)
    cfg = ModelConfig.from_dict(c.to_dict())  # validates: KV heads divide heads, even head_dim
    assert cfg.num_heads == max(1, hidden // head_dim)
    # The most KV heads that divide the query heads without exceeding heads / kv_ratio.
    limit = max(1, cfg.num_heads // kv_ratio)
    divisors = [k for k in range(1, cfg.num_heads + 1) if cfg.num_heads % k == 0]
    assert cfg.num_kv_heads == max(k for k in divisors if k <= limit)
    # The multiple of 128 nearest to 5.5 x hidden.
    assert cfg.intermediate_size % 128 == 0 and abs(cfg.intermediate_size - 5.5 * hidden) <= 64


def test_qwen2_like_passes_explicit_values_through():
    c = model_presets.qwen2_like(256, 2, vocab_size=1000, intermediate_size=300, dtype="float32")
    assert (c.vocab_size, c.intermediate_size, c.dtype) == (1000, 300, "float32")


def test_tiny_is_the_default_and_is_what_its_docstring_says():
    cfg = _config(None)
    assert cfg == _config("tiny") == _config("")
    assert (cfg.num_layers, cfg.hidden_size, cfg.num_heads, cfg.num_kv_heads) == (2, 64, 4, 2)
    assert cfg.dtype.name == cfg.param_dtype.name == "float32" and cfg.vocab_size == 256
    resized = ModelConfig.from_dict(model_presets.tiny(vocab_size=40, num_layers=4).to_dict())
    assert (resized.vocab_size, resized.num_layers, resized.hidden_size) == (40, 4, 64)


def test_bench_preset():
    cfg = _config("bench")
    assert (cfg.hidden_size, cfg.num_layers, cfg.vocab_size) == (512, 8, 32000)
    assert cfg.dtype.name == "float32" and not cfg.tie_word_embeddings


def test_every_preset_builds_a_valid_config():
    assert set(model_presets.PRESETS) == set(PUBLISHED) | {"tiny", "bench"}
    for name in model_presets.PRESETS:
        assert isinstance(_config(name), ModelConfig)


@pytest.mark.parametrize("name", ["gpt", "Qwen2_0_5b", "qwen2_like"])
def test_unknown_name_is_named_with_the_known_ones(name):
    with pytest.raises(ValueError) as err:
        model_presets.get_config(name)
    message = str(err.value)
    assert f"unknown model preset {name!r}" in message
    assert all(repr(known) in message for known in model_presets.PRESETS)
    assert "qwen2_like:H,L" in message
