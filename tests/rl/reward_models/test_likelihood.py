"""Fitting a LikelihoodPRM's weights: the logistic regression recovers the weights that generated
its labels and stops at the penalised optimum; bad inputs are named; ``with_likelihood`` fits on
the training rows' labelled step ends and scores held-out rows with the fitted model."""

import jax
import numpy as np
import pytest
from flax import nnx

from models.decoder import CausalLM
from models.likelihood_prm import LikelihoodPRM
from rl.reward_models import inference, modeling
from rl.reward_models.evaluation import binary_metrics
from rl.reward_models.likelihood import fit_logistic, step_features, with_likelihood
from tests.rl.reward_models.toy_rm import toy_arrays


def test_the_fit_recovers_generating_weights_and_is_stationary():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(40_000, 2))
    true = np.array([1.5, -2.0, 0.5])
    p = 1 / (1 + np.exp(-(x @ true[:2] + true[2])))
    y = (rng.random(p.shape) < p).astype(float)
    w = fit_logistic(x, y, l2=0.0)
    np.testing.assert_allclose(w, true, atol=0.06)
    # Soft labels and an L2 penalty: the gradient of the penalised mean loss vanishes there.
    w = fit_logistic(x, p, l2=0.1)
    xb = np.c_[x, np.ones(len(x))]
    q = 1 / (1 + np.exp(-(xb @ w)))
    np.testing.assert_allclose(xb.T @ (q - p) / len(x) + 0.1 * w, 0.0, atol=1e-9)


def test_bad_inputs_are_named():
    with pytest.raises(ValueError, match="N > 0"):
        fit_logistic(np.zeros((0, 2)), np.zeros(0))
    with pytest.raises(ValueError, match="non-finite"):
        fit_logistic(np.array([[np.nan]]), np.array([1.0]))
    with pytest.raises(ValueError, match=r"\[0, 1\]"):
        fit_logistic(np.array([[0.0]]), np.array([2.0]))


def test_with_likelihood_fits_on_training_step_ends(tok, model_config):
    train, held = toy_arrays(tok, "train", 24, seed=1), toy_arrays(tok, "test", 8, seed=2)
    prm = modeling.new_reward_model(model_config, seed=1)
    out = prm.score.out
    out.kernel[...] = 0.3 * jax.random.normal(jax.random.key(0), out.kernel.shape)
    lm = CausalLM(model_config, rngs=nnx.Rngs(3))
    model, metrics = with_likelihood(prm, lm, train, held, batch_size=8)
    assert isinstance(model, LikelihoodPRM)
    logit, feature = step_features(prm, lm, train, batch_size=8)
    m = train.label_mask
    want = fit_logistic(np.stack([logit[m], feature[m]], 1), train.step_labels[m])
    np.testing.assert_allclose(metrics["likelihood_weights"], want, rtol=1e-5)
    np.testing.assert_allclose(np.asarray(model.weights[...]), want, rtol=1e-5)
    # The metrics are the fitted model's held-out step scores against the labels.
    scores = inference.token_scores(model, held, batch_size=8)[held.label_mask]
    expected = binary_metrics(scores, held.step_labels[held.label_mask])
    assert metrics["auc"] == pytest.approx(expected["auc"]) and metrics["n"] == expected["n"]
    assert set(metrics) >= {"head_auc", "head_accuracy", "accuracy"}
