"""RoPE: hand-computed rotations, transformers' frequencies and rotations, relative-position
invariance, and the position ids of left-padded rows."""

import math

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.llama.modeling_llama import LlamaRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2RotaryEmbedding, apply_rotary_pos_emb

from models.config import ModelConfig
from models.rope import apply_rope, inverse_frequencies, positions_from_mask

CFG = ModelConfig(
    vocab_size=16,
    hidden_size=4,
    intermediate_size=8,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    rms_norm_eps=1e-6,
)
# Qwen2.5-Math's head width and base, and Qwen2's long-context base.
QWEN = ModelConfig(
    vocab_size=64,
    hidden_size=256,
    intermediate_size=64,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    attention_bias=True,
    rope_theta=10000.0,
)
LLAMA3 = ModelConfig(
    vocab_size=64,
    hidden_size=96,
    intermediate_size=64,
    num_layers=1,
    num_heads=4,
    num_kv_heads=1,
    head_dim=24,
    arch="llama",
    rope_type="llama3",
    rope_factor=8.0,
    rope_low_freq_factor=1.0,
    rope_high_freq_factor=4.0,
    rope_original_max_position=64,
)


# Llama 3.1 8B's rotary settings.
LLAMA31 = QWEN.replace(
    arch="llama",
    attention_bias=False,
    rope_theta=500_000.0,
    rope_type="llama3",
    rope_factor=8.0,
    rope_original_max_position=8192,
    max_position_embeddings=131072,
)


def _hf_rotary(cfg: ModelConfig):
    """transformers' rotary module for `cfg`, built from the config.json `to_hf` writes."""
    hf = cfg.to_hf()
    if cfg.arch == "qwen2":
        return Qwen2RotaryEmbedding(transformers.Qwen2Config(**hf))
    return LlamaRotaryEmbedding(transformers.LlamaConfig(**hf))


def test_inverse_frequencies_default_and_llama3():
    cfg = CFG.replace(head_dim=8, rope_theta=100.0)
    np.testing.assert_allclose(
        inverse_frequencies(cfg), [1.0, 100**-0.25, 0.1, 100**-0.75], rtol=1e-7
    )
    np.testing.assert_allclose(
        inverse_frequencies(cfg.replace(rope_type="linear", rope_factor=4.0)),
        inverse_frequencies(cfg) / 4,
        rtol=1e-7,
    )
    # Llama 3.1 rule with original context 2π·8 ≈ 50: wavelengths < 50/4 kept, > 50 divided by 8.
    l3 = cfg.replace(
        rope_type="llama3",
        rope_factor=8.0,
        rope_original_max_position=50,
        rope_low_freq_factor=1.0,
        rope_high_freq_factor=4.0,
    )
    inv, base = inverse_frequencies(l3), inverse_frequencies(cfg)
    wavelen = 2 * np.pi / base
    np.testing.assert_allclose(inv[wavelen < 12.5], base[wavelen < 12.5], rtol=1e-7)
    np.testing.assert_allclose(inv[wavelen > 50], base[wavelen > 50] / 8, rtol=1e-6)


@pytest.mark.parametrize(
    "cfg, max_ulp",
    [
        (QWEN, 1),
        (QWEN.replace(rope_theta=1_000_000.0), 1),
        (QWEN.replace(arch="llama", attention_bias=False, rope_type="linear", rope_factor=4.0), 1),
        # transformers smooths the llama3 band in fp32, rounding at every operation; the table here
        # is computed in float64 and rounded once, and lands within 4 ulp of transformers'.
        (LLAMA31, 4),
        (LLAMA3, 4),
    ],
    ids=["qwen2.5-math", "qwen2", "linear", "llama3.1", "llama3-short-context"],
)
def test_inverse_frequencies_match_transformers(cfg, max_ulp):
    """The fp32 table transformers computes from the same config.json."""
    hf_inv = _hf_rotary(cfg).inv_freq.numpy()
    ours = inverse_frequencies(cfg)
    assert ours.dtype == np.float32 and ours.shape == (cfg.head_dim // 2,)
    np.testing.assert_array_max_ulp(ours, hf_inv, maxulp=max_ulp)
    if cfg.rope_type == "llama3":
        # Every branch of the rule is taken: kept, divided by the factor, and smoothed.
        plain = 1.0 / (cfg.rope_theta ** (np.arange(0, cfg.head_dim, 2) / cfg.head_dim))
        ratio = plain / ours
        assert np.isclose(ratio, 1.0).any() and np.isclose(ratio, 8.0).any()
        assert ((ratio > 1.01) & (ratio < 7.99)).any()


def _rotate_both(cfg, positions, inv_freq):
    """(ours, transformers') rotation of the same random q [B, T, 3, Dh] at `positions`."""
    rng = np.random.default_rng(0)
    q = rng.normal(size=(*positions.shape, 3, cfg.head_dim)).astype(np.float32)
    q_t = torch.from_numpy(q).transpose(1, 2)  # HF layout [B, H, T, Dh]
    cos, sin = _hf_rotary(cfg)(q_t, torch.from_numpy(positions).long())
    hf_q, _ = apply_rotary_pos_emb(q_t, q_t, cos, sin)
    ours = np.asarray(apply_rope(jnp.asarray(q), jnp.asarray(positions), inv_freq))
    return ours, hf_q.transpose(1, 2).numpy()


@pytest.mark.parametrize("cfg", [QWEN.replace(rope_theta=1_000_000.0), LLAMA31], ids=["q2", "l3"])
def test_rotation_matches_transformers_apply_rotary_pos_emb(cfg):
    """Given transformers' own frequency table, the rotation is transformers' to fp32 rounding,
    at left-padded positions and far into a long context."""
    positions = np.array([[0, 0, 0, 1, 2, 3], [99990, 99991, 99992, 99993, 99994, 99995]], np.int32)
    hf_inv = _hf_rotary(cfg).inv_freq.numpy()
    ours, hf = _rotate_both(cfg, positions, hf_inv)
    np.testing.assert_allclose(ours, hf, rtol=0, atol=1e-5)


def test_rotation_with_our_table_matches_transformers_in_a_4k_context():
    """End to end with this module's own table. A 1-ulp difference in a frequency near 0.5 moves
    an angle by position x 6e-8 rad, 2.4e-4 rad at position 4095 (Qwen2.5-Math's last), hence the
    tolerance there; at the first positions the two agree to fp32 rounding."""
    positions = np.array([[0, 0, 1, 2], [4092, 4093, 4094, 4095]], np.int32)
    ours, hf = _rotate_both(QWEN, positions, inverse_frequencies(QWEN))
    np.testing.assert_allclose(ours[0], hf[0], rtol=0, atol=1e-6)
    angle_error = positions.max() * np.spacing(np.float32(0.5))
    np.testing.assert_allclose(ours, hf, rtol=0, atol=2 * angle_error * np.abs(hf).max())


def test_rope_rotates_pairs_by_hand():
    inv = np.array([1.0, 0.5], np.float32)
    x = jnp.array([1.0, 0.0, 0.0, 2.0]).reshape(1, 1, 1, 4)  # pairs (x0, x2), (x1, x3)
    out = apply_rope(x, jnp.array([[3]]), inv)[0, 0, 0]
    c0, s0, c1, s1 = math.cos(3.0), math.sin(3.0), math.cos(1.5), math.sin(1.5)
    np.testing.assert_allclose(out, [c0, -2 * s1, s0, 2 * c1], rtol=1e-6, atol=1e-7)


def test_position_zero_is_the_identity_and_dtype_is_kept():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(1, 3, 2, 8)), jnp.bfloat16)
    inv = inverse_frequencies(CFG.replace(head_dim=8))
    out = apply_rope(x, jnp.zeros((1, 3), jnp.int32), inv)
    assert out.dtype == jnp.bfloat16
    np.testing.assert_array_equal(np.asarray(out, np.float32), np.asarray(x, np.float32))


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(0, 500))
def test_rope_scores_depend_only_on_relative_position(m, n, shift):
    inv = inverse_frequencies(CFG.replace(head_dim=8))
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32) for _ in range(2))
    score = lambda a, b: float(  # noqa: E731
        jnp.sum(apply_rope(q, jnp.array([[a]]), inv) * apply_rope(k, jnp.array([[b]]), inv))
    )
    assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-3


@settings(max_examples=20, deadline=None)
@given(position=st.integers(0, 4096), seed=st.integers(0, 2**16))
def test_rotation_preserves_each_pairs_norm(position, seed):
    """A rotation: |(x_i, x_{i+Dh/2})| is unchanged for every pair i."""
    x = np.random.default_rng(seed).normal(size=(1, 1, 1, 8)).astype(np.float32)
    out = np.asarray(
        apply_rope(
            jnp.asarray(x), jnp.array([[position]]), inverse_frequencies(CFG.replace(head_dim=8))
        )
    )
    pair_norm = lambda a: np.hypot(a[..., :4], a[..., 4:])  # noqa: E731
    np.testing.assert_allclose(pair_norm(out), pair_norm(x), rtol=1e-5)


def test_positions_from_left_padded_mask():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(positions_from_mask(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


@settings(max_examples=30, deadline=None)
@given(pads=st.lists(st.integers(0, 9), min_size=1, max_size=4))
def test_positions_count_real_tokens_from_zero(pads):
    """Whatever the left padding, a row's real tokens get 0, 1, 2, ... and its pads 0."""
    length = 10
    mask = np.array([[0] * p + [1] * (length - p) for p in pads], np.int32)
    positions = np.asarray(positions_from_mask(jnp.asarray(mask)))
    for row, p in zip(positions, pads, strict=True):
        np.testing.assert_array_equal(row[p:], np.arange(length - p))
        np.testing.assert_array_equal(row[:p], 0)
