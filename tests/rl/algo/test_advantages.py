"""Critic-free estimators: hand-computed expectations and one property test each."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rl.algo import advantages as adv

# Two prompts x 2 samples, 4 response tokens; row 3 is one token shorter.
RESPONSE = np.array([[1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 1], [1, 1, 1, 0]], bool)
GROUP = np.array([0, 0, 1, 1])


def test_returns_to_go_by_hand():
    r = np.array([[0.0, 1.0, 0.0, 2.0]] * 3 + [[1.0, 0.0, 3.0, 9.0]], np.float32)
    np.testing.assert_allclose(
        adv.returns_to_go(r, RESPONSE),
        [[3, 3, 2, 2], [3, 3, 2, 2], [3, 3, 2, 2], [4, 3, 3, 0]],
    )


def test_grpo_outcome_form_by_hand():
    """One reward per row on its last token: (R - mean) / std within the group on every token."""
    r = np.zeros((4, 4), np.float32)
    r[0, 3], r[1, 3], r[2, 3], r[3, 2] = 1.0, 0.0, 3.0, 1.0
    last = np.zeros((4, 4), bool)
    last[[0, 1, 2], 3] = True
    last[3, 2] = True
    a = np.asarray(adv.grpo(r, last, RESPONSE, GROUP, eps=0.0))
    # group 0: rewards 1, 0 -> mean 0.5, std 0.5 -> +1, -1; group 1: 3, 1 -> mean 2, std 1.
    np.testing.assert_allclose(a[0], [1, 1, 1, 1])
    np.testing.assert_allclose(a[1], [-1, -1, -1, -1])
    np.testing.assert_allclose(a[2], [1, 1, 1, 1])
    np.testing.assert_allclose(a[3], [-1, -1, -1, 0])


def test_grpo_process_form_by_hand():
    """Step rewards at two positions per row of group 0 (rewards 1, 0 | 0, 3): mean 1, std
    sqrt((0 + 1 + 1 + 4) / 4) = sqrt(1.5); a token's advantage sums the normalised rewards from
    its position on (DeepSeekMath process supervision)."""
    r = np.zeros((2, 4), np.float32)
    at = np.zeros((2, 4), bool)
    r[0, 1], r[0, 3], r[1, 1], r[1, 3] = 1.0, 0.0, 0.0, 3.0
    at[:, [1, 3]] = True
    a = np.asarray(adv.grpo(r, at, RESPONSE[:2], GROUP[:2], eps=0.0))
    z = lambda x: (x - 1.0) / np.sqrt(1.5)  # noqa: E731
    np.testing.assert_allclose(a[0], [z(1) + z(0), z(1) + z(0), z(0), z(0)], rtol=1e-6)
    np.testing.assert_allclose(a[1], [z(0) + z(3), z(0) + z(3), z(3), z(3)], rtol=1e-6)


def test_grpo_gives_a_group_of_equal_rewards_no_advantage():
    r = np.zeros((4, 4), np.float32)
    r[:, 3] = 1.0
    last = np.zeros((4, 4), bool)
    last[:, 3] = True
    np.testing.assert_allclose(adv.grpo(r, last, np.ones((4, 4), bool), GROUP), 0.0)


def test_rloo_by_hand():
    """Token returns minus the mean total return of the group's other rows."""
    r = np.array([[0, 1, 0, 2], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 5, 7]], np.float32)
    a = np.asarray(adv.rloo(r, RESPONSE, GROUP))
    # totals: 3, 1 | 1, 5 (row 3's last token is off the response).
    np.testing.assert_allclose(a[0], np.array([3, 3, 2, 2]) - 1)
    np.testing.assert_allclose(a[1], np.array([1, 1, 1, 1]) - 3)
    np.testing.assert_allclose(a[2], np.array([1, 0, 0, 0]) - 5)
    np.testing.assert_allclose(a[3], [5 - 1, 5 - 1, 5 - 1, 0])


def test_reinforce_pp_whitens_the_returns_over_the_batch():
    r = np.array([[0, 1, 0, 2], [0, 0, 0, 1], [1, 0, 0, 0], [0, 0, 5, 7]], np.float32)
    g = np.asarray(adv.returns_to_go(r, RESPONSE))
    kept = g[RESPONSE]
    want = np.where(RESPONSE, (g - kept.mean()) / np.sqrt(kept.var() + 1e-8), 0.0)
    np.testing.assert_allclose(adv.reinforce_pp(r, RESPONSE), want, rtol=1e-5, atol=1e-6)


def test_group_index():
    np.testing.assert_array_equal(adv.group_index(6, 3), [0, 0, 0, 1, 1, 1])


rows = st.integers(1, 3).flatmap(
    lambda n: st.tuples(
        st.just(n),
        st.lists(
            st.lists(st.floats(-2, 2, width=32), min_size=5, max_size=5),
            min_size=2 * n,
            max_size=2 * n,
        ),
    )
)


@settings(max_examples=40, deadline=None)
@given(rows)
def test_properties(data):
    """GRPO: each group's reward positions sum to 0 after normalisation (so the first tokens'
    advantages sum to 0 over a group); RLOO: the total-return advantages sum to 0 over a group;
    REINFORCE++: mean 0 over the batch's tokens; every estimator is 0 off the response and
    jit/vmap-consistent."""
    n, values = data
    r = np.asarray(values, np.float32)
    b, t = r.shape
    group = np.asarray(adv.group_index(b, n))
    response = np.ones((b, t), bool)
    response[:, -1] = False
    at = np.zeros((b, t), bool)
    at[:, [1, 3]] = True
    g = np.asarray(adv.grpo(r, at, response, group))
    r_rloo = np.asarray(adv.rloo(r, response, group))
    for k in range(b // n):
        rows_k = group == k
        if n > 1:
            np.testing.assert_allclose(g[rows_k, 0].sum(), 0.0, atol=1e-3)
            np.testing.assert_allclose(r_rloo[rows_k, 0].sum() * (n - 1) / n, 0.0, atol=1e-3)
    pp = np.asarray(adv.reinforce_pp(r, response))
    np.testing.assert_allclose(pp[response].mean(), 0.0, atol=1e-4)
    for a in (g, r_rloo, pp):
        assert not a[~response].any()
    jitted = jax.jit(adv.grpo)(jnp.asarray(r), at, response, group)
    np.testing.assert_allclose(jitted, g, rtol=1e-5, atol=1e-5)


def test_group_estimators_need_memory_linear_in_the_rows():
    """BroRL scale: 16,384 rows (e.g. 32 prompts x 512 samples). A [B, B] same-group matrix
    would be 1 GiB of fp32; XLA's compiled temporaries for GRPO and RLOO stay under 8 MiB."""
    b, t = 16_384, 4
    f32, flag = jax.ShapeDtypeStruct((b, t), jnp.float32), jax.ShapeDtypeStruct((b, t), bool)
    group = jax.ShapeDtypeStruct((b,), jnp.int32)
    for fn, args in ((adv.grpo, (f32, flag, flag, group)), (adv.rloo, (f32, flag, group))):
        memory = jax.jit(fn).lower(*args).compile().memory_analysis()
        assert memory.temp_size_in_bytes < 8 << 20, (fn.__name__, memory.temp_size_in_bytes)


def test_uniform_groups_by_hand():
    """3 prompts x 3 samples: all wrong, mixed, all right -> 2 of 3 prompts carry no signal."""
    success = np.array([0, 0, 0, 0, 1, 0, 1, 1, 1], np.float32)
    assert float(adv.uniform_groups(success, 3)) == pytest.approx(2 / 3)
    assert float(adv.uniform_groups(success, 1)) == 1.0  # one sample: nothing to compare
    assert float(adv.uniform_groups(success, 9)) == 0.0
