"""Reward-model training: a PRM learns synthetic step labels, the implicit PRM trains and its step
rewards are the shaping function's, an ORM trains, the mesh run matches the single-device one,
batches cut to their used columns train exactly as the padded arrays would, and the train config
names its bad fields."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs.sharding import RULES
from models.decoder import CausalLM
from models.sharding import make_mesh
from rewards import shaping
from rl.algo import losses as ppo
from rl.config import ConfigError
from rl.reward_models import data as rd
from rl.reward_models import evaluation, inference, modeling, sources
from rl.reward_models import training as rt
from tests.rl.reward_models.toy_rm import SPEC, per_step_by_hand, toy_arrays


@pytest.fixture(scope="module")
def data(tok):
    return toy_arrays(tok, "train", 1500), toy_arrays(tok, "test", 150)


@pytest.fixture(scope="module")
def trained_prm(data, model_config):
    train, _ = data
    prm = modeling.new_reward_model(model_config, seed=0)
    cfg = rt.RMTrainConfig(kind="prm", steps=240, batch_size=64, learning_rate=2e-3, log_every=40)
    return rt.train_reward_model(prm, train, cfg)


def test_prm_learns_synthetic_step_labels(data, trained_prm):
    _, heldout = data
    prm, history = trained_prm
    metrics = evaluation.evaluate_prm(prm, heldout)
    print(
        "held-out step metrics:",
        metrics,
        "train accuracy log:",
        [round(h["accuracy"], 3) for h in history],
    )
    assert metrics["n"] > 400 and 0.3 < metrics["positive_rate"] < 0.7  # chance is about 0.55
    assert metrics["accuracy"] > 0.85 and metrics["auc"] > 0.9
    assert [h["step"] for h in history] == [40, 80, 120, 160, 200, 240]
    assert history[-1]["loss"] < history[0]["loss"]


def test_implicit_prm_trains_and_its_step_rewards_are_the_shaping_functions(tok, model_config):
    train = toy_arrays(tok, "train", 64, seed=1)
    heldout = toy_arrays(tok, "test", 8, seed=1)
    reference = CausalLM(model_config, rngs=nnx.Rngs(0))
    policy = modeling.new_implicit_prm(reference)
    beta = 0.5
    cfg = rt.RMTrainConfig(
        kind="implicit_prm", steps=8, batch_size=16, learning_rate=2e-4, beta=beta, log_every=1
    )
    policy, history = rt.train_reward_model(policy, train, cfg, reference=reference)
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # pi = pi_ref: r = 0
    # The CE loss on the whole training set went down from log 2.
    r = inference.implicit_prm_scores(policy, reference, train, beta, batch_size=16)["reward"]
    loss = optax.sigmoid_binary_cross_entropy(r, train.outcome)[train.outcome_mask].mean()
    assert loss < math.log(2) - 0.01

    out = inference.implicit_prm_scores(policy, reference, heldout, beta, batch_size=16)
    steps_NxS, logp, ref_logp = out["step_rewards"], out["logp"], out["ref_logp"]
    assert np.abs(steps_NxS).max() > 1e-3  # the pair has moved apart
    resp, ends = heldout.response_mask, heldout.step_end
    for n in range(len(heldout)):
        want, tail = per_step_by_hand(logp[n], ref_logp[n], ends[n], resp[n], beta)
        np.testing.assert_allclose(steps_NxS[n], want, atol=1e-5)
        # r(y) is the sum of the step rewards and the reward of the tokens after the last step.
        np.testing.assert_allclose(out["reward"][n], want.sum() + tail, atol=1e-5)
    shaped = jax.vmap(shaping.implicit_prm, in_axes=(0, 0, 0, 0, None))(
        logp, ref_logp, ends, resp, beta
    )
    # PPO's shaping is the same per step, plus the tail (the tokens after the last step end)
    # credited at the last response token, so that a response's rewards sum to r(y).
    tails = np.asarray(
        [
            per_step_by_hand(logp[n], ref_logp[n], ends[n], resp[n], beta)[1]
            for n in range(len(resp))
        ]
    )
    last = np.asarray(jax.vmap(shaping.last_token)(jnp.asarray(resp, bool)))
    np.testing.assert_allclose(shaped, steps_NxS + tails[:, None] * last, atol=1e-5)
    np.testing.assert_allclose(np.asarray(shaped).sum(1), out["reward"], atol=1e-5)
    # In the PPO trainer's layout (response tokens only, log-probs from the logits before each).
    p = heldout.prompt_len
    graphdef = nnx.graphdef(policy)
    forward = jax.jit(lambda state, t, m: nnx.merge(graphdef, state)(t, m))
    logits = forward(nnx.state(policy), heldout.tokens, heldout.attention_mask)
    ref_logits = forward(nnx.state(reference), heldout.tokens, heldout.attention_mask)
    resp_tokens = jnp.asarray(heldout.tokens[:, p:])
    ppo_logp = ppo.token_logp(logits[:, p - 1 : -1], resp_tokens)
    ppo_ref = ppo.token_logp(ref_logits[:, p - 1 : -1], resp_tokens)
    ppo_steps = jax.vmap(shaping.implicit_prm, in_axes=(0, 0, 0, 0, None))(
        ppo_logp, ppo_ref, ends[:, p:], resp[:, p:], beta
    )
    np.testing.assert_allclose(shaped[:, p:], ppo_steps, atol=1e-4)
    metrics = evaluation.evaluate_implicit_prm(policy, reference, heldout, beta, batch_size=16)
    assert set(metrics) >= {"outcome_accuracy", "outcome_auc", "step_accuracy", "step_auc"}


def test_orm_trains(tok, model_config):
    train = toy_arrays(tok, "train", 64, seed=2)
    orm = modeling.new_reward_model(model_config, head="two_class", seed=1)
    cfg = rt.RMTrainConfig(kind="orm", steps=10, batch_size=16, learning_rate=3e-3, log_every=1)
    orm, history = rt.train_reward_model(orm, train, cfg)
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # zero head: scores 0.5
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = evaluation.evaluate_orm(orm, train)
    assert metrics["n"] == len(train) and 0 <= metrics["accuracy"] <= 1


def test_mesh_training_matches_single_device(tok, model_config):
    train = toy_arrays(tok, "train", 32, seed=4)
    cfg = rt.RMTrainConfig(kind="prm", steps=2, batch_size=8, learning_rate=1e-3, log_every=1)
    _, single = rt.train_reward_model(modeling.new_reward_model(model_config, seed=2), train, cfg)
    mesh = make_mesh((2, 2, 1), devices=jax.devices()[:4])
    model = modeling.new_reward_model(model_config, seed=2, mesh=mesh, rules=RULES)
    _, sharded = rt.train_reward_model(model, train, cfg, mesh=mesh, rules=RULES)
    np.testing.assert_allclose([h["loss"] for h in sharded], [h["loss"] for h in single], rtol=1e-4)


@pytest.mark.parametrize(
    "bad,message",
    [
        (dict(kind="value"), "config.kind='value': must be one of"),
        (dict(steps=0), "config.train.steps=0"),
        (dict(learning_rate=0.0), "config.train.learning_rate=0.0"),
        (dict(schedule="wobbly"), "config.train.schedule='wobbly'"),
    ],
)
def test_train_config_errors_name_the_field(bad, message):
    with pytest.raises(ConfigError, match=message):
        rt.RMTrainConfig(**bad).validate()


def test_used_columns_by_hand():
    # P = 24 of S = 136: prompts in columns 14..23 (10 tokens) and 18..23, responses up to column
    # 80 (57 tokens): the prompt part rounds up to 16 columns, the response part to 64.
    mask = np.zeros((2, 136), bool)
    mask[0, 14:81] = True
    mask[1, 18:40] = True
    assert rt.used_columns(mask, 24) == (8, 88)
    mask[1, 4:24] = True  # a 20-token prompt: 32 columns, more than the 24 there are
    assert rt.used_columns(mask, 24) == (0, 88)
    mask[0, :] = True  # a response to the last column
    assert rt.used_columns(mask, 24) == (0, 136)
    assert rt.used_columns(np.zeros((2, 136), bool), 24) == (0, 136)


@pytest.mark.parametrize("kind", ["prm", "orm"])
def test_training_does_not_depend_on_the_arrays_padding(tok, model_config, kind):
    """The same rows encoded with 16 more prompt and 48 more response columns of padding train to
    the same losses and parameters, bit for bit: each batch is cut to the columns its rows use
    (prompts of at most 14 tokens in 16 columns, responses of at most 36 in 48, both times)."""
    examples = sources.toy_step_labelled("train", 48, seed=5, spec=SPEC)
    tight = rd.encode(examples, tok, max_prompt_len=16, max_response_len=48, sep="\n")
    loose = rd.encode(examples, tok, max_prompt_len=32, max_response_len=96, sep="\n")
    cfg = rt.RMTrainConfig(kind=kind, steps=3, batch_size=16, learning_rate=3e-3, log_every=1)
    head = "two_class" if kind == "orm" else "scalar"
    runs = [
        rt.train_reward_model(modeling.new_reward_model(model_config, head=head, seed=3), a, cfg)
        for a in (tight, loose)
    ]
    assert [h["loss"] for h in runs[0][1]] == [h["loss"] for h in runs[1][1]]
    jax.tree.map(np.testing.assert_array_equal, nnx.state(runs[0][0]), nnx.state(runs[1][0]))
