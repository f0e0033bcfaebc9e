"""Hand-computed checks of the building blocks: RMSNorm, RoPE, attention and its masks."""

import math

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from models.attention import attend, cache_mask, causal_mask
from models.config import ModelConfig
from models.layers import Dense, RMSNorm
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


def test_rmsnorm_by_hand():
    norm = RMSNorm(CFG, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.array([1.0, 2.0, 0.5, -1.0])
    x = jnp.array([[3.0, 4.0, 0.0, 0.0]])
    rms = math.sqrt((9 + 16) / 4 + 1e-6)
    np.testing.assert_allclose(norm(x), [[3 / rms, 8 / rms, 0.0, 0.0]], rtol=1e-6)
    assert norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_dense_keeps_heads_as_dims_and_logical_axes():
    dense = Dense(
        (4,),
        (2, 3),
        in_axes=("embed",),
        out_axes=("heads", "head_dim"),
        use_bias=True,
        config=CFG,
        rngs=nnx.Rngs(0),
    )
    assert dense.kernel.get_metadata()["out_sharding"] == ("embed", "heads", "head_dim")
    x = jnp.ones((5, 7, 4))
    expected = jnp.einsum("btd,dhk->bthk", x, dense.kernel[...]) + dense.bias[...]
    np.testing.assert_allclose(dense(x), expected, rtol=1e-6)


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


def test_rope_rotates_pairs_by_hand():
    inv = np.array([1.0, 0.5], np.float32)
    x = jnp.array([1.0, 0.0, 0.0, 2.0]).reshape(1, 1, 1, 4)  # pairs (x0, x2), (x1, x3)
    out = apply_rope(x, jnp.array([[3]]), inv)[0, 0, 0]
    c0, s0, c1, s1 = math.cos(3.0), math.sin(3.0), math.cos(1.5), math.sin(1.5)
    np.testing.assert_allclose(out, [c0, -2 * s1, s0, 2 * c1], rtol=1e-6, atol=1e-7)


@settings(max_examples=20, deadline=None)
@given(m=st.integers(0, 500), n=st.integers(0, 500), shift=st.integers(0, 500))
def test_rope_scores_depend_only_on_relative_position(m, n, shift):
    inv = inverse_frequencies(CFG.replace(head_dim=8))
    rng = np.random.default_rng(0)
    q, k = (jnp.asarray(rng.normal(size=(1, 1, 1, 8)), jnp.float32) for _ in range(2))
    score = lambda a, b: float(
        jnp.sum(apply_rope(q, jnp.array([[a]]), inv) * apply_rope(k, jnp.array([[b]]), inv))
    )
    assert abs(score(m, n) - score(m + shift, n + shift)) < 1e-3


def test_positions_from_left_padded_mask():
    mask = jnp.array([[0, 0, 1, 1, 1], [1, 1, 1, 1, 1]])
    np.testing.assert_array_equal(positions_from_mask(mask), [[0, 0, 0, 1, 2], [0, 1, 2, 3, 4]])


def test_masks():
    m = causal_mask(jnp.array([[0, 1, 1]]), 1, 3)[0]
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 1, 0], [0, 1, 1]])
    # Two new tokens at slots 2..3 of a 5-slot cache whose slot 0 is a pad.
    valid = jnp.array([[0, 1, 1, 1, 0]], bool)
    np.testing.assert_array_equal(
        cache_mask(valid, jnp.int32(2), 2)[0], [[0, 1, 1, 0, 0], [0, 1, 1, 1, 0]]
    )


def test_attend_matches_naive_gqa_and_survives_fully_masked_rows():
    rng = np.random.default_rng(0)
    b, t, s, h, k, d = 2, 3, 4, 4, 2, 8
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32)
    keys = jnp.asarray(rng.normal(size=(b, s, k, d)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(b, s, k, d)), jnp.float32)
    mask = jnp.asarray(rng.random((b, t, s)) > 0.3).at[0, 0].set(False)
    out = attend(q, keys, values, mask)
    for bi in range(b):
        for ti in range(t):
            for hi in range(h):
                kv = hi // (h // k)
                logits = keys[bi, :, kv] @ q[bi, ti, hi] / math.sqrt(d)
                if mask[bi, ti].any():
                    p = jax.nn.softmax(jnp.where(mask[bi, ti], logits, -jnp.inf))
                    np.testing.assert_allclose(
                        out[bi, ti, hi], p @ values[bi, :, kv], rtol=1e-5, atol=1e-6
                    )
    assert bool(jnp.isfinite(out).all())
