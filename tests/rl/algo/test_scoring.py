"""Scoring a rollout (``make_score_fn``) and shaping it into per-token rewards (``make_shape_fn``).

Scores: tiny random models (``models.presets.tiny``) over a 2-row batch with left-padded prompts and
a right-padded response; each output is checked against the model's own full forward, re-aligned
by hand, and the ORM against a pass over the sequence cut after the response's last token.

Shaping: a 2-row batch of hand-chosen scores whose per-token rewards, GAE returns and metrics are
worked out in the comments.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel, ValueModel
from models.likelihood_prm import LikelihoodPRM
from rewards.likelihood import likelihood_step_scores
from rl.algo.scoring import make_score_fn, make_shape_fn, response_structure
from rl.config import PPOConfig, RewardConfig
from rl.data.toy_tokenizer import toy_tokenizer
from tests.models.hf_reference import jit

V, P, R = 32, 4, 5
CFG = ModelConfig.from_dict(presets.tiny(vocab_size=V).to_dict())


def _log_softmax(x):
    x = np.asarray(x, np.float64)
    x = x - x.max(-1, keepdims=True)
    return x - np.log(np.exp(x).sum(-1, keepdims=True))


def _random(make, seed: int):
    """`make()`'s module with every parameter drawn from N(0, 0.3) on the host: no init program is
    compiled, and the value head is not left at its zero init."""
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    state = jax.tree.map(lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), abstract)
    return nnx.merge(graphdef, state)


@pytest.fixture(scope="module")
def models():
    return {
        "policy": _random(lambda: CausalLM(CFG, rngs=nnx.Rngs(0)), 0),
        "critic": _random(lambda: ValueModel(CFG, rngs=nnx.Rngs(0)), 1),
        "ref": _random(lambda: CausalLM(CFG, rngs=nnx.Rngs(0)), 2),
        "prm": _random(lambda: RewardModel(CFG, "scalar", rngs=nnx.Rngs(0)), 3),
        "orm": _random(lambda: RewardModel(CFG, "two_class", rngs=nnx.Rngs(0)), 4),
        "implicit": _random(lambda: CausalLM(CFG, rngs=nnx.Rngs(0)), 5),
    }


_FORWARD = jit(
    lambda graphdef, state, ids, mask: nnx.merge(graphdef, state)(ids, mask), static_argnums=0
)


def _forward(model, ids, mask):
    """The model's full forward; one compile per model class and shape."""
    graphdef, state = nnx.split(model)
    return np.asarray(_FORWARD(graphdef, state, ids, mask))


@pytest.fixture(scope="module")
def rollout():
    """Row 0: one pad before a 3-token prompt, a full 5-token response. Row 1: a 4-token prompt, a
    3-token response then 2 pads."""
    rng = np.random.default_rng(1)
    tokens = rng.integers(1, V, size=(2, P + R)).astype(np.int32)
    mask = np.ones((2, P + R), bool)
    tokens[0, 0], mask[0, 0] = 0, False
    tokens[1, P + 3 :], mask[1, P + 3 :] = 0, False
    response = mask[:, P:]
    last = np.zeros((2, R), bool)
    last[0, 4] = last[1, 2] = True
    return tokens, mask, response, last


def test_scores_are_each_models_outputs_at_the_response_positions(models, rollout):
    tokens, mask, response, last = rollout
    graphdefs, params = {}, {}
    for name, model in models.items():
        graphdefs[name], params[name] = nnx.split(model)
    out = jit(make_score_fn(graphdefs, P))(params, tokens, mask, last)
    assert set(out) == {
        "old_logp",
        "ref_logp",
        "values",
        "prm_scores",
        "orm_score",
        "implicit_logp",
        "implicit_ref_logp",
    }
    # Without its own reference the implicit PRM's log-ratio is taken to the PPO reference.
    np.testing.assert_array_equal(out["implicit_ref_logp"], out["ref_logp"])
    for key in ("old_logp", "ref_logp", "values", "prm_scores", "implicit_logp"):
        assert out[key].shape == (2, R) and out[key].dtype == jnp.float32, key
    assert out["orm_score"].shape == (2,)

    # Response token j is predicted by the logits at sequence position P + j - 1.
    for key, name in (("old_logp", "policy"), ("ref_logp", "ref"), ("implicit_logp", "implicit")):
        logp = _log_softmax(_forward(models[name], tokens, mask))
        for b in range(2):
            for j in range(R):
                want = logp[b, P + j - 1, tokens[b, P + j]]
                np.testing.assert_allclose(out[key][b, j], want, rtol=1e-5, atol=1e-5)
    values = _forward(models["critic"], tokens, mask)
    np.testing.assert_allclose(out["values"], values[:, P - 1 : -1], rtol=1e-6, atol=1e-6)
    assert np.abs(np.asarray(out["values"])).max() > 1e-3  # the head is not zero
    prm = _forward(models["prm"], tokens, mask)
    np.testing.assert_allclose(out["prm_scores"], prm[:, P:], rtol=1e-6, atol=1e-6)

    # The ORM is read at each row's last response token: what it scores there when the sequence
    # ends at that token (row 0's last token ends the sequence; row 1 is cut after its third).
    full = _forward(models["orm"], tokens, mask)
    cut = _forward(models["orm"], tokens[1:, : P + 3], mask[1:, : P + 3])
    np.testing.assert_allclose(out["orm_score"], [full[0, -1], cut[0, -1]], rtol=1e-5, atol=1e-6)
    assert np.all((0.0 < out["orm_score"]) & (out["orm_score"] < 1.0))  # two-class probabilities


def test_only_the_configured_models_are_scored(models, rollout):
    tokens, mask, _, last = rollout
    graphdefs, params = {}, {}
    for name in ("policy", "critic", "ref"):
        graphdefs[name], params[name] = nnx.split(models[name])
    out = jit(make_score_fn(graphdefs, P))(params, tokens, mask, last)
    assert set(out) == {"old_logp", "ref_logp", "values"}
    del graphdefs["critic"], params["critic"]  # a critic-free run has no values to compute
    out = jit(make_score_fn(graphdefs, P))(params, tokens, mask, last)
    assert set(out) == {"old_logp", "ref_logp"}


def test_log_probs_are_of_the_sampling_distribution_and_the_implicit_prm_takes_its_reference(
    models, rollout
):
    """At temperature 0.7 every log-prob is log softmax(logits / 0.7) of its own model; with an
    "implicit_ref" model the implicit PRM's reference log-probs are that model's (here: the
    critic-free policy's own weights, so the two log-probs coincide exactly)."""
    tokens, mask, _, last = rollout
    names = {"policy": "policy", "ref": "ref", "implicit": "implicit", "implicit_ref": "policy"}
    graphdefs, params = {}, {}
    for slot, name in names.items():
        graphdefs[slot], params[slot] = nnx.split(models[name])
    out = jit(make_score_fn(graphdefs, P, temperature=0.7))(params, tokens, mask, last)
    for key, name in (("old_logp", "policy"), ("ref_logp", "ref"), ("implicit_logp", "implicit")):
        logp = _log_softmax(_forward(models[name], tokens, mask) / 0.7)
        want = np.take_along_axis(logp[:, P - 1 : -1], tokens[:, P:, None], axis=-1)[..., 0]
        np.testing.assert_allclose(out[key], want, rtol=1e-5, atol=1e-5, err_msg=key)
    np.testing.assert_array_equal(out["implicit_ref_logp"], out["old_logp"])


# --- shaping ------------------------------------------------------------------------------------

# Two rows of R = 4 tokens. Row 0: a full response with steps ending at t = 1 and t = 3, success 1.
# Row 1: a 2-token response (then padding) with its only step end at t = 1, success 0. Values at
# padding and at non-step positions are garbage: they must not reach the rewards.
RESPONSE = np.array([[1, 1, 1, 1], [1, 1, 0, 0]], bool)
STEP_END = np.array([[0, 1, 0, 1], [0, 1, 0, 0]], bool)
SUCCESS = np.array([1.0, 0.0], np.float32)


def _scores(**extra):
    s = {
        "old_logp": [[-1.0, -1.0, -1.0, -1.0], [-2.0, -2.0, -50.0, -50.0]],
        "ref_logp": [[-1.5, -1.0, -0.5, -1.0], [-2.0, -3.0, 7.0, 7.0]],
        "values": [[0.5, 0.5, 0.5, 0.5], [0.2, 0.1, 9.0, 9.0]],
        **extra,
    }
    return {k: jnp.asarray(v, jnp.float32) for k, v in s.items()}


def _shape(reward_cfg, ppo_cfg, scores, step_end=STEP_END, success=SUCCESS, samples=1):
    arrays, metrics = jit(make_shape_fn(reward_cfg, ppo_cfg, samples))(
        scores, jnp.asarray(step_end), jnp.asarray(RESPONSE), jnp.asarray(success)
    )
    return {k: np.asarray(v) for k, v in arrays.items()}, {k: float(v) for k, v in metrics.items()}


def test_success_clipped_prm_and_kl_in_the_reward():
    """Success 1 on row 0's last token; PRM scores s clipped to min(s - 0.5, 0) at step ends,
    weighted 0.5; k1 KL (logp - ref_logp) charged at 0.1 per token.

    Row 0: s = 0.2, 0.9 -> clip -0.3, 0 -> x0.5: -0.15 at t=1. KL k1 = 0.5, 0, -0.5, 0 -> -0.05,
      0, +0.05, 0. Success +1 at t=3. r = [-0.05, -0.15, 0.05, 1.0], return 0.85.
    Row 1: s = 0.1 -> clip -0.4 -> x0.5: -0.2 at t=1; KL k1 = 0, 1 -> -0.1 at t=1. r = [0, -0.3].
    gamma = lam = 1, no whitening: returns are rewards-to-go, advantages returns - values.
    """
    reward_cfg = RewardConfig(prm_weight=0.5, prm_transform="clip", prm_eta=0.5, kl_coef=0.1)
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    prm = [[9.0, 0.2, 9.0, 0.9], [9.0, 0.1, 100.0, 100.0]]
    arrays, m = _shape(reward_cfg, ppo_cfg, _scores(prm_scores=prm))
    np.testing.assert_allclose(
        arrays["rewards"], [[-0.05, -0.15, 0.05, 1.0], [0.0, -0.3, 0.0, 0.0]], atol=1e-6
    )
    returns = [[0.85, 0.9, 1.05, 1.0], [-0.3, -0.3, 0.0, 0.0]]
    np.testing.assert_allclose(arrays["returns"], returns, atol=1e-6)
    advantages = [[0.35, 0.4, 0.55, 0.5], [-0.5, -0.4, 0.0, 0.0]]
    np.testing.assert_allclose(arrays["advantages"], advantages, atol=1e-6)
    want = {
        "reward/success": 0.5,
        "reward/total": (0.85 - 0.3) / 2,
        "reward/prm_raw": (0.2 + 0.9 + 0.1) / 2,  # raw scores summed at step ends
        "reward/prm_shaped": (-0.3 - 0.4) / 2,  # transformed, before the weight
        "reward/process": (-0.15 - 0.2) / 2,  # weighted
        "reward/kl": (0.0 + 1.0) / 2,
        "reward/orm": 0.0,
        "value/mean": (4 * 0.5 + 0.2 + 0.1) / 6,
    }
    for key, value in want.items():
        assert m[key] == pytest.approx(value, abs=1e-6), key
    flat_returns, flat_values = np.array(returns)[RESPONSE], np.array(_scores()["values"])[RESPONSE]
    explained = 1 - np.var(flat_returns - flat_values) / np.var(flat_returns)
    assert m["value/explained_variance"] == pytest.approx(explained, abs=1e-5)


def test_gated_delta_prm_orm_and_kl_in_the_loss():
    """Success weighted 0.5, ORM weighted 0.5 on the last token, delta-shaped PRM gated on the
    unweighted success reaching 1, KL in the loss (k3 reported, not charged); gamma 0.9, lam 0.5,
    whitened advantages.

    Row 0 (success 1): steps s = 0.2, 0.9 -> delta: s_1 = 0.2 at t=1, 0 at the last step. ORM 0.8
      -> 0.4. r = [0, 0.2, 0, 0.5 + 0.4]. k3 = (e^-0.5 - 0.5) + (e^0.5 - 1.5) = 0.25525.
    Row 1 (success 0): steps at t=0, 1 with s = 0.7, 0.1 -> delta 0.7 at t=0, gated to 0. ORM 0.4
      -> 0.2 at t=1. r = [0, 0.2]. k3 of k1 = 0, 1: e^-1 = 0.36788.
    GAE, delta_t = r_t + 0.9 V_{t+1} - V_t and A_t = delta_t + 0.45 A_{t+1}:
      row 0: delta = -0.05, 0.15, -0.05, 0.4 -> A = 0.043825, 0.2085, 0.13, 0.4
      row 1: delta = -0.11, 0.1 -> A = -0.065, 0.1
    """
    reward_cfg = RewardConfig(
        success_weight=0.5,
        orm_weight=0.5,
        prm_weight=1.0,
        prm_transform="delta",
        gated=True,
        gate_threshold=1.0,
        kl_coef=0.1,
        kl_estimator="k3",
        kl_in="loss",
    )
    ppo_cfg = PPOConfig(gamma=0.9, lam=0.5, whiten_advantages=True)
    step_end = np.array([[0, 1, 0, 1], [1, 1, 0, 0]], bool)
    scores = _scores(
        prm_scores=[[9.0, 0.2, 9.0, 0.9], [0.7, 0.1, 100.0, 100.0]], orm_score=[0.8, 0.4]
    )
    arrays, m = _shape(reward_cfg, ppo_cfg, scores, step_end=step_end)
    np.testing.assert_allclose(
        arrays["rewards"], [[0.0, 0.2, 0.0, 0.9], [0.0, 0.2, 0.0, 0.0]], atol=1e-6
    )
    raw_adv = np.array([[0.043825, 0.2085, 0.13, 0.4], [-0.065, 0.1, 0.0, 0.0]])
    values = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.1, 0.0, 0.0]])
    np.testing.assert_allclose(arrays["returns"], (raw_adv + values) * RESPONSE, atol=1e-6)
    flat = raw_adv[RESPONSE]
    whitened = np.zeros_like(raw_adv)
    whitened[RESPONSE] = (flat - flat.mean()) / np.sqrt(flat.var() + 1e-8)
    np.testing.assert_allclose(arrays["advantages"], whitened, atol=1e-5)
    k3_row0 = (np.exp(-0.5) - 0.5) + (np.exp(0.5) - 1.5)
    want = {
        "reward/total": (1.1 + 0.2) / 2,
        "reward/prm_raw": (1.1 + 0.8) / 2,
        "reward/prm_shaped": (0.2 + 0.7) / 2,  # before the gate
        "reward/process": (0.2 + 0.0) / 2,  # after it
        "reward/kl": (k3_row0 + np.exp(-1.0)) / 2,
        "reward/orm": (0.8 + 0.4) / 2,
        "reward/success": 0.5,
    }
    for key, value in want.items():
        assert m[key] == pytest.approx(value, abs=1e-5), key


def test_implicit_prm_sums_the_scaled_log_ratio_over_each_step():
    """Implicit PRM, beta 0.5, weight 2; no learned PRM configured (no prm_scores).

    Row 0: log(pi/pi_ref) = 0.5, 0.5, -1.5, 0 -> steps (t0-1, t2-3): 0.5 x 1.0, 0.5 x -1.5 ->
      x2: 1.0 at t=1, -1.5 at t=3; plus success 1 at t=3. r = [0, 1.0, 0, -0.5].
    Row 1: log-ratio 0, 2 -> 0.5 x 2 x 2 = 2.0 at t=1. r = [0, 2.0].
    """
    reward_cfg = RewardConfig(implicit_prm_weight=2.0, implicit_prm_beta=0.5)
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    scores = _scores(implicit_logp=[[-1.0, -0.5, -2.0, -1.0], [-2.0, -1.0, 30.0, 30.0]])
    arrays, m = _shape(reward_cfg, ppo_cfg, scores)
    np.testing.assert_allclose(
        arrays["rewards"], [[0.0, 1.0, 0.0, -0.5], [0.0, 2.0, 0.0, 0.0]], atol=1e-6
    )
    assert m["reward/process"] == pytest.approx((-0.5 + 2.0) / 2, abs=1e-6)
    assert m["reward/prm_raw"] == 0.0 and m["reward/prm_shaped"] == 0.0
    assert m["reward/total"] == pytest.approx((0.5 + 2.0) / 2, abs=1e-6)


def test_success_only_reward_sits_on_the_last_real_token():
    reward_cfg = RewardConfig()
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    arrays, m = _shape(reward_cfg, ppo_cfg, _scores(), success=np.array([1.0, 1.0], np.float32))
    np.testing.assert_array_equal(arrays["rewards"], [[0, 0, 0, 1], [0, 1, 0, 0]])
    np.testing.assert_array_equal(arrays["returns"] != 0, RESPONSE)
    assert m["reward/total"] == 1.0 and m["reward/success"] == 1.0


def test_a_truncated_response_has_no_fragment_step_end_and_no_orm_read():
    """Row 0 ended by EOS: both steps end, the ORM reads its last token. Row 1 stopped by the
    length limit inside its second step: one step end, and no ORM position at all."""
    tok = toy_tokenizer()
    eos = tok.eos_token_id
    rows = [tok("1+2=3\n3+4=7", add_special_tokens=False)["input_ids"] + [eos]]
    rows.append(tok("1+2=3\n3+4=", add_special_tokens=False)["input_ids"])
    width = max(len(r) for r in rows) + 2
    tokens = np.zeros((2, width), np.int32)
    response = np.zeros((2, width), bool)
    for b, r in enumerate(rows):
        tokens[b, : len(r)], response[b, : len(r)] = r, True
    s = response_structure(tok, tokens, response, np.array([False, True]), "\n")
    assert np.flatnonzero(s.step_end_BxR[0]).tolist() == [4, 10]
    assert np.flatnonzero(s.step_end_BxR[1]).tolist() == [4]
    assert s.steps == [["1+2=3", "3+4=7"], ["1+2=3"]]
    assert np.flatnonzero(s.last_BxR[0]).tolist() == [len(rows[0]) - 1]  # the EOS token
    assert not s.last_BxR[1].any()
    assert s.truncated_B.tolist() == [False, True]


@pytest.mark.parametrize("estimator", ["grpo", "rloo", "reinforce_pp"])
def test_critic_free_estimators_take_the_shaped_rewards_by_hand(estimator):
    """Two samples of one prompt, the clipped-PRM + success rewards of the first shaping test
    (KL in the loss for GRPO): r0 = [0, -0.15, 0, 1], r1 = [0, -0.2, 0, 0] (row 1 is 2 tokens).
    GRPO normalises the group's rewards at step ends and last tokens: -0.15, 1 (t = 1, 3) and -0.2
    (row 1's step end is its last token), mean 0.2167, std 0.5543, and sums them from each token
    on; RLOO: returns-to-go minus the other row's
    total (0.85 vs -0.2); REINFORCE++: returns-to-go whitened over the 6 response tokens."""
    reward_cfg = RewardConfig(prm_weight=0.5, prm_transform="clip", prm_eta=0.5, kl_coef=0.0)
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False, advantage=estimator)
    prm = [[9.0, 0.2, 9.0, 0.9], [9.0, 0.1, 100.0, 100.0]]
    scores = _scores(prm_scores=prm)
    del scores["values"]  # no critic under a critic-free estimator
    arrays, metrics = _shape(reward_cfg, ppo_cfg, scores, samples=2)
    assert set(arrays) == {"rewards", "advantages"}  # no critic targets either
    assert not any(k.startswith("value/") for k in metrics)
    rewards = np.array([[0.0, -0.15, 0.0, 1.0], [0.0, -0.2, 0.0, 0.0]])
    np.testing.assert_allclose(arrays["rewards"], rewards, atol=1e-6)
    returns = np.array([[0.85, 0.85, 1.0, 1.0], [-0.2, -0.2, 0.0, 0.0]])
    if estimator == "grpo":
        at = np.array([-0.15, 1.0, -0.2])
        z = (at - at.mean()) / at.std()
        want = [[z[0] + z[1], z[0] + z[1], z[1], z[1]], [z[2], z[2], 0.0, 0.0]]
    elif estimator == "rloo":
        want = [[0.85 + 0.2, 0.85 + 0.2, 1.2, 1.2], [-0.2 - 0.85, -0.2 - 0.85, 0.0, 0.0]]
    else:
        kept = returns[RESPONSE]
        want = np.where(RESPONSE, (returns - kept.mean()) / kept.std(), 0.0)
    np.testing.assert_allclose(arrays["advantages"], want, atol=1e-5)


def test_the_critic_targets_take_their_own_lambda():
    """lam 0 for the actor (one-step TD residuals r_t + V_{t+1} - V_t), critic_lam 1 for the
    critic (returns-to-go): the rewards of the first shaping test, values 0.5 / 0.2, 0.1."""
    reward_cfg = RewardConfig(prm_weight=0.5, prm_transform="clip", prm_eta=0.5, kl_coef=0.1)
    ppo_cfg = PPOConfig(gamma=1.0, lam=0.0, critic_lam=1.0, whiten_advantages=False)
    prm = [[9.0, 0.2, 9.0, 0.9], [9.0, 0.1, 100.0, 100.0]]
    arrays, _ = _shape(reward_cfg, ppo_cfg, _scores(prm_scores=prm))
    np.testing.assert_allclose(
        arrays["returns"], [[0.85, 0.9, 1.05, 1.0], [-0.3, -0.3, 0.0, 0.0]], atol=1e-6
    )
    r = np.array([[-0.05, -0.15, 0.05, 1.0], [0.0, -0.3, 0.0, 0.0]])
    v = np.array([[0.5, 0.5, 0.5, 0.5], [0.2, 0.1, 0.0, 0.0]])
    v_next = np.concatenate([v[:, 1:], np.zeros((2, 1))], axis=1)
    v_next[1, 1] = 0.0  # row 1 ends at t = 1
    td = np.where(RESPONSE, r + v_next - v, 0.0)
    np.testing.assert_allclose(arrays["advantages"], td, atol=1e-6)


# Row 0: s = 0.2 (t = 1), 0.9 (t = 3), success 1; row 1: s = 0.1 at its last token t = 1, success
# 0. The step rewards of each transform (eta 0.5), worked out from the README's table:
#   raw (0.2, 0.9 | 0.1); clip min(s - 0.5, 0): (-0.3, 0 | -0.4); delta s_k - s_{k+1}, s_{K-1}
#   at K-1, 0 at K: (0.2, 0 | 0); clip_delta: delta of (-0.3, 0 | -0.4) = (-0.3, 0 | 0);
#   min_form G_k - G_{k+1}, G_k = min_{j>=k} s_j: G = (0.2, 0.9) -> (-0.7, 0.9 | 0.1);
#   potential s_k - s_{k-1}: (0.2, 0.7 | 0.1); with the terminal -s_K: (0.2, -0.2 | 0).
STEP_REWARDS = {
    ("raw", False): ((0.2, 0.9), 0.1),
    ("clip", False): ((-0.3, 0.0), -0.4),
    ("delta", False): ((0.2, 0.0), 0.0),
    ("clip_delta", False): ((-0.3, 0.0), 0.0),
    ("min_form", False): ((-0.7, 0.9), 0.1),
    ("potential", False): ((0.2, 0.7), 0.1),
    ("potential", True): ((0.2, -0.2), 0.0),
}


@pytest.mark.parametrize("transform, terminal", sorted(STEP_REWARDS))
@pytest.mark.parametrize("estimator", ["gae", "rloo"])
def test_every_transform_places_its_step_rewards_at_step_ends(transform, terminal, estimator):
    reward_cfg = RewardConfig(
        prm_weight=1.0, prm_transform=transform, prm_eta=0.5, prm_potential_terminal=terminal
    )
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False, advantage=estimator)
    scores = _scores(prm_scores=[[9.0, 0.2, 9.0, 0.9], [9.0, 0.1, 100.0, 100.0]])
    if estimator != "gae":
        del scores["values"]
    arrays, _ = _shape(reward_cfg, ppo_cfg, scores, samples=2 if estimator == "rloo" else 1)
    (a, b), c = STEP_REWARDS[transform, terminal]
    want = np.array([[0.0, a, 0.0, b + 1.0], [0.0, c, 0.0, 0.0]])
    np.testing.assert_allclose(arrays["rewards"], want, atol=1e-6)
    if estimator == "rloo":  # the transform's return is what the group estimator compares
        totals = want.sum(1)
        rtg = np.cumsum(want[:, ::-1], axis=1)[:, ::-1]
        loo = np.array([[totals[1]], [totals[0]]])
        np.testing.assert_allclose(arrays["advantages"], (rtg - loo) * RESPONSE, atol=1e-6)


def test_an_empty_response_gets_no_reward_and_no_advantage():
    """Row 1 is empty (the sampler stopped at once): its success, PRM score and KL have no token to
    sit on, so its rewards, returns and advantages are all 0; row 0 is unaffected."""
    response = np.array([[1, 1, 1, 1], [0, 0, 0, 0]], bool)
    reward_cfg = RewardConfig(prm_weight=1.0, kl_coef=0.1)
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    scores = _scores(prm_scores=[[9.0, 0.2, 9.0, 0.9], [5.0, 5.0, 5.0, 5.0]])
    arrays, metrics = jit(make_shape_fn(reward_cfg, ppo_cfg, 1))(
        scores,
        jnp.asarray(np.array([[0, 1, 0, 1], [0, 0, 0, 0]], bool)),
        jnp.asarray(response),
        jnp.asarray([1.0, 1.0]),
    )
    for key in ("rewards", "returns", "advantages"):
        np.testing.assert_array_equal(np.asarray(arrays[key])[1], np.zeros(4), err_msg=key)
    # row 0: raw PRM 0.2, 0.9, success 1, k1 KL 0.5, 0, -0.5, 0 charged at 0.1
    np.testing.assert_allclose(np.asarray(arrays["rewards"])[0], [-0.05, 0.2, 0.05, 1.9], atol=1e-6)
    assert float(metrics["reward/success"]) == 1.0  # the verdict is logged, not rewarded


def test_the_pattern_reward_joins_the_outcome_at_the_last_token():
    """scores["pattern"] (rl.algo.patterns' terms, already 0 where RPR does not apply) enters the
    outcome: r_last = success_weight * SR + pattern_weight * pattern. Row 0: 0.5 * 1 + 2 * 0.25 =
    1.0 at t = 3; row 1: 0.5 * 0 + 2 * 0.4 = 0.8 at t = 1 (its last real token)."""
    reward_cfg = RewardConfig(success_weight=0.5, pattern_weight=2.0)
    ppo_cfg = PPOConfig(gamma=1.0, lam=1.0, whiten_advantages=False)
    scores = _scores(pattern=[0.25, 0.4])
    arrays, m = _shape(reward_cfg, ppo_cfg, scores)
    np.testing.assert_allclose(arrays["rewards"], [[0, 0, 0, 1.0], [0, 0.8, 0, 0]], atol=1e-6)
    assert m["reward/pattern"] == pytest.approx((0.25 + 0.4) / 2)
    assert m["reward/outcome"] == pytest.approx((1.0 + 0.8) / 2)
    assert m["reward/success"] == pytest.approx(0.5)  # the verifier's part, unweighted
    # Without a pattern weight the term is ignored and no reward/pattern is logged.
    arrays, m = _shape(RewardConfig(success_weight=0.5), ppo_cfg, scores)
    np.testing.assert_allclose(arrays["rewards"], [[0, 0, 0, 0.5], [0, 0, 0, 0]], atol=1e-6)
    assert "reward/pattern" not in m and m["reward/outcome"] == pytest.approx(0.25)


def test_a_likelihood_prm_is_scored_by_its_head_and_lm_and_combined_in_shaping(models, rollout):
    """Scoring gives the head's probabilities and the LM's untempered log-probs of the response;
    shaping combines them at the step ends (rewards.likelihood), which the raw PRM sum shows."""
    tokens, mask, response, last = rollout
    head = _random(
        lambda: RewardModel(CFG, "scalar", rngs=nnx.Rngs(0), sigmoid=True, head_bias=True), 6
    )
    weights = (0.8, 2.0, 0.3)
    graphdefs, params = {}, {}
    parts = {"policy": models["policy"], "ref": models["ref"]}
    parts["prm"] = LikelihoodPRM(head, models["implicit"], weights)
    for name, model in parts.items():
        graphdefs[name], params[name] = nnx.split(model)
    out = jit(make_score_fn(graphdefs, P, temperature=2.0))(params, tokens, mask, last)
    np.testing.assert_allclose(out["prm_scores"], _forward(head, tokens, mask)[:, P:], atol=1e-6)
    logp = _log_softmax(_forward(models["implicit"], tokens, mask))  # untempered: T = 2 ignored
    for b in range(2):
        for j in range(R):
            want = logp[b, P + j - 1, tokens[b, P + j]]
            np.testing.assert_allclose(out["prm_lm_logp"][b, j], want, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(out["prm_likelihood_weights"], np.tile(weights, (2, 1)), rtol=1e-6)

    step_end = np.array([[0, 1, 0, 1, 1], [1, 0, 1, 0, 0]], bool) & response
    reward_cfg = RewardConfig(prm_weight=1.0, prm_transform="raw", kl_coef=0.0)
    scores = {k: out[k] for k in ("prm_scores", "prm_lm_logp", "prm_likelihood_weights")}
    scores.update(old_logp=out["old_logp"], ref_logp=out["ref_logp"])
    shape = jit(make_shape_fn(reward_cfg, PPOConfig(gamma=1.0, lam=1.0)))
    scores["values"] = jnp.zeros((2, R), jnp.float32)
    _, metrics = shape(scores, jnp.asarray(step_end), jnp.asarray(response), jnp.zeros(2))
    combined = jax.vmap(likelihood_step_scores, in_axes=(0, 0, 0, 0, None))(
        out["prm_scores"], out["prm_lm_logp"], step_end, response, jnp.asarray(weights)
    )
    want = float(np.where(step_end, combined, 0.0).sum(1).mean())
    assert float(metrics["reward/prm_raw"]) == pytest.approx(want, rel=1e-5)
    head_only = float(np.where(step_end, out["prm_scores"], 0.0).sum(1).mean())
    assert abs(want - head_only) > 1e-3


def test_a_likelihood_prm_reading_the_reference_reuses_its_log_probs_bit_for_bit(models, rollout):
    """prm_lm_is_ref (the LM has the reference's parameters, temperature 1): the LM's pass is
    left out and its log-probs are the reference's, equal to a separate pass of the same model
    to the last bit; at another temperature the reuse would be wrong, so it is refused."""
    tokens, mask, response, last = rollout
    head = _random(
        lambda: RewardModel(CFG, "scalar", rngs=nnx.Rngs(0), sigmoid=True, head_bias=True), 6
    )
    parts = {"policy": models["policy"], "ref": models["ref"]}
    parts["prm"] = LikelihoodPRM(head, models["ref"], (0.8, 2.0, 0.3))
    graphdefs, params = {}, {}
    for name, model in parts.items():
        graphdefs[name], params[name] = nnx.split(model)
    apart = jit(make_score_fn(graphdefs, P))(params, tokens, mask, last)
    reused = jit(make_score_fn(graphdefs, P, prm_lm_is_ref=True))(params, tokens, mask, last)
    assert set(apart) == set(reused)
    for key in apart:
        np.testing.assert_array_equal(np.asarray(reused[key]), np.asarray(apart[key]), err_msg=key)
    np.testing.assert_array_equal(np.asarray(reused["prm_lm_logp"]), np.asarray(reused["ref_logp"]))
    with pytest.raises(ValueError, match="prm_lm_is_ref needs temperature 1"):
        make_score_fn(graphdefs, P, temperature=2.0, prm_lm_is_ref=True)
