"""KV-cache decoding reproduces the full forward pass, position by position."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.decoder import KVCache, init_cache
from models.rope import positions_from_mask
from tests.models.hf_reference import jit, left_padded, max_abs

TOL = 1e-5
PROMPT, NEW = 7, 5


@pytest.fixture(scope="module")
def sequences(tiny_config):
    """Left-padded prompts followed by NEW continuation tokens (all real)."""
    rng = np.random.default_rng(0)
    prompt, prompt_mask = left_padded(
        rng, batch=3, length=PROMPT, pads=(0, 2, 5), vocab=tiny_config.vocab_size
    )
    new = rng.integers(1, tiny_config.vocab_size, size=(3, NEW)).astype(np.int32)
    ids = np.concatenate([prompt, new], axis=1)
    mask = np.concatenate([prompt_mask, np.ones_like(new)], axis=1)
    return prompt, prompt_mask, new, ids, mask


def _decoder(model):
    """Jitted decode step with the cache donated, as a sampler runs it."""
    graphdef, state = nnx.split(model)

    @functools.partial(jit, donate_argnums=(4,))
    def step(state, ids, positions, mask, cache):
        return nnx.merge(graphdef, state).decode(ids, positions, cache, mask)

    return lambda ids, positions, cache, mask=None: step(state, ids, positions, mask, cache)


def test_prefill_then_token_by_token_matches_full_forward(
    tiny_model, tiny_forward, sequences, tiny_config
):
    prompt, prompt_mask, new, ids, mask = sequences
    full = np.asarray(tiny_forward(ids, mask))
    step = _decoder(tiny_model)
    cache = init_cache(tiny_config, batch=3, max_length=PROMPT + NEW + 3)
    logits, cache = step(prompt, None, cache, prompt_mask)
    real = prompt_mask.astype(bool)
    assert np.abs(np.asarray(logits)[real] - full[:, :PROMPT][real]).max() < TOL
    for t in range(NEW):
        logits, cache = step(new[:, t : t + 1], None, cache, np.ones((3, 1), np.int32))
        assert max_abs(logits[:, 0], full[:, PROMPT + t]) < TOL, t
    assert int(cache.index) == PROMPT + NEW
    np.testing.assert_array_equal(np.asarray(cache.mask[:, : PROMPT + NEW]), mask.astype(bool))
    assert not np.asarray(cache.mask[:, PROMPT + NEW :]).any()


def test_explicit_positions_and_multi_token_chunks(
    tiny_model, tiny_forward, sequences, tiny_config
):
    prompt, prompt_mask, new, ids, mask = sequences
    full = np.asarray(tiny_forward(ids, mask))
    positions = np.asarray(positions_from_mask(mask))
    step = _decoder(tiny_model)
    cache = init_cache(tiny_config, 3, PROMPT + NEW + 1)
    _, cache = step(prompt, positions[:, :PROMPT], cache, prompt_mask)
    logits, cache = step(new[:, :3], positions[:, PROMPT : PROMPT + 3], cache)
    assert max_abs(logits, full[:, PROMPT : PROMPT + 3]) < TOL
    logits, _ = step(new[:, 3:], positions[:, PROMPT + 3 :], cache)
    assert max_abs(logits, full[:, PROMPT + 3 :]) < TOL


def test_greedy_loop_in_while_loop_compiles_once(tiny_model, tiny_forward, tiny_config):
    """The sampler's shape of use: jit + lax.while_loop with a traced cache index, cache donated."""
    graphdef, state = nnx.split(tiny_model)
    rng = np.random.default_rng(1)
    prompt, prompt_mask = left_padded(rng, 2, PROMPT, (0, 3), tiny_config.vocab_size)

    @functools.partial(jit, donate_argnums=(1,))
    @chex.assert_max_traces(n=1)
    def generate(state, cache, prompt, prompt_mask):
        lm = nnx.merge(graphdef, state)
        logits, cache = lm.decode(prompt, None, cache, prompt_mask)
        tokens = (
            jnp.zeros((prompt.shape[0], NEW), jnp.int32).at[:, 0].set(jnp.argmax(logits[:, -1], -1))
        )

        def body(carry):
            i, tokens, cache = carry
            logits, cache = nnx.merge(graphdef, state).decode(
                jax.lax.dynamic_slice_in_dim(tokens, i, 1, axis=1), None, cache
            )
            tokens = jax.lax.dynamic_update_slice_in_dim(
                tokens, jnp.argmax(logits, -1).astype(jnp.int32), i + 1, axis=1
            )
            return i + 1, tokens, cache

        _, tokens, cache = jax.lax.while_loop(lambda c: c[0] < NEW - 1, body, (0, tokens, cache))
        return tokens, cache

    tokens, cache = generate(state, init_cache(tiny_config, 2, PROMPT + NEW), prompt, prompt_mask)
    generate(state, init_cache(tiny_config, 2, PROMPT + NEW), prompt, prompt_mask)  # No retrace.
    assert isinstance(cache, KVCache) and int(cache.index) == PROMPT + NEW - 1

    # Greedy is self-consistent under a full forward over prompt + generated tokens: each generated
    # token is the argmax of the previous position's logits.
    ids = np.concatenate([prompt, np.asarray(tokens)], 1)
    mask = np.concatenate([prompt_mask, np.ones_like(tokens)], 1)
    argmax = np.asarray(jnp.argmax(tiny_forward(ids, mask), -1))
    np.testing.assert_array_equal(argmax[:, PROMPT - 1 : -1], np.asarray(tokens))


def test_cache_layout(tiny_config):
    cache = init_cache(tiny_config, batch=2, max_length=9)
    c = tiny_config
    assert cache.k.shape == (c.num_layers, 2, 9, c.num_kv_heads, c.head_dim)
    assert cache.k.dtype == c.dtype and cache.mask.dtype == jnp.bool_
    assert cache.index.dtype == jnp.int32 and cache.index.shape == ()
    assert cache.max_length == 9
    leaves = jax.tree.leaves(cache)
    assert len(leaves) == 4
