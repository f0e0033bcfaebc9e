"""GAE: hand-computed values and an independent numpy loop."""

import jax
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from rl.algo.gae import gae


def numpy_gae(r, v, m, gamma, lam):
    """Textbook loop over each row's response tokens (contiguous prefix), terminal value 0."""
    adv = np.zeros_like(r)
    for b in range(r.shape[0]):
        n = int(m[b].sum())
        last = 0.0
        for t in reversed(range(n)):
            v_next = v[b, t + 1] if t + 1 < n else 0.0
            delta = r[b, t] + gamma * v_next - v[b, t]
            last = delta + gamma * lam * last
            adv[b, t] = last
    return adv, (adv + v) * m


def test_hand_computed():
    # One row, 3 response tokens + 1 pad; gamma = 1, lam = 0.5.
    r = np.array([[0.0, 0.5, 1.0, 9.0]], np.float32)
    v = np.array([[0.2, 0.4, 0.6, 9.0]], np.float32)
    m = np.array([[1, 1, 1, 0]], bool)
    # deltas: 0 + 0.4 - 0.2 = 0.2; 0.5 + 0.6 - 0.4 = 0.7; 1.0 + 0 - 0.6 = 0.4
    # A_2 = 0.4; A_1 = 0.7 + 0.5 * 0.4 = 0.9; A_0 = 0.2 + 0.5 * 0.9 = 0.65
    adv, ret = gae(r, v, m, gamma=1.0, lam=0.5)
    np.testing.assert_allclose(adv, [[0.65, 0.9, 0.4, 0.0]], atol=1e-6)
    np.testing.assert_allclose(ret, [[0.85, 1.3, 1.0, 0.0]], atol=1e-6)


def test_gamma_one_lambda_one_is_reward_to_go_minus_value():
    r = np.array([[1.0, 2.0, 3.0]], np.float32)
    v = np.array([[0.5, 0.5, 0.5]], np.float32)
    adv, ret = gae(r, v, np.ones((1, 3), bool), 1.0, 1.0)
    np.testing.assert_allclose(ret, [[6.0, 5.0, 3.0]], atol=1e-6)
    np.testing.assert_allclose(adv, [[5.5, 4.5, 2.5]], atol=1e-6)


@settings(max_examples=25, deadline=None)
@given(st.integers(0, 2**31 - 1), st.floats(0.5, 1.0), st.floats(0.0, 1.0))
def test_matches_numpy_loop(seed, gamma, lam):
    rng = np.random.default_rng(seed)
    b, t = 5, 12
    r = rng.normal(size=(b, t)).astype(np.float32)
    v = rng.normal(size=(b, t)).astype(np.float32)
    lengths = rng.integers(0, t + 1, size=b)
    m = np.arange(t)[None] < lengths[:, None]
    want_adv, want_ret = numpy_gae(r, v, m, gamma, lam)
    adv, ret = jax.jit(gae, static_argnums=())(r, v, m, gamma, lam)
    np.testing.assert_allclose(adv, want_adv, atol=1e-4)
    np.testing.assert_allclose(ret, want_ret, atol=1e-4)
