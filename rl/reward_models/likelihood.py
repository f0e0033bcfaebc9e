"""Fitting a ``models.likelihood_prm.LikelihoodPRM``: the weights (a, b, c) that combine a trained
PRM's probability with a frozen language model's least likely step so far
(``rewards.likelihood``, where the reason is), fitted to the same step labels the PRM was trained
on.

    prm_lm, metrics = with_likelihood(prm, sft_policy, train_rows, held_rows)

The fit is a three-feature logistic regression (the head's logit, the likelihood feature, a
bias) over every labelled step end of the training rows, solved by Newton's method with a small
L2 penalty: convex, deterministic, a few milliseconds. Gradient training would need its own
learning rate (at the PRM's 3e-4, Adam moves a scalar weight by about 0.04 in 125 steps, while the
feature's fitted weight is about 3) and would add nothing the closed form does not give.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np

from models.decoder import CausalLM
from models.heads import RewardModel
from models.likelihood_prm import LikelihoodPRM
from rewards.likelihood import head_logit, prefix_min_step_logp
from rl.reward_models.data import RewardArrays
from rl.reward_models.evaluation import binary_metrics
from rl.reward_models.inference import token_logps, token_scores


def fit_logistic(x_NxF: np.ndarray, y_N: np.ndarray, *, l2: float = 1e-3, iters: int = 100):
    """Weights [F + 1] (the last is the bias) minimising the mean logistic loss of ``y_N`` (in
    [0, 1]) given ``x_NxF``, plus ``l2`` / 2 |w|^2, by Newton's method."""
    x = np.asarray(x_NxF, np.float64)
    y = np.asarray(y_N, np.float64)
    if x.ndim != 2 or y.shape != (x.shape[0],) or x.shape[0] == 0:
        raise ValueError(
            f"fit_logistic: need x [N, F] and y [N] with N > 0, got {x.shape}, {y.shape}"
        )
    if not (np.isfinite(x).all() and np.isfinite(y).all()):
        raise ValueError("fit_logistic: non-finite features or labels")
    if ((y < 0) | (y > 1)).any():
        raise ValueError("fit_logistic: labels must lie in [0, 1]")
    x = np.concatenate([x, np.ones((x.shape[0], 1))], axis=1)
    n, f = x.shape
    w = np.zeros(f)
    for _ in range(iters):
        p = 1.0 / (1.0 + np.exp(-(x @ w)))
        grad = x.T @ (p - y) / n + l2 * w
        hess = (x * (p * (1 - p))[:, None]).T @ x / n + l2 * np.eye(f)
        step = np.linalg.solve(hess, grad)
        w = w - step
        if np.max(np.abs(step)) < 1e-10:
            break
    return w


def step_features(
    prm: RewardModel, lm: CausalLM, arrays: RewardArrays, *, batch_size: int = 32
) -> tuple[np.ndarray, np.ndarray]:
    """The head's logit and the likelihood feature at every token ([N, S] each; the feature is
    meaningful at step ends)."""
    scores = token_scores(prm, arrays, batch_size=batch_size)
    logp = token_logps(lm, arrays, batch_size=batch_size)
    feature = jax.vmap(prefix_min_step_logp)(logp, arrays.step_end, arrays.response_mask)
    return np.asarray(head_logit(scores)), np.asarray(feature)


def with_likelihood(
    prm: RewardModel,
    lm: CausalLM,
    train: RewardArrays,
    held: RewardArrays,
    *,
    batch_size: int = 32,
) -> tuple[LikelihoodPRM, dict[str, Any]]:
    """The ``LikelihoodPRM`` of ``prm`` and ``lm`` with weights fitted on ``train``'s labelled
    step ends, and its held-out step metrics beside the head's alone (``head_*``)."""
    logit, feature = step_features(prm, lm, train, batch_size=batch_size)
    m = train.label_mask
    if not m.any():
        raise ValueError("with_likelihood: no labelled step end in the training rows")
    w = fit_logistic(np.stack([logit[m], feature[m]], axis=1), train.step_labels[m])
    model = LikelihoodPRM(prm, lm, w.tolist())
    held_m = held.label_mask
    combined = token_scores(model, held, batch_size=batch_size)[held_m]
    head_alone = token_scores(prm, held, batch_size=batch_size)[held_m]
    labels = held.step_labels[held_m]
    metrics: dict[str, Any] = {"likelihood_weights": [float(v) for v in w]}
    metrics.update(binary_metrics(combined, labels))
    metrics.update({f"head_{k}": v for k, v in binary_metrics(head_alone, labels).items()})
    return model, metrics
