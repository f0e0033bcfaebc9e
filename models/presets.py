"""Model presets: published Qwen2 / Qwen2.5-Math shapes and tiny random sizes for CPU tests.

    from models import presets
    config = ModelConfig.from_dict(presets.get_config("qwen2_5_math_1_5b").to_dict())
    # or as a config file: --config=models/presets.py:tiny --config.num_layers=4

Values are those of the published `config.json` files (Qwen2-0.5B/1.5B: rope_theta 1e6, 131072
positions, tied; Qwen2.5-Math-1.5B: rope_theta 1e4, 4096 positions, tied; Qwen2.5-Math-7B:
rope_theta 1e4, 4096 positions, untied, vocab 152064). Real checkpoints should be read with
`models.hf_io.load_causal_lm`, which takes the values from the checkpoint itself; the presets serve
random-weight runs, sharding plans and FLOP estimates of the real sizes.
"""

import ml_collections

_QWEN_TOKENS = dict(bos_token_id=151643, eos_token_id=151643)


def _qwen2(**values) -> ml_collections.ConfigDict:
    base = dict(
        rope_theta=1_000_000.0,
        rms_norm_eps=1e-6,
        tie_word_embeddings=True,
        attention_bias=True,
        attention_out_bias=False,
        arch="qwen2",
        dtype="bfloat16",
        param_dtype="float32",
        remat=False,
        **_QWEN_TOKENS,
    )
    base.update(values)
    return ml_collections.ConfigDict(base)


def qwen2_0_5b() -> ml_collections.ConfigDict:
    return _qwen2(
        vocab_size=151936,
        hidden_size=896,
        intermediate_size=4864,
        num_layers=24,
        num_heads=14,
        num_kv_heads=2,
        max_position_embeddings=131072,
    )


def qwen2_1_5b() -> ml_collections.ConfigDict:
    return _qwen2(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        max_position_embeddings=131072,
    )


def qwen2_5_math_1_5b() -> ml_collections.ConfigDict:
    return _qwen2(
        vocab_size=151936,
        hidden_size=1536,
        intermediate_size=8960,
        num_layers=28,
        num_heads=12,
        num_kv_heads=2,
        rope_theta=10000.0,
        max_position_embeddings=4096,
    )


def qwen2_5_math_7b() -> ml_collections.ConfigDict:
    return _qwen2(
        vocab_size=152064,
        hidden_size=3584,
        intermediate_size=18944,
        num_layers=28,
        num_heads=28,
        num_kv_heads=4,
        rope_theta=10000.0,
        max_position_embeddings=4096,
        tie_word_embeddings=False,
    )


def qwen2_like(
    hidden_size: int,
    num_layers: int,
    *,
    vocab_size: int = 151936,
    head_dim: int = 64,
    kv_ratio: int = 4,
    intermediate_size: int | None = None,
    **values,
) -> ml_collections.ConfigDict:
    """A random-weight Qwen2-shaped model of a given size: heads of `head_dim`, one KV head per
    `kv_ratio` query heads, MLP width ≈ 5.5 × hidden rounded to 128 (Qwen2's 5.3-5.8×)."""
    num_heads = max(1, hidden_size // head_dim)
    num_kv_heads = max(1, num_heads // kv_ratio)
    while num_heads % num_kv_heads:
        num_kv_heads -= 1
    if intermediate_size is None:
        intermediate_size = max(128, 128 * round(5.5 * hidden_size / 128))
    return _qwen2(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=intermediate_size,
        num_layers=num_layers,
        num_heads=num_heads,
        num_kv_heads=num_kv_heads,
        head_dim=head_dim,
        max_position_embeddings=4096,
        **values,
    )


def tiny(vocab_size: int = 256, **values) -> ml_collections.ConfigDict:
    """2 layers, width 64, 4 query / 2 KV heads, fp32: for unit tests on CPU."""
    base = dict(
        vocab_size=vocab_size,
        hidden_size=64,
        intermediate_size=128,
        num_layers=2,
        num_heads=4,
        num_kv_heads=2,
        max_position_embeddings=512,
        rope_theta=10000.0,
        dtype="float32",
        param_dtype="float32",
        initializer_range=0.1,
    )
    base.update(values)
    return _qwen2(**base)


def bench() -> ml_collections.ConfigDict:
    """The forward benchmark's model: width 512, 8 layers, 32k vocabulary, fp32."""
    return qwen2_like(512, 8, vocab_size=32000, dtype="float32", tie_word_embeddings=False)


PRESETS = {
    "qwen2_0_5b": qwen2_0_5b,
    "qwen2_1_5b": qwen2_1_5b,
    "qwen2_5_math_1_5b": qwen2_5_math_1_5b,
    "qwen2_5_math_7b": qwen2_5_math_7b,
    "tiny": tiny,
    "bench": bench,
}


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """`arg` is a preset name (default "tiny") or "qwen2_like:HIDDEN,LAYERS"."""
    arg = arg or "tiny"
    if arg.startswith("qwen2_like:"):
        hidden, layers = (int(x) for x in arg.split(":", 1)[1].split(","))
        return qwen2_like(hidden, layers)
    if arg not in PRESETS:
        raise ValueError(
            f"unknown model preset {arg!r}; known: {sorted(PRESETS)} or qwen2_like:H,L"
        )
    return PRESETS[arg]()
