"""The reward-model losses against hand computation, and the implicit PRM's step rewards against a
plain loop over tokens."""

import math

import jax
import jax.numpy as jnp
import numpy as np

from rl.reward_models import losses
from tests.rl.reward_models.toy_rm import per_step_by_hand


def test_losses_are_hand_computed():
    logits = jnp.array([[0.0, 2.0, -1.0, 0.5]])
    labels = jnp.array([[0.0, 1.0, 0.25, 0.0]])
    mask = jnp.array([[False, True, True, False]])
    loss, acc = losses.bce(logits, labels, mask)
    want = -(
        math.log(jax.nn.sigmoid(2.0))
        + 0.25 * math.log(jax.nn.sigmoid(-1.0))
        + 0.75 * math.log(1 - jax.nn.sigmoid(-1.0))
    )
    np.testing.assert_allclose(loss.total, want, rtol=1e-6)
    assert loss.count == 2 and acc.total == 2  # 2 > 0 with label 1; -1 < 0 with label 0.25
    attn = jnp.array([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    scores = jnp.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(losses.orm_logit(scores, attn), [3.0, 9.0])
    logp = jnp.array([[-1.0, -2.0, -3.0]])
    ref = jnp.array([[-1.5, -1.0, -3.0]])
    resp = jnp.array([[False, True, True]])
    np.testing.assert_allclose(losses.implicit_reward(logp, ref, resp, 0.5), [0.5 * (-1.0 + 0.0)])


def test_implicit_step_rewards_are_per_step_sums():
    rng = np.random.default_rng(0)
    t = 20
    logp, ref_logp = (-rng.random(t).astype(np.float32) for _ in range(2))
    response = np.arange(t) >= 4
    step_end = np.zeros(t, bool)
    step_end[[6, 7, 12, 17]] = True  # a one-token step at 7; tokens 18.. belong to no step
    got = losses.implicit_step_rewards(logp, ref_logp, step_end, response, 0.3)
    want, _ = per_step_by_hand(logp, ref_logp, step_end, response, 0.3)
    np.testing.assert_allclose(np.asarray(got), want, atol=1e-6)
