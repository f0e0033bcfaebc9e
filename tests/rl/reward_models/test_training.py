"""Reward-model training: a PRM learns synthetic step labels, the implicit PRM's step rewards are
the shaping function's, the losses are the hand-computed ones, saved models reload with identical
scores, the mesh run matches the single-device one, and the CLI runs end to end."""

import json
import math
import os
import pathlib
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx

from configs import rm_smoke
from configs.sharding import RULES
from models import hf_io, presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardHead
from models.sharding import make_mesh
from rewards import shaping
from rl import train_rm
from rl.data import toy
from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models import data as rd
from rl.reward_models import training as rt

ROOT = pathlib.Path(__file__).resolve().parents[3]
# Single-digit toy chains without re-statements: short sequences, so a tiny PRM learns the
# arithmetic check in a few hundred CPU steps.
SPEC = toy.ToySpec(min_ops=3, max_ops=4, max_value=9, max_operand=3, redundant_step_prob=0.0)
P, R = 14, 36


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


def _config(tok, **values):
    return ModelConfig.from_dict(
        presets.tiny(
            vocab_size=len(tok),
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=None,
            **values,
        ).to_dict()
    )


@pytest.fixture(scope="module")
def model_config(tok):
    """One layer: enough for the toy's arithmetic check, and quick to compile."""
    return _config(tok, num_layers=1)


def _arrays(tok, split, size, seed=0):
    return rd.encode(
        rd.toy_step_labelled(split, size, seed=seed, spec=SPEC),
        tok,
        max_prompt_len=P,
        max_response_len=R,
        sep="\n",
    )


@pytest.fixture(scope="module")
def data(tok):
    return _arrays(tok, "train", 1500), _arrays(tok, "test", 150)


@pytest.fixture(scope="module")
def trained_prm(data, model_config):
    train, _ = data
    prm = rt.new_reward_model(model_config, seed=0)
    cfg = rt.RMTrainConfig(kind="prm", steps=240, batch_size=64, learning_rate=2e-3, log_every=40)
    return rt.train_reward_model(prm, train, cfg)


def test_prm_learns_synthetic_step_labels(data, trained_prm):
    _, heldout = data
    prm, history = trained_prm
    metrics = rt.evaluate_prm(prm, heldout)
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


@pytest.mark.parametrize("head", ["scalar", "two_class"])
def test_trained_logit_is_what_the_model_squashes(model_config, head):
    model = rt.new_reward_model(model_config, head=head, seed=3)
    out = model.score.out
    out.kernel[...] = jax.random.normal(jax.random.key(0), out.kernel.shape)
    ids = jax.random.randint(jax.random.key(1), (2, 9), 2, model_config.vocab_size)
    mask = jnp.ones((2, 9), bool)
    graphdef = nnx.graphdef(model)

    @jax.jit
    def both(state):
        m = nnx.merge(graphdef, state)
        return m(ids, mask), jax.nn.sigmoid(rt.head_logits(m, ids, mask))

    scores, squashed_logits = both(nnx.state(model))
    np.testing.assert_allclose(scores, squashed_logits, atol=1e-6)
    assert model.head.sigmoid == (head == "scalar")


def test_reward_model_starts_from_a_copy_of_the_policy_backbone(model_config):
    policy = CausalLM(model_config, rngs=nnx.Rngs(5))
    prm = rt.new_reward_model(policy=policy, head="scalar")
    ours, theirs = nnx.state(prm.backbone), nnx.state(policy.backbone)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b  # own buffers: the train step donates them
    assert not np.any(prm.score.out.kernel[...]) and prm.head.sigmoid


def test_losses_are_hand_computed():
    logits = jnp.array([[0.0, 2.0, -1.0, 0.5]])
    labels = jnp.array([[0.0, 1.0, 0.25, 0.0]])
    mask = jnp.array([[False, True, True, False]])
    loss, acc = rt.bce(logits, labels, mask)
    want = -(
        math.log(jax.nn.sigmoid(2.0))
        + 0.25 * math.log(jax.nn.sigmoid(-1.0))
        + 0.75 * math.log(1 - jax.nn.sigmoid(-1.0))
    )
    np.testing.assert_allclose(loss.total, want, rtol=1e-6)
    assert loss.count == 2 and acc.total == 2  # 2 > 0 with label 1; -1 < 0 with label 0.25
    attn = jnp.array([[0, 1, 1, 1, 0], [1, 1, 1, 1, 1]], bool)
    scores = jnp.arange(10.0).reshape(2, 5)
    np.testing.assert_array_equal(rt.orm_logit(scores, attn), [3.0, 9.0])
    logp = jnp.array([[-1.0, -2.0, -3.0]])
    ref = jnp.array([[-1.5, -1.0, -3.0]])
    resp = jnp.array([[False, True, True]])
    np.testing.assert_allclose(rt.implicit_reward(logp, ref, resp, 0.5), [0.5 * (-1.0 + 0.0)])


def _per_step_by_hand(logp, ref_logp, step_end, response, beta):
    """beta x the summed log-ratio of each step's tokens, written as a plain loop."""
    out = np.zeros_like(logp)
    total = 0.0
    for t in range(len(logp)):
        if response[t]:
            total += logp[t] - ref_logp[t]
        if step_end[t]:
            out[t] = beta * total
            total = 0.0
    return out, beta * total  # and what follows the last step (the EOS)


def test_implicit_prm_trains_and_its_step_rewards_are_the_shaping_functions(tok, model_config):
    train = _arrays(tok, "train", 64, seed=1)
    heldout = _arrays(tok, "test", 8, seed=1)
    reference = CausalLM(model_config, rngs=nnx.Rngs(0))
    policy = rt.new_implicit_prm(reference)
    beta = 0.5
    cfg = rt.RMTrainConfig(
        kind="implicit_prm", steps=8, batch_size=16, learning_rate=2e-4, beta=beta, log_every=1
    )
    policy, history = rt.train_reward_model(policy, train, cfg, reference=reference)
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # pi = pi_ref: r = 0
    # The CE loss on the whole training set went down from log 2.
    r = rt.implicit_prm_scores(policy, reference, train, beta, batch_size=16)["reward"]
    loss = optax.sigmoid_binary_cross_entropy(r, train.outcome)[train.outcome_mask].mean()
    assert loss < math.log(2) - 0.01

    out = rt.implicit_prm_scores(policy, reference, heldout, beta, batch_size=16)
    steps_NxS, logp, ref_logp = out["step_rewards"], out["logp"], out["ref_logp"]
    assert np.abs(steps_NxS).max() > 1e-3  # the pair has moved apart
    resp, ends = heldout.response_mask, heldout.step_end
    for n in range(len(heldout)):
        want, tail = _per_step_by_hand(logp[n], ref_logp[n], ends[n], resp[n], beta)
        np.testing.assert_allclose(steps_NxS[n], want, atol=1e-5)
        # r(y) is the sum of the step rewards and the reward of the tokens after the last step.
        np.testing.assert_allclose(out["reward"][n], want.sum() + tail, atol=1e-5)
    shaped = jax.vmap(shaping.implicit_prm, in_axes=(0, 0, 0, 0, None))(
        logp, ref_logp, ends, resp, beta
    )
    np.testing.assert_allclose(steps_NxS, shaped, atol=1e-5)
    # In the PPO trainer's layout (response tokens only, log-probs from the logits before each).
    p = heldout.prompt_len
    graphdef = nnx.graphdef(policy)
    forward = jax.jit(lambda state, t, m: nnx.merge(graphdef, state)(t, m))
    logits = forward(nnx.state(policy), heldout.tokens, heldout.attention_mask)
    ref_logits = forward(nnx.state(reference), heldout.tokens, heldout.attention_mask)
    resp_tokens = jnp.asarray(heldout.tokens[:, p:])
    ppo_logp = rt.ppo.token_logp(logits[:, p - 1 : -1], resp_tokens)
    ppo_ref = rt.ppo.token_logp(ref_logits[:, p - 1 : -1], resp_tokens)
    ppo_steps = jax.vmap(shaping.implicit_prm, in_axes=(0, 0, 0, 0, None))(
        ppo_logp, ppo_ref, ends[:, p:], resp[:, p:], beta
    )
    np.testing.assert_allclose(steps_NxS[:, p:], ppo_steps, atol=1e-4)
    metrics = rt.evaluate_implicit_prm(policy, reference, heldout, beta, batch_size=16)
    assert set(metrics) >= {"outcome_accuracy", "outcome_auc", "step_accuracy", "step_auc"}


def test_orm_trains(tok, model_config):
    train = _arrays(tok, "train", 64, seed=2)
    orm = rt.new_reward_model(model_config, head="two_class", seed=1)
    cfg = rt.RMTrainConfig(kind="orm", steps=10, batch_size=16, learning_rate=3e-3, log_every=1)
    orm, history = rt.train_reward_model(orm, train, cfg)
    assert history[0]["loss"] == pytest.approx(math.log(2), abs=1e-5)  # zero head: scores 0.5
    assert history[-1]["loss"] < history[0]["loss"]
    metrics = rt.evaluate_orm(orm, train)
    assert metrics["n"] == len(train) and 0 <= metrics["accuracy"] <= 1


def test_saved_reward_models_reload_with_identical_scores(
    tmp_path, tok, data, trained_prm, model_config
):
    _, heldout = data
    prm, _ = trained_prm
    rt.save_reward_model(prm, tmp_path / "prm", kind="prm", tokenizer=tok, step_separator="\n")
    loaded, info = rt.load_reward_model(tmp_path / "prm")
    assert info == {"kind": "prm", "head": "scalar", "sigmoid": True, "step_separator": "\n"}
    want = rt.token_scores(prm, heldout)
    assert want.min() >= 0 and want.max() <= 1
    np.testing.assert_allclose(rt.token_scores(loaded, heldout), want, atol=1e-6)
    # The plain loader gives the same scores when told the head is sigmoid-squashed.
    plain = hf_io.load_causal_lm(tmp_path / "prm", head=RewardHead("scalar", sigmoid=True))
    np.testing.assert_allclose(rt.token_scores(plain, heldout), want, atol=1e-6)
    text = "Q: 7+5\n7+5=12\n\\boxed{12}"
    reloaded = rt.load_tokenizer(tmp_path / "prm")
    assert reloaded(text)["input_ids"] == tok(text)["input_ids"]
    assert (reloaded.eos_token_id, reloaded.pad_token_id) == (tok.eos_token_id, tok.pad_token_id)

    reference = CausalLM(model_config, rngs=nnx.Rngs(4))
    policy = rt.new_implicit_prm(reference)
    policy.backbone.norm.scale[...] = policy.backbone.norm.scale[...] * 1.1
    rt.save_reward_model(policy, tmp_path / "implicit", kind="implicit_prm", beta=0.05)
    loaded, info = rt.load_reward_model(tmp_path / "implicit")
    assert isinstance(loaded, CausalLM) and info == {"kind": "implicit_prm", "beta": 0.05}
    np.testing.assert_allclose(
        rt.token_logps(loaded, heldout), rt.token_logps(policy, heldout), atol=1e-5
    )


def test_mesh_training_matches_single_device(tok, model_config):
    train = _arrays(tok, "train", 32, seed=4)
    cfg = rt.RMTrainConfig(kind="prm", steps=2, batch_size=8, learning_rate=1e-3, log_every=1)
    _, single = rt.train_reward_model(rt.new_reward_model(model_config, seed=2), train, cfg)
    mesh = make_mesh((2, 2, 1), devices=jax.devices()[:4])
    model = rt.new_reward_model(model_config, seed=2, mesh=mesh, rules=RULES)
    _, sharded = rt.train_reward_model(model, train, cfg, mesh=mesh, rules=RULES)
    np.testing.assert_allclose([h["loss"] for h in sharded], [h["loss"] for h in single], rtol=1e-4)


def test_config_errors_name_the_key():
    cfg = rm_smoke.get_config()
    cfg.data.source = "nope"
    with pytest.raises(train_rm.ConfigError, match=r"config.data.source='nope'"):
        train_rm.RMRunConfig.from_config_dict(cfg)
    cfg = rm_smoke.get_config("implicit_prm")
    cfg.policy.preset = ""
    with pytest.raises(train_rm.ConfigError, match=r"config.policy.path"):
        train_rm.RMRunConfig.from_config_dict(cfg)
    cfg = rm_smoke.get_config("value")
    with pytest.raises(train_rm.ConfigError, match=r"config.kind='value'"):
        train_rm.RMRunConfig.from_config_dict(cfg)


def test_auto_labelled_implicit_prm_run(tmp_path):
    """source=auto end to end, in process: sample from the (random) policy, label, train, save."""
    c = rm_smoke.get_config("implicit_prm")
    c.data.source = "auto"
    c.data.num_problems = 4
    c.mesh.shape = (1, 1, 1)
    result = train_rm.run(train_rm.RMRunConfig.from_config_dict(c), tmp_path)
    labelled = rd.load_jsonl(tmp_path / "labels.jsonl")
    assert len(labelled) <= 8 and result["num_examples"] == len(labelled)
    assert all(len(e.steps) == len(e.labels) and e.outcome in (0.0, 1.0) for e in labelled)
    model, info = rt.load_reward_model(tmp_path / "model")
    assert isinstance(model, CausalLM) and info["kind"] == "implicit_prm" and info["beta"] == 0.05


def test_cli_smoke(tmp_path):
    env = dict(
        os.environ, JAX_PLATFORMS="cpu", XLA_FLAGS="--xla_force_host_platform_device_count=1"
    )
    proc = subprocess.run(
        [
            sys.executable,
            "-m",
            "rl.train_rm",
            "--config=configs/rm_smoke.py",
            f"--workdir={tmp_path}",
            "--config.train.steps=4",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert proc.returncode == 0, proc.stderr[-3000:]
    records = [json.loads(x) for x in (tmp_path / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in records] == [2, 4]
    result = json.loads((tmp_path / "eval.json").read_text())
    assert result["eval"]["heldout"]["n"] > 0
    _, info = rt.load_reward_model(tmp_path / "model")
    assert info["kind"] == "prm" and info["sigmoid"] and info["data_source"] == "synthetic"
    assert len(rd.load_jsonl(tmp_path / "labels.jsonl")) == rm_smoke.get_config().data.num_problems
