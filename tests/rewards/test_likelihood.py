"""The likelihood feature and combined step score of ``rewards.likelihood``, against values worked
out by hand on one row, and its invariants: identity weights give back the PRM, positions that are
not step ends are untouched, rows are independent under vmap."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rewards import likelihood as lik

# Positions 0-1: prompt (ignored whatever their log-probs), 2-8: response, 9: padding.
# Steps end at 3, 6 and 8: step 1 = positions 2-3, step 2 = 4-6, step 3 = 7-8.
LOGP = np.array([-9.0, -9.0, -0.1, -0.3, -0.2, -1.0, -0.5, -0.05, -0.15, -7.0], np.float32)
RESPONSE = np.array([0, 0, 1, 1, 1, 1, 1, 1, 1, 0], bool)
ENDS = np.array([0, 0, 0, 1, 0, 0, 1, 0, 1, 0], bool)
PRM = np.array([0.3, 0.3, 0.3, 0.8, 0.3, 0.3, 0.5, 0.3, 0.9, 0.3], np.float32)
MEANS = {3: (-0.1 - 0.3) / 2, 6: (-0.2 - 1.0 - 0.5) / 3, 8: (-0.05 - 0.15) / 2}
PREFIX_MIN = {3: MEANS[3], 6: MEANS[6], 8: MEANS[6]}  # step 3 is likelier than step 2


def _at(values, where):
    return np.asarray(values)[list(where)]


def test_step_means_and_their_running_minimum_by_hand():
    means = np.asarray(lik.step_mean_logp(LOGP, ENDS, RESPONSE))
    np.testing.assert_allclose(_at(means, MEANS), list(MEANS.values()), rtol=1e-6)
    assert (means[~ENDS] == 0).all()
    running = np.asarray(lik.prefix_min_step_logp(LOGP, ENDS, RESPONSE))
    np.testing.assert_allclose(_at(running, PREFIX_MIN), list(PREFIX_MIN.values()), rtol=1e-6)
    assert (running[~ENDS] == 0).all()


def test_combined_score_by_hand_and_other_positions_untouched():
    a, b, c = 2.0, 3.0, -1.0
    got = np.asarray(lik.likelihood_step_scores(PRM, LOGP, ENDS, RESPONSE, jnp.array([a, b, c])))
    sigmoid = lambda z: 1 / (1 + math.exp(-z))  # noqa: E731
    logit = lambda p: math.log(p / (1 - p))  # noqa: E731
    for t, f in PREFIX_MIN.items():
        assert got[t] == pytest.approx(sigmoid(a * logit(float(PRM[t])) + b * f + c), rel=1e-5)
    np.testing.assert_array_equal(got[~ENDS], PRM[~ENDS])


def test_identity_weights_give_back_the_prm():
    got = lik.likelihood_step_scores(PRM, LOGP, ENDS, RESPONSE, jnp.array([1.0, 0.0, 0.0]))
    np.testing.assert_allclose(np.asarray(got), PRM, rtol=1e-5)


def test_a_step_end_outside_the_response_is_no_step_end():
    ends = ENDS.copy()
    ends[1] = True  # in the prompt: ignored, and step 1 still starts at the response
    np.testing.assert_allclose(
        np.asarray(lik.prefix_min_step_logp(LOGP, ends, RESPONSE)),
        np.asarray(lik.prefix_min_step_logp(LOGP, ENDS, RESPONSE)),
    )


def test_saturated_probabilities_stay_finite():
    prm = PRM.copy()
    prm[3], prm[6] = 0.0, 1.0
    got = np.asarray(lik.likelihood_step_scores(prm, LOGP, ENDS, RESPONSE, jnp.ones(3)))
    assert np.isfinite(got).all() and 0 < got[3] < got[6] < 1


def test_rows_are_independent_under_vmap_and_jit():
    rows = lambda x, y: np.stack([x, y])  # noqa: E731
    other_ends = np.array([0, 0, 1, 0, 0, 0, 0, 0, 1, 0], bool)
    fn = jax.jit(jax.vmap(lik.likelihood_step_scores, in_axes=(0, 0, 0, 0, None)))
    w = jnp.array([0.5, 2.0, 0.1])
    got = np.asarray(
        fn(
            rows(PRM, PRM[::-1]),
            rows(LOGP, LOGP[::-1]),
            rows(ENDS, other_ends),
            rows(RESPONSE, RESPONSE),
            w,
        )
    )
    np.testing.assert_allclose(
        got[0], lik.likelihood_step_scores(PRM, LOGP, ENDS, RESPONSE, w), rtol=1e-6
    )
    np.testing.assert_allclose(
        got[1],
        lik.likelihood_step_scores(PRM[::-1], LOGP[::-1], other_ends, RESPONSE, w),
        rtol=1e-6,
    )
