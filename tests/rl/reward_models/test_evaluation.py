"""Accuracy and ROC AUC of reward-model probabilities, against hand-counted pairs."""

import itertools
import math

import numpy as np

from rl.reward_models.evaluation import binary_metrics


def auc_by_pairs(scores, positive):
    """P(score of a positive > score of a negative) + half the ties, over all pairs."""
    pos = [s for s, p in zip(scores, positive, strict=True) if p]
    neg = [s for s, p in zip(scores, positive, strict=True) if not p]
    wins = sum((a > b) + 0.5 * (a == b) for a, b in itertools.product(pos, neg))
    return wins / (len(pos) * len(neg))


def test_binary_metrics_by_hand():
    scores = np.array([0.9, 0.4, 0.4, 0.7, 0.2, 0.4, 0.55])
    labels = np.array([1.0, 0.0, 1.0, 0.75, 0.0, 0.25, 0.5])  # soft labels: positive iff >= 0.5
    positive = labels >= 0.5
    m = binary_metrics(scores, labels)
    assert m["n"] == 7 and m["positive_rate"] == positive.mean()
    assert m["accuracy"] == np.mean((scores >= 0.5) == positive)
    assert math.isclose(m["auc"], auc_by_pairs(scores, positive))
    assert binary_metrics(scores, labels, threshold=0.3)["accuracy"] == np.mean(
        (scores >= 0.3) == positive
    )


def test_binary_metrics_degenerate_inputs():
    one_class = binary_metrics(np.array([0.2, 0.8]), np.array([1.0, 1.0]))
    assert one_class["accuracy"] == 0.5 and math.isnan(one_class["auc"])
    empty = binary_metrics(np.array([]), np.array([]))
    assert empty["n"] == 0 and all(math.isnan(empty[k]) for k in ("accuracy", "auc"))
