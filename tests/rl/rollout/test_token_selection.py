"""Token selection on its own: sampled frequencies against transformers' warpers (temperature,
top-k, top-p, and the exact top-p bisection), and the fast top-p threshold against the bisection."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.rollout import token_selection as sampling
from tests.rl.rollout.sampling_helpers import reference_probs


@pytest.mark.parametrize(
    "v,cfg",
    [
        (131, dict(temperature=1.0)),
        (40, dict(temperature=0.5, top_k=6)),
        (40, dict(temperature=1.0, top_p=0.7, candidates=4)),
    ],
    ids=["padded_vocab", "top_k", "top_p_fallback"],
)
def test_sample_distribution(v, cfg):
    """20k draws from one row's logits match the expected filtered softmax."""
    logits = jax.random.normal(jax.random.key(0), (v,)) * 2.0
    draws = 20_000
    sel = jax.jit(lambda z, k: sampling.sample(jnp.broadcast_to(z, (draws, v)), k, **cfg))(
        logits, jax.random.key(1)
    )
    freq = np.bincount(np.asarray(sel.tokens_B), minlength=v) / draws
    want = reference_probs(
        np.asarray(logits), cfg["temperature"], cfg.get("top_k", 0), cfg.get("top_p", 1.0)
    )
    assert np.abs(freq - want).max() < 0.015
    assert (freq[want == 0] == 0).all()


def test_top_p_fast_threshold_equals_bisection():
    z = jax.random.normal(jax.random.key(2), (6, 1000)) * 3.0

    @jax.jit
    def both(p):
        m = z.max(-1)
        fast = sampling._top_p_threshold(z, m, jax.lax.top_k(z, 1000)[0], 0, p)
        return fast, sampling.bisect_top_p(z, m, jnp.full_like(m, -jnp.inf), p)

    for p in (0.05, 0.5, 0.9, 0.999):
        fast, exact = both(p)
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(exact))
