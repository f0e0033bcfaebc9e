"""Chunked log-probs and entropies (``rl.algo.token_stats``) against the plain full-logits
computation: values and gradients (hypothesis over shapes, chunk sizes that do and do not divide
V, temperatures), through a tiny ``CausalLM`` with tied and untied heads (the tied table's gradient
adds to the embedding's), bf16 compute with fp32 statistics, and a compiled program that holds no
``[B, T, V]`` buffer in the forward or the backward pass.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.algo import losses as ppo
from rl.algo.token_stats import (
    pick_chunk,
    response_token_stats,
    token_logp,
    token_logp_and_entropy,
)


def _plain(hidden, table, tokens, temperature):
    """The reference: full [..., V] logits as ``models.layers.project_to_vocab`` computes them."""
    logits = jnp.einsum(
        "...d,vd->...v", hidden, table.astype(hidden.dtype), preferred_element_type=jnp.float32
    )
    logits = logits / temperature
    logp = jax.nn.log_softmax(logits, axis=-1)
    return (
        jnp.take_along_axis(logp, tokens[..., None], axis=-1)[..., 0],
        -jnp.sum(jnp.exp(logp) * logp, axis=-1),
    )


def _values_and_grads(stats, hidden, table, tokens, w_logp, w_ent):
    """(logp, entropy) and the gradient of sum(w_logp * logp + w_ent * entropy) in (hidden,
    table): both cotangents at once, each with its own random weights."""

    def loss(h, t):
        logp, ent = stats(h, t)
        return jnp.sum(w_logp * logp + w_ent * ent), (logp, ent)

    (_, values), grads = jax.value_and_grad(loss, argnums=(0, 1), has_aux=True)(hidden, table)
    return values, grads


@settings(max_examples=8, deadline=None)
@given(
    lead=st.sampled_from([(1,), (5,), (2, 3), (3, 4)]),
    d=st.sampled_from([1, 8]),
    v=st.integers(1, 70),
    chunk=st.integers(1, 80),
    temperature=st.sampled_from([1.0, 0.6, 1.7]),
    seed=st.integers(0, 2**16),
)
def test_values_and_gradients_equal_the_full_logits_computation(
    lead, d, v, chunk, temperature, seed
):
    rng = np.random.default_rng(seed)
    hidden = jnp.asarray(rng.normal(size=lead + (d,)) * 2.0, jnp.float32)
    table = jnp.asarray(rng.normal(size=(v, d)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, v, size=lead), jnp.int32)
    w_logp = jnp.asarray(rng.normal(size=lead), jnp.float32)
    w_ent = jnp.asarray(rng.normal(size=lead), jnp.float32)

    @jax.jit
    def both(hidden, table, tokens, w_logp, w_ent):
        chunked = lambda h, t: token_logp_and_entropy(  # noqa: E731
            h, t, tokens, temperature=temperature, chunk_size=chunk
        )
        plain = lambda h, t: _plain(h, t, tokens, temperature)  # noqa: E731
        return (
            _values_and_grads(chunked, hidden, table, tokens, w_logp, w_ent),
            _values_and_grads(plain, hidden, table, tokens, w_logp, w_ent),
        )

    (got, got_g), (want, want_g) = both(hidden, table, tokens, w_logp, w_ent)
    for a, b in zip(got + got_g, want + want_g):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=2e-5, atol=2e-5)


def test_hand_computed_uniform_and_skewed_distributions():
    """V = 5, D = 1, chunks of 3 (no width in [2, 3] divides 5, so the second chunk is clamped to
    rows 2-4 and its column 2, already counted, masked). Row 0: hidden 0, so 5 equal logits:
    log p = log 1/5, H = log 5. Row 1: hidden 1, logits (0, log 3, -1e4, 0, log 2), so
    p = (1, 3, 0, 1, 2) / 7: token 1 has log 3/7, H = -(2/7 log 1/7 + 3/7 log 3/7 + 2/7 log 2/7)."""
    assert pick_chunk(5, 3) == 3
    table = jnp.asarray([[0.0], [np.log(3.0)], [-1e4], [0.0], [np.log(2.0)]], jnp.float32)
    hidden = jnp.asarray([[0.0], [1.0]], jnp.float32)
    tokens = jnp.asarray([2, 1])
    logp, ent = token_logp_and_entropy(hidden, table, tokens, chunk_size=3)
    h1 = -(2 / 7 * np.log(1 / 7) + 3 / 7 * np.log(3 / 7) + 2 / 7 * np.log(2 / 7))
    np.testing.assert_allclose(logp, [np.log(0.2), np.log(3 / 7)], rtol=1e-6)
    np.testing.assert_allclose(ent, [np.log(5.0), h1], rtol=1e-6)
    np.testing.assert_allclose(token_logp(hidden, table, tokens, chunk_size=3), logp, rtol=1e-7)


def test_pick_chunk_prefers_an_equal_split_never_wider_than_asked():
    assert pick_chunk(151_936, 8192) == 4748  # 151,936 = 32 x 4,748
    assert pick_chunk(151_936, 4096) == 2374
    assert pick_chunk(32_000, 4096) == 4000
    assert pick_chunk(4, 3) == 2
    assert pick_chunk(5, 3) == 3  # no divisor in [2, 3]: clamped last chunk
    assert pick_chunk(7, 64) == 7  # one chunk: the whole vocabulary
    assert pick_chunk(97, 10) == 10


def _tiny(tied: bool):
    """A 1-layer random CausalLM split into (graphdef, params), drawn on the host: no init program
    is compiled."""
    cfg = ModelConfig.from_dict(
        presets.tiny(vocab_size=77, tie_word_embeddings=tied, num_layers=1).to_dict()
    )
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: CausalLM(cfg, rngs=nnx.Rngs(0))))
    rng = np.random.default_rng(1)
    params = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), abstract)
    return graphdef, params


@pytest.mark.parametrize("tied", [True, False])
def test_model_gradients_equal_the_plain_logits_path_tied_and_untied(tied):
    """Every parameter's gradient of a PPO-like loss (response log-probs + entropy at T = 0.8, a
    left-padded prompt of P = 3) is the same through ``response_token_stats`` (hidden states cut to
    the response, chunked head) as through the model's full logits; tied, the embedding collects
    both the lookup's and the head's gradient."""
    graphdef, params = _tiny(tied)
    rng = np.random.default_rng(0)
    p, temperature = 3, 0.8
    ids = jnp.asarray(rng.integers(0, 77, size=(2, 9)), jnp.int32)
    mask = jnp.ones((2, 9), bool).at[0, 0].set(False)
    weights = jnp.asarray(rng.normal(size=(2, 9 - p)), jnp.float32)
    response = jnp.ones((2, 9 - p))

    def chunked(params):
        logp, ent = response_token_stats(
            nnx.merge(graphdef, params), ids, mask, p, temperature=temperature, chunk_size=20
        )
        return jnp.sum(weights * logp) + 0.1 * jnp.sum(ent)

    def plain(params):
        logits = nnx.merge(graphdef, params)(ids, mask)[:, p - 1 : -1] / temperature
        logp = ppo.token_logp(logits, ids[:, p:])
        return jnp.sum(weights * logp) + 0.1 * ppo.entropy(logits, response).total

    (got, g_got), (want, g_want) = jax.jit(
        lambda p: (jax.value_and_grad(chunked)(p), jax.value_and_grad(plain)(p))
    )(params)
    np.testing.assert_allclose(got, want, rtol=1e-5)
    flat_got, flat_want = jax.tree.leaves(g_got), jax.tree.leaves(g_want)
    assert len(flat_got) == len(flat_want) == len(jax.tree.leaves(params))
    for a, b in zip(flat_got, flat_want):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6)
    table_grad = g_got["backbone"]["embed_tokens"]["embedding"][...]
    assert np.abs(np.asarray(table_grad)).max() > 0


def test_bf16_compute_keeps_fp32_statistics():
    """bf16 hidden states and bf16 matmul operands, but fp32 accumulation and softmax: the result is
    fp32 and equals the plain path (same operand rounding) to fp32 precision, not bf16's 1e-2."""
    rng = np.random.default_rng(3)
    hidden = jnp.asarray(rng.normal(size=(4, 6, 16)), jnp.bfloat16)
    table = jnp.asarray(rng.normal(size=(300, 16)), jnp.float32)
    tokens = jnp.asarray(rng.integers(0, 300, size=(4, 6)), jnp.int32)
    logp, ent = jax.jit(lambda h, t: token_logp_and_entropy(h, t, tokens, chunk_size=64))(
        hidden, table
    )
    want_logp, want_ent = _plain(hidden, table, tokens, 1.0)
    assert logp.dtype == ent.dtype == jnp.float32
    np.testing.assert_allclose(logp, want_logp, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(ent, want_ent, rtol=1e-5, atol=1e-5)
    g_hidden = jax.grad(lambda h: jnp.sum(token_logp(h, table, tokens, chunk_size=64)))(hidden)
    assert g_hidden.dtype == jnp.bfloat16


def test_no_buffer_of_the_full_logits_in_forward_or_backward():
    """At B x T x V = 4 x 64 x 8192 the fp32 logits are 8 MiB: the plain program's temporaries
    exceed that (a check that the measure sees them) and no array of that shape appears in its HLO;
    the chunked program's forward and backward stay well below it and have no such array."""
    b, t, d, v = 4, 64, 32, 8192
    args = (
        jax.ShapeDtypeStruct((b, t, d), jnp.float32),
        jax.ShapeDtypeStruct((v, d), jnp.float32),
        jax.ShapeDtypeStruct((b, t), jnp.int32),
    )
    full_bytes = b * t * v * 4

    def compiled(stats):
        def loss(h, w, tok):
            logp, ent = stats(h, w, tok)
            return jnp.sum(logp) + jnp.sum(ent)

        grad = jax.grad(loss, argnums=(0, 1))
        return [jax.jit(f).lower(*args).compile() for f in (loss, grad)]

    chunked = compiled(lambda h, w, tok: token_logp_and_entropy(h, w, tok, chunk_size=512))
    plain = compiled(lambda h, w, tok: _plain(h, w, tok, 1.0))
    for program in plain:
        assert program.memory_analysis().temp_size_in_bytes >= full_bytes
        assert f"f32[{b},{t},{v}]" in program.as_text()
    for program in chunked:
        assert program.memory_analysis().temp_size_in_bytes < full_bytes // 2
        assert f"{b},{t},{v}]" not in program.as_text()


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"chunk_size": 0}, "chunk_size=0"),
        ({"temperature": 0.0}, "temperature=0.0"),
        ({"tokens": jnp.zeros((2, 4), jnp.int32)}, "leading dims"),
        ({"table": jnp.zeros((5, 3))}, "must be"),
    ],
)
def test_bad_arguments_are_named(kwargs, match):
    hidden = jnp.zeros((2, 3, 4))
    tokens = kwargs.pop("tokens", jnp.zeros((2, 3), jnp.int32))
    table = kwargs.pop("table", jnp.zeros((5, 4)))
    with pytest.raises(ValueError, match=match):
        token_logp_and_entropy(hidden, table, tokens, **kwargs)
