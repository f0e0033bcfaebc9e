"""PPO losses against hand-computed values; sums and counts accumulate exactly."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from rl.algo import losses as ppo

LOG = np.log


def test_policy_loss_hand_values():
    # ratios: 1.5 (A=+1, clipped at 1.2), 0.5 (A=-2, clipped at 0.8), 1.0 (A=3), pad.
    old = np.zeros(4, np.float32)
    logp = np.array([LOG(1.5), LOG(0.5), 0.0, 5.0], np.float32)
    adv = np.array([1.0, -2.0, 3.0, 100.0], np.float32)
    mask = np.array([1, 1, 1, 0], bool)
    out = ppo.policy_loss(logp, old, adv, mask, clip_eps=0.2)
    # token losses: max(-1.5, -1.2) = -1.2; max(1.0, 1.6) = 1.6; max(-3, -3) = -3
    np.testing.assert_allclose(out.loss.total, -1.2 + 1.6 - 3.0, atol=1e-6)
    assert float(out.loss.count) == 3
    np.testing.assert_allclose(out.loss.mean, (-1.2 + 1.6 - 3.0) / 3, atol=1e-6)
    np.testing.assert_allclose(out.clip_frac.total, 2.0)  # the first two tokens were clipped
    # k3 of KL(old || new): r - 1 - log r
    want_kl = sum(r - 1 - np.log(r) for r in (1.5, 0.5, 1.0))
    np.testing.assert_allclose(out.approx_kl.total, want_kl, atol=1e-6)


def test_dual_clip_caps_negative_advantage_loss():
    logp = np.array([LOG(10.0)], np.float32)
    adv = np.array([-1.0], np.float32)
    mask = np.ones(1, bool)
    plain = ppo.policy_loss(logp, np.zeros(1, np.float32), adv, mask, clip_eps=0.2)
    dual = ppo.policy_loss(logp, np.zeros(1, np.float32), adv, mask, clip_eps=0.2, dual_clip=3.0)
    np.testing.assert_allclose(plain.loss.total, 10.0, rtol=1e-6)  # max(10, 1.2)
    np.testing.assert_allclose(dual.loss.total, 3.0, rtol=1e-6)  # min(10, 3 * 1)


def test_value_loss_hand_values():
    v = np.array([1.0, 0.0], np.float32)
    old = np.array([0.5, 0.5], np.float32)
    ret = np.array([2.0, 0.4], np.float32)
    mask = np.ones(2, bool)
    # token 0: unclipped (1-2)^2 = 1; clipped v = 0.5 + 0.2 = 0.7 -> 1.69; max = 1.69
    # token 1: unclipped 0.16; clipped v = 0.3 -> 0.01; max = 0.16
    out = ppo.value_loss(v, old, ret, mask, value_clip=0.2)
    np.testing.assert_allclose(out.total, 0.5 * (1.69 + 0.16), atol=1e-6)
    out = ppo.value_loss(v, old, ret, mask, value_clip=0.0)
    np.testing.assert_allclose(out.total, 0.5 * (1.0 + 0.16), atol=1e-6)


def test_entropy_and_token_logp():
    logits = np.log(np.array([[0.5, 0.25, 0.25], [1.0, 1e-30, 1e-30]], np.float32))
    ent = ppo.entropy(logits, np.array([1, 0], bool))
    np.testing.assert_allclose(ent.total, 1.5 * np.log(2), atol=1e-6)
    np.testing.assert_allclose(
        ppo.token_logp(logits, np.array([1, 0])), [np.log(0.25), 0.0], atol=1e-6
    )


def test_kl_loss_k3():
    logp = np.array([-1.0, -2.0], np.float32)
    ref = np.array([-1.5, -1.0], np.float32)
    lr = ref - logp
    np.testing.assert_allclose(
        ppo.kl_loss(logp, ref, np.ones(2, bool)).total, np.sum(np.exp(lr) - 1 - lr), atol=1e-6
    )


def test_kl_loss_k1_k2_by_hand():
    logp = np.array([-1.0, -2.0], np.float32)
    ref = np.array([-1.5, -1.0], np.float32)
    k1 = logp - ref
    mask = np.ones(2, bool)
    np.testing.assert_allclose(ppo.kl_loss(logp, ref, mask, "k1").total, k1.sum(), atol=1e-6)
    np.testing.assert_allclose(
        ppo.kl_loss(logp, ref, mask, "k2").total, np.sum(0.5 * k1**2), atol=1e-6
    )
    with pytest.raises(ValueError, match="k4"):
        ppo.kl_loss(logp, ref, mask, "k4")


def test_kl_loss_expected_gradients_are_the_documented_divergences():
    """On a 5-way categorical pi = softmax(theta) against a fixed pi_ref, the exact expectation
    over y ~ pi of each estimator's gradient (y fixed, differentiated through log pi(y)): k1 -> 0,
    k2 -> grad KL(pi || pi_ref), k3 -> grad KL(pi_ref || pi)."""
    theta = jnp.array([0.3, -1.0, 0.8, 0.0, -0.4])
    ref_logp = jax.nn.log_softmax(jnp.array([-0.2, 0.5, 0.1, -1.0, 0.6]))
    ys = jnp.arange(5)

    def expected_grad(estimator):
        def per_y(t, y):
            logp = jax.nn.log_softmax(t)
            return ppo.kl_loss(logp[y][None], ref_logp[y][None], jnp.ones(1, bool), estimator).total

        grads = jax.vmap(jax.grad(per_y), in_axes=(None, 0))(theta, ys)  # [5 samples, 5 params]
        return jnp.sum(jax.nn.softmax(theta)[:, None] * grads, axis=0)

    def reverse_kl(t):
        p = jax.nn.softmax(t)
        return jnp.sum(p * (jnp.log(p) - ref_logp))

    def forward_kl(t):
        return jnp.sum(jnp.exp(ref_logp) * (ref_logp - jax.nn.log_softmax(t)))

    np.testing.assert_allclose(expected_grad("k1"), np.zeros(5), atol=1e-6)
    np.testing.assert_allclose(expected_grad("k2"), jax.grad(reverse_kl)(theta), atol=1e-6)
    np.testing.assert_allclose(expected_grad("k3"), jax.grad(forward_kl)(theta), atol=1e-6)


def test_whiten_masked():
    x = np.array([1.0, 2.0, 3.0, 100.0], np.float32)
    m = np.array([1, 1, 1, 0], bool)
    w = np.asarray(ppo.whiten(x, m))
    np.testing.assert_allclose(w[:3], (x[:3] - 2) / np.sqrt(2 / 3), atol=1e-4)
    assert w[3] == 0
    w2 = np.asarray(ppo.whiten(x, m, shift_mean=False))
    np.testing.assert_allclose(w2[:3].mean(), 2.0, atol=1e-5)


def test_masked_sums_accumulate_to_the_global_mean():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(8, 6)).astype(np.float32)
    m = rng.random((8, 6)) < 0.6
    whole = ppo.masked(x, m)
    parts = [ppo.masked(x[i : i + 2], m[i : i + 2]) for i in range(0, 8, 2)]
    acc = parts[0]
    for p in parts[1:]:
        acc = acc + p
    np.testing.assert_allclose(acc.mean, whole.mean, rtol=1e-6)
    np.testing.assert_allclose(acc.mean, x[m].mean(), rtol=1e-5)


def test_explained_variance():
    ret = jnp.array([1.0, 2.0, 3.0, 4.0])
    m = jnp.ones(4, bool)
    np.testing.assert_allclose(ppo.explained_variance(ret, ret, m), 1.0)
    np.testing.assert_allclose(ppo.explained_variance(jnp.full(4, 2.5), ret, m), 0.0, atol=1e-6)
    assert jax.jit(ppo.explained_variance)(ret, ret, m).shape == ()
