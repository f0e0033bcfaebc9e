"""Held-out quality of trained reward models: accuracy and ROC AUC of their probabilities against
the labels, at labelled step ends (PRM), at the last response token (ORM), or both for the implicit
PRM (sigma(r(y)) for the outcome, sigma(q) at step ends)."""

from __future__ import annotations

import jax.numpy as jnp
import numpy as np

from models.decoder import CausalLM
from models.heads import RewardModel, last_token_mask
from rl.reward_models.data import RewardArrays
from rl.reward_models.inference import implicit_prm_scores, token_scores


def binary_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy of ``scores >= threshold`` against ``labels >= 0.5`` and ROC AUC (ties count half;
    NaN when only one class is present)."""
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(labels, np.float64).ravel() >= 0.5
    n = scores.size
    if n == 0:
        nan = float("nan")
        return {"n": 0, "accuracy": nan, "auc": nan, "positive_rate": nan}
    accuracy = float(np.mean((scores >= threshold) == positive))
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos and n_neg:
        order = np.argsort(scores, kind="mergesort")
        ranks = np.empty(n)
        sorted_scores = scores[order]
        i = 0
        while i < n:  # average ranks over ties
            j = i
            while j + 1 < n and sorted_scores[j + 1] == sorted_scores[i]:
                j += 1
            ranks[order[i : j + 1]] = (i + j) / 2 + 1
            i = j + 1
        auc = float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        auc = float("nan")
    return {"n": n, "accuracy": accuracy, "auc": auc, "positive_rate": n_pos / n}


def evaluate_prm(
    model: RewardModel, arrays: RewardArrays, *, batch_size: int = 32
) -> dict[str, float]:
    """Step-level accuracy/AUC of the PRM's probability at every labelled step end."""
    scores = token_scores(model, arrays, batch_size=batch_size)
    m = arrays.label_mask
    return binary_metrics(scores[m], arrays.step_labels[m])


def evaluate_orm(
    model: RewardModel, arrays: RewardArrays, *, batch_size: int = 32
) -> dict[str, float]:
    """Outcome accuracy/AUC of the ORM's probability at the last response token."""
    scores = token_scores(model, arrays, batch_size=batch_size)
    last = np.asarray(last_token_mask(jnp.asarray(arrays.attention_mask)))
    m = arrays.outcome_mask
    return binary_metrics((scores * last).sum(-1)[m], arrays.outcome[m])


def evaluate_implicit_prm(
    policy: CausalLM,
    reference: CausalLM,
    arrays: RewardArrays,
    beta: float,
    *,
    batch_size: int = 32,
) -> dict[str, float]:
    """Outcome metrics of sigma(r(y)); step metrics of sigma(q) at labelled step ends."""
    out = implicit_prm_scores(policy, reference, arrays, beta, batch_size=batch_size)
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    outcome = binary_metrics(
        sigmoid(out["reward"][arrays.outcome_mask]), arrays.outcome[arrays.outcome_mask]
    )
    m = arrays.label_mask
    step = binary_metrics(sigmoid(out["q"][m]), arrays.step_labels[m])
    return {
        **{f"outcome_{k}": v for k, v in outcome.items()},
        **{f"step_{k}": v for k, v in step.items()},
    }
