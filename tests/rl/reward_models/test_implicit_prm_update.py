"""PRIME's online implicit-PRM step on a one-layer model: the loss against a hand computation
(numpy log-softmax of the model's logits) and against the offline reward-model loss, the direction
of one step (a correct response's implicit reward rises, an incorrect one's falls), microbatches
equal to one batch, and a non-finite step skipped."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.decoder import CausalLM
from rl.reward_models import implicit_prm_update as prm_update
from rl.reward_models.losses import make_loss_fn
from rl.reward_models.training import RMState

P, R, BETA = 4, 5, 0.5


@pytest.fixture(scope="module")
def models(model_config):
    """(graphdef, state) of pi and of pi_ref, other weights: implicit rewards are not 0. (Built
    and run jitted: eager op-by-op dispatch costs more than compiling the one-layer model.)"""
    graphdef = nnx.split(nnx.eval_shape(lambda: CausalLM(model_config, rngs=nnx.Rngs(0))))[0]
    init = jax.jit(lambda key: nnx.split(CausalLM(model_config, rngs=nnx.Rngs(key)))[1])
    return (graphdef, init(jax.random.key(0))), (graphdef, init(jax.random.key(1)))


@functools.partial(jax.jit, static_argnums=0)
def _logits(graphdef, params, tokens, mask):
    return nnx.merge(graphdef, params)(tokens, mask)


def _batch(tok, outcome):
    """Two rows: a full one, and one with a left-padded prompt and a 3-token response."""
    rng = np.random.default_rng(0)
    tokens = rng.integers(3, len(tok), size=(2, P + R)).astype(np.int32)
    mask = np.ones((2, P + R), bool)
    mask[1, 0] = False
    mask[1, P + 3 :] = False
    tokens[~mask] = tok.pad_token_id
    return {
        "tokens": jnp.asarray(tokens),
        "attention_mask": jnp.asarray(mask),
        "response_mask": jnp.asarray(mask[:, P:]),
        "outcome": jnp.asarray(outcome, jnp.float32),
    }


def _logp_by_hand(graphdef, params, batch, temperature):
    """log-softmax of the logits at positions P-1 .. S-2, at each next token (numpy)."""
    logits = _logits(graphdef, params, batch["tokens"], batch["attention_mask"])
    logits = np.asarray(logits, np.float64)
    logits = logits[:, P - 1 : -1] / temperature
    logz = np.log(np.exp(logits - logits.max(-1, keepdims=True)).sum(-1)) + logits.max(-1)
    nxt = np.asarray(batch["tokens"])[:, P:]
    return np.take_along_axis(logits, nxt[..., None], -1)[..., 0] - logz


def _reward_by_hand(graphdef, params, ref_logp, batch, temperature=1.0):
    logp = _logp_by_hand(graphdef, params, batch, temperature)
    return BETA * np.where(batch["response_mask"], logp - ref_logp, 0.0).sum(-1)


def _setup(models, tok, outcome, temperature=1.0):
    (gd, params), (ref_gd, ref_params) = models
    batch = _batch(tok, outcome)
    ref_logp = _logp_by_hand(ref_gd, ref_params, batch, temperature)
    batch["ref_logp"] = jnp.asarray(ref_logp, jnp.float32)
    state = RMState(step=jnp.zeros((), jnp.int32), params=params, opt_state=TX.init(params))
    return batch, ref_logp, state


TX = prm_update.make_optimizer(1e-4, grad_clip=10.0)


@pytest.fixture(scope="module")
def update(models):
    """The step compiled once for the tests' 2-row batches (temperature 1, one microbatch)."""
    return jax.jit(prm_update.make_update_fn(models[0][0], TX, P, BETA))


def _bce_by_hand(r, labels):
    sig = 1 / (1 + np.exp(-r))
    return -np.mean(np.where(np.asarray(labels) == 1, np.log(sig), np.log(1 - sig)))


def test_loss_is_the_hand_computed_cross_entropy_and_the_offline_loss(models, tok, update):
    (gd, params), (ref_gd, ref_params) = models
    # The loss terms at the rollout's temperature (logits / 2), against numpy.
    batch, ref_logp, state = _setup(models, tok, [1.0, 0.0], temperature=2.0)
    terms = jax.jit(lambda p, b: prm_update.loss_terms(gd, p, b, P, BETA, temperature=2.0))
    loss, correct = terms(params, batch)
    r = _reward_by_hand(gd, params, ref_logp, batch, temperature=2.0)
    np.testing.assert_allclose(float(loss.mean), _bce_by_hand(r, [1, 0]), rtol=1e-5)
    assert float(correct.mean) == np.mean([r[0] > 0, r[1] <= 0])

    # The step's loss at temperature 1: by hand, and the offline trainer's implicit-PRM loss
    # (rl.reward_models.losses, on sequence-aligned arrays) on the same rows.
    batch, ref_logp, state = _setup(models, tok, [1.0, 0.0])
    new, metrics = update(state, batch)
    r = _reward_by_hand(gd, params, ref_logp, batch)
    np.testing.assert_allclose(float(metrics["loss"]), _bce_by_hand(r, [1, 0]), rtol=1e-5)
    assert float(metrics["skipped"]) == 0.0 and int(new.step) == 1
    graphdef, p_only, rest = nnx.split(nnx.merge(gd, params), nnx.Param, ...)
    pad = np.zeros((2, P))
    offline = {
        "tokens": batch["tokens"],
        "attention_mask": batch["attention_mask"],
        "response_mask": jnp.asarray(np.concatenate([pad, batch["response_mask"]], 1), bool),
        "ref_logp": jnp.asarray(np.concatenate([pad, ref_logp], 1), jnp.float32),
        "outcome": batch["outcome"],
        "outcome_mask": jnp.ones((2,), bool),
    }
    offline_loss, _ = jax.jit(make_loss_fn("implicit_prm", graphdef, rest, BETA))(p_only, offline)
    np.testing.assert_allclose(float(metrics["loss"]), float(offline_loss), rtol=1e-5)


@pytest.mark.parametrize("label", [1.0, 0.0])
def test_one_step_moves_the_implicit_reward_towards_the_label(models, tok, update, label):
    """One response (twice: the step's batch shape), labelled correct: its implicit reward rises
    after one step; labelled incorrect: it falls. (Adam's first step is along the sign of the
    gradient, so to first order the reward changes by lr x the L1 norm of its gradient, with the
    label's sign.)"""
    gd = models[0][0]
    batch, ref_logp, state = _setup(models, tok, [label, label])
    batch = {k: jnp.concatenate([v[:1], v[:1]]) for k, v in batch.items()}
    ref_logp = np.concatenate([ref_logp[:1], ref_logp[:1]])
    before = _reward_by_hand(gd, state.params, ref_logp, batch)
    new, metrics = update(state, batch)
    after = _reward_by_hand(gd, new.params, ref_logp, batch)
    assert before[0] == before[1] and after[0] == after[1]
    assert (after[0] > before[0]) if label == 1.0 else (after[0] < before[0]), (before, after)
    assert float(metrics["grad_norm"]) > 0


def test_microbatches_give_the_one_batch_step_and_nonfinite_steps_are_skipped(models, tok, update):
    gd = models[0][0]
    batch, _, state = _setup(models, tok, [1.0, 0.0])
    whole, m1 = update(state, batch)
    split, m2 = jax.jit(prm_update.make_update_fn(gd, TX, P, BETA, microbatches=2))(state, batch)
    np.testing.assert_allclose(float(m1["loss"]), float(m2["loss"]), rtol=1e-6)
    for a, b in zip(jax.tree.leaves(whole.params), jax.tree.leaves(split.params), strict=True):
        np.testing.assert_allclose(np.asarray(a), np.asarray(b), rtol=1e-5, atol=1e-7)

    bad, m3 = update(state, dict(batch, outcome=jnp.array([np.nan, 0.0], jnp.float32)))
    assert float(m3["skipped"]) == 1.0 and int(bad.step) == 0
    for a, b in zip(jax.tree.leaves(bad.params), jax.tree.leaves(state.params), strict=True):
        np.testing.assert_array_equal(np.asarray(a), np.asarray(b))
