"""Grouped-query attention: masks by hand, `attend` against a naive loop, the projection module
against transformers' Qwen2/Llama attention, KV-cache decoding against the full pass, and
`attend_lean`'s blockwise backward against autodiff of `attend` (values, gradients, memory)."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st
from transformers.models.llama.modeling_llama import LlamaAttention, LlamaRotaryEmbedding
from transformers.models.qwen2.modeling_qwen2 import Qwen2Attention, Qwen2RotaryEmbedding

from models import attention as attention_lib
from models.attention import Attention, attend, attend_lean, cache_mask, causal_mask
from models.config import ModelConfig
from models.rope import positions_from_mask
from tests.models.hf_reference import build, jit, jit_apply

QWEN2 = ModelConfig(
    vocab_size=32,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    attention_bias=True,
    rope_theta=5000.0,
)
# Llama layout: explicit head width != hidden / heads, one KV head, bias on the output too.
LLAMA = ModelConfig(
    vocab_size=32,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=1,
    head_dim=12,
    attention_bias=True,
    attention_out_bias=True,
    arch="llama",
)


def _random_attention(cfg: ModelConfig, seed: int) -> Attention:
    """An Attention whose kernels AND biases are random (zero biases would hide layout bugs)."""
    attn = build(lambda: Attention(cfg, rngs=nnx.Rngs(seed)))
    rng = np.random.default_rng(seed)
    for dense in (attn.q_proj, attn.k_proj, attn.v_proj, attn.o_proj):
        dense.kernel[...] = jnp.asarray(rng.normal(size=dense.kernel.shape) * 0.3, jnp.float32)
        if dense.bias is not None:
            dense.bias[...] = jnp.asarray(rng.normal(size=dense.bias.shape) * 0.3, jnp.float32)
    return attn


def _to_torch_linear(linear: torch.nn.Linear, dense, n_in: int) -> None:
    """Copies a Dense (kernel [in..., out...]) into a torch Linear (weight [out, in])."""
    kernel = np.asarray(dense.kernel[...])
    fan_in = math.prod(kernel.shape[:n_in])
    with torch.no_grad():
        linear.weight.copy_(torch.from_numpy(kernel.reshape(fan_in, -1).T.copy()))
        if dense.bias is not None:
            linear.bias.copy_(torch.from_numpy(np.asarray(dense.bias[...]).reshape(-1).copy()))


def _hf_attention(cfg: ModelConfig, attn: Attention):
    """transformers' eager attention layer and rotary module holding `attn`'s weights."""
    hf_cfg = cfg.to_hf()
    if cfg.arch == "qwen2":
        config = transformers.Qwen2Config(**hf_cfg)
        layer, rotary = Qwen2Attention(config, layer_idx=0), Qwen2RotaryEmbedding(config)
    else:
        config = transformers.LlamaConfig(**hf_cfg)
        layer, rotary = LlamaAttention(config, layer_idx=0), LlamaRotaryEmbedding(config)
    config._attn_implementation = "eager"
    for name in ("q_proj", "k_proj", "v_proj"):
        _to_torch_linear(getattr(layer, name), getattr(attn, name), 1)
    _to_torch_linear(layer.o_proj, attn.o_proj, 2)
    if cfg.attention_out_bias:
        assert layer.o_proj.bias is not None
    return layer.eval(), rotary


def test_masks():
    m = causal_mask(jnp.array([[0, 1, 1]]), 1, 3)[0]
    np.testing.assert_array_equal(m, [[0, 0, 0], [0, 1, 0], [0, 1, 1]])
    np.testing.assert_array_equal(causal_mask(None, 2, 2), [[[1, 0], [1, 1]]] * 2)
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


@settings(max_examples=25, deadline=None)
@given(seed=st.integers(0, 2**16), data=st.data())
def test_masked_keys_have_no_influence(seed, data):
    """Changing the keys and values a query cannot see leaves its output exactly as it was."""
    rng = np.random.default_rng(seed)
    b, t, s, h, k, d = 1, 2, 5, 4, 2, 4
    mask = np.array(data.draw(st.lists(st.booleans(), min_size=t * s, max_size=t * s)))
    mask = mask.reshape(b, t, s)
    mask[:, :, 0] = True  # every query sees at least one key
    q, keys, values = (
        rng.normal(size=shape).astype(np.float32) for shape in ((b, t, h, d),) + ((b, s, k, d),) * 2
    )
    for ti in range(t):
        hidden = ~mask[0, ti]
        keys2, values2 = keys.copy(), values.copy()
        keys2[0, hidden] = rng.normal(size=keys2[0, hidden].shape) * 10
        values2[0, hidden] = rng.normal(size=values2[0, hidden].shape) * 10
        before = np.asarray(attend(q, keys, values, mask))[0, ti]
        after = np.asarray(attend(q, keys2, values2, mask))[0, ti]
        np.testing.assert_array_equal(before, after)


def test_bf16_inputs_give_bf16_close_to_fp32():
    rng = np.random.default_rng(3)
    q, keys, values = (
        jnp.asarray(rng.normal(size=shape), jnp.float32)
        for shape in ((2, 3, 4, 8), (2, 5, 2, 8), (2, 5, 2, 8))
    )
    mask = causal_mask(None, 2, 5)[:, 2:]
    full = attend(q, keys, values, mask)
    half = attend(*(x.astype(jnp.bfloat16) for x in (q, keys, values)), mask)
    assert half.dtype == jnp.bfloat16 and full.dtype == jnp.float32
    np.testing.assert_allclose(np.asarray(half, np.float32), full, atol=5e-2)


@pytest.mark.parametrize("cfg", [QWEN2, LLAMA], ids=["qwen2", "llama"])
def test_attention_matches_transformers_with_left_padding(cfg):
    attn = _random_attention(cfg, seed=0)
    layer, rotary = _hf_attention(cfg, attn)
    rng = np.random.default_rng(1)
    b, t = 2, 6
    x = rng.normal(size=(b, t, cfg.hidden_size)).astype(np.float32)
    attention_mask = np.ones((b, t), np.int32)
    attention_mask[1, :2] = 0  # row 1 is left-padded by two
    positions = np.asarray(positions_from_mask(jnp.asarray(attention_mask)))
    mask = causal_mask(jnp.asarray(attention_mask), b, t)

    ours = jit_apply(attn, lambda m, x, p, mask: m(x, p, mask))(x, positions, mask)

    x_t = torch.from_numpy(x)
    cos, sin = rotary(x_t, torch.tensor(positions, dtype=torch.long))
    additive = torch.where(
        torch.tensor(np.asarray(mask))[:, None], 0.0, torch.finfo(torch.float32).min
    )
    with torch.no_grad():
        hf, _ = layer(x_t, position_embeddings=(cos, sin), attention_mask=additive)
    real = attention_mask.astype(bool)  # pad queries attend to nothing; their outputs are unused
    np.testing.assert_allclose(np.asarray(ours)[real], hf.numpy()[real], rtol=1e-5, atol=1e-5)


def test_decode_writes_its_slots_of_one_layer_and_matches_the_full_pass():
    """Prefill 3 tokens then 2 more into layer 1 of a 2-layer, 8-slot cache, with the slot index
    traced: the outputs are the full pass's, slots [0, 5) of layer 1 hold the full pass's rotated
    keys and values, and layer 0 and the unused slots keep what they held."""
    cfg = QWEN2
    attn = _random_attention(cfg, seed=2)
    rng = np.random.default_rng(4)
    b, t, slots = 2, 5, 8
    x = rng.normal(size=(b, t, cfg.hidden_size)).astype(np.float32)
    positions = np.tile(np.arange(t, dtype=np.int32), (b, 1))
    full = jit_apply(attn, lambda m, x, p, mask: m(x, p, mask))(
        x, positions, causal_mask(None, b, t)
    )
    _, k_full, v_full = jit_apply(attn, lambda m, x, p: m.qkv(x, p))(x, positions)

    shape = (cfg.num_layers, b, slots, cfg.num_kv_heads, cfg.head_dim)
    k_cache = jnp.full(shape, 7.0, jnp.float32)
    v_cache = jnp.full(shape, -7.0, jnp.float32)
    graphdef, state = nnx.split(attn)

    @jit
    def step(state, x, positions, k_cache, v_cache, index):
        n = x.shape[1]
        valid = jnp.arange(slots)[None, :] < index + n
        mask = cache_mask(jnp.broadcast_to(valid, (b, slots)), index, n)
        return nnx.merge(graphdef, state).decode(x, positions, mask, k_cache, v_cache, 1, index)

    out1, k_cache, v_cache = step(state, x[:, :3], positions[:, :3], k_cache, v_cache, 0)
    out2, k_cache, v_cache = step(state, x[:, 3:], positions[:, 3:], k_cache, v_cache, 3)
    decoded = np.concatenate([np.asarray(out1), np.asarray(out2)], axis=1)
    np.testing.assert_allclose(decoded, np.asarray(full), rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(k_cache[1, :, :t], k_full, rtol=1e-6, atol=1e-6)
    np.testing.assert_allclose(v_cache[1, :, :t], v_full, rtol=1e-6, atol=1e-6)
    np.testing.assert_array_equal(k_cache[0], 7.0)
    np.testing.assert_array_equal(v_cache[0], -7.0)
    np.testing.assert_array_equal(k_cache[1, :, t:], 7.0)
    np.testing.assert_array_equal(v_cache[1, :, t:], -7.0)


def test_projection_shapes_and_bias_flags():
    qwen, llama = (
        nnx.eval_shape(lambda c=c: Attention(c, rngs=nnx.Rngs(0))) for c in (QWEN2, LLAMA)
    )
    assert qwen.q_proj.kernel.shape == (32, 4, 8) and qwen.k_proj.kernel.shape == (32, 2, 8)
    assert qwen.o_proj.kernel.shape == (4, 8, 32)
    assert qwen.q_proj.bias is not None and qwen.o_proj.bias is None  # Qwen2: q/k/v bias only
    assert llama.k_proj.kernel.shape == (32, 1, 12) and llama.o_proj.bias.shape == (32,)


@pytest.mark.parametrize(("t", "block"), [(7, 3), (5, 8)])
def test_attend_lean_equals_attend_in_value_and_gradient(t, block, monkeypatch):
    """Blocks that do not divide the queries (7 / 3: the last block padded) and one block larger
    than them; GQA, a left-padded row (its first queries see no key) and a causal mask."""
    monkeypatch.setattr(attention_lib, "BACKWARD_QUERY_BLOCK", block)
    rng = np.random.default_rng(t)
    b, h, k, d = 2, 4, 2, 8
    q = jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32)
    keys = jnp.asarray(rng.normal(size=(b, t, k, d)), jnp.float32)
    values = jnp.asarray(rng.normal(size=(b, t, k, d)), jnp.float32)
    real = np.ones((b, t), bool)
    real[0, :2] = False
    mask = causal_mask(jnp.asarray(real), b, t)
    weights = jnp.asarray(rng.normal(size=(b, t, h, d)), jnp.float32)

    def loss(fn):
        return lambda q, k, v: jnp.sum(weights * fn(q, k, v, mask))

    got = jax.jit(jax.value_and_grad(loss(attend_lean), argnums=(0, 1, 2)))(q, keys, values)
    want = jax.jit(jax.value_and_grad(loss(attend), argnums=(0, 1, 2)))(q, keys, values)
    np.testing.assert_allclose(got[0], want[0], rtol=1e-6)
    for a, w in zip(got[1], want[1]):
        np.testing.assert_allclose(a, w, rtol=1e-5, atol=1e-5)
    np.testing.assert_array_equal(attend_lean(q, keys, values, mask), attend(q, keys, values, mask))


def test_attend_lean_backward_keeps_no_probabilities_per_layer():
    """Four stacked attention layers at 2 x 4 heads x 512 x 512 (fp32 probabilities: 8 MiB a
    layer). Autodiff of `attend` keeps every layer's probabilities (and copies) for the backward
    pass: over 4 layers' worth of temporaries (12 measured). `attend_lean` keeps none: what is left
    is the forward's own transient of one layer and one 256-row block (2.9 measured), below 3."""
    b, t, h, k, d, layers = 2, 512, 4, 2, 16, 4
    spec = jax.ShapeDtypeStruct((b, t, h, d), jnp.float32)
    kv = jax.ShapeDtypeStruct((b, t, k, d), jnp.float32)
    mask = causal_mask(None, b, t)
    one_layer = b * h * t * t * 4

    def temp_bytes(fn):
        def loss(q, keys, values):
            x = q
            for _ in range(layers):
                x = fn(x, keys, values, mask)
            return jnp.sum(x)

        grad = jax.jit(jax.grad(loss, argnums=(0, 1, 2)))
        return grad.lower(spec, kv, kv).compile().memory_analysis().temp_size_in_bytes

    assert temp_bytes(attend) > layers * one_layer
    assert temp_bytes(attend_lean) < 3 * one_layer
