"""What an evaluation reports, computed from verdicts, answers and scores on the host (pure numpy):
pass@1, maj@k, best-of-N, PRM step-score aggregation and the reward-hacking diagnostics.

  * **pass@1** is the mean accuracy over every sample of every prompt.
  * **maj@k** votes over a prompt's extracted answers (``rewards.verify.extract_answer``),
    normalized as the verifier normalizes them (``answer_key``); responses without an answer do
    not vote; ties go to the answer that appeared first. It is right when a response carrying the
    winning answer is.
  * **best-of-N** picks the response the reward model scores highest among those that state an
    answer, the candidates maj@k votes over (a response without one cannot be right, and a reward
    model may well prefer it: a PRM's min over steps has no low answer line to count, an ORM reads a
    truncated response's last token); NaN scores rank below every number, and responses without an
    answer below those, so a prompt with no answered response still gets a (wrong) pick. Ties go
    to the first. Without an ``answered`` mask every response is a candidate.
  * **PRM aggregation**: one score from a response's step scores, for ranking, by ``min`` (weakest
    step), ``last`` (final step) or ``product`` (all steps right, for probabilities). A response
    without steps has no PRM score (NaN: never picked over one that has).
  * **hacking diagnostics** of a set of response records: response length, steps per response,
    repeated-step fraction, and, with a reward model, its mean score and point-biserial
    correlation with correctness; for a PRM also the raw PRM return (sum of step scores, what a
    raw-PRM reward pays) for correct vs incorrect responses. A PRM that is hacked pays more return
    without more correctness.

Letters: E examples, N samples per prompt, K steps of a response.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np

from rewards import _normalize

PRM_AGGREGATIONS = ("min", "last", "product")


def pass_at_1(correct_ExN: np.ndarray) -> float:
    """Mean accuracy over every sample of every prompt (the unbiased pass@1 estimate)."""
    correct_ExN = np.asarray(correct_ExN, np.float64)
    return float(correct_ExN.mean()) if correct_ExN.size else float("nan")


def answer_key(answer: str | None) -> str | None:
    """The form answers vote under: the verifier's normalization; numbers as exact fractions, so
    "0.50", "1/2" and "\\frac{1}{2}" are one answer."""
    if answer is None:
        return None
    normalized = _normalize.drop_assignment(_normalize.normalize(answer))
    number = _normalize.as_number(normalized)
    return f"#{number[0]}" if number is not None else _normalize.key(normalized)


def majority_vote(answers_N: Sequence[str | None]) -> int | None:
    """Index of the first response carrying the most frequent answer; None when none has one.

    Ties between answers go to the one that appeared first. Answers compare by ``answer_key``.
    """
    keys = [answer_key(a) for a in answers_N]
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
            first.setdefault(k, i)
    if not counts:
        return None
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def maj_at_k(answers_ExN: Sequence[Sequence[str | None]], correct_ExN: np.ndarray) -> float:
    """Fraction of prompts whose majority answer is correct (no answer at all counts as wrong)."""
    correct_ExN = np.asarray(correct_ExN, bool)
    hits = []
    for answers, correct in zip(answers_ExN, correct_ExN, strict=True):
        winner = majority_vote(answers)
        hits.append(winner is not None and bool(correct[winner]))
    return float(np.mean(hits)) if hits else float("nan")


def aggregate_prm(step_scores_K: Sequence[float], how: str) -> float:
    """One score from a response's K step scores: min | last | product; NaN when K = 0."""
    if how not in PRM_AGGREGATIONS:
        raise ValueError(f"prm_aggregation={how!r}: must be one of {PRM_AGGREGATIONS}")
    s = np.asarray(step_scores_K, np.float64)
    if s.size == 0:
        return float("nan")
    if how == "min":
        return float(s.min())
    if how == "last":
        return float(s[-1])
    return float(np.prod(s))


def best_of_index(scores_N: Sequence[float], answered_N: Sequence[bool] | None = None) -> int:
    """The highest-scored response, answered ones first (``answered_N``; default: all are); NaN
    scores rank below every number; ties go to the first."""
    s = np.asarray(scores_N, np.float64)
    answered = np.ones(s.shape, bool) if answered_N is None else np.asarray(answered_N, bool)
    if answered.shape != s.shape:
        raise ValueError(f"answered_N has shape {answered.shape}, scores_N {s.shape}")
    # Rank keys, compared lexicographically: (answered, has a score, score).
    rank = np.where(np.isnan(s), -np.inf, s)
    tier = answered.astype(np.int64) * 2 + (~np.isnan(s)).astype(np.int64)
    best_tier = tier.max()
    return int(np.argmax(np.where(tier == best_tier, rank, -np.inf)))


def answered(answers: Sequence[str | None]) -> np.ndarray:
    """Which responses state an answer (``extract_answer`` found one): best-of-N's candidates."""
    return np.asarray([a is not None for a in answers], bool)


def best_of_n(
    scores_ExN: np.ndarray, correct_ExN: np.ndarray, answered_ExN: np.ndarray | None = None
) -> float:
    """Accuracy of the reward model's pick among each prompt's N responses (answered ones first)."""
    correct_ExN = np.asarray(correct_ExN, bool)
    scores_ExN = np.asarray(scores_ExN, np.float64)
    if answered_ExN is None:
        answered_ExN = np.ones(correct_ExN.shape, bool)
    picks = [
        bool(c[best_of_index(s, a)])
        for s, c, a in zip(scores_ExN, correct_ExN, np.asarray(answered_ExN, bool), strict=True)
    ]
    return float(np.mean(picks)) if picks else float("nan")


def correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation over the finite pairs (point-biserial when y is 0/1); NaN when either
    side is constant or fewer than two pairs remain."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _mean(values: Sequence[float]) -> float:
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def diagnostics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy and the hacking diagnostics of a set of response records (see module docstring)."""
    correct = [float(r["correct"]) for r in records]
    out = {
        "accuracy": _mean(correct),
        "response_length": _mean([r["response_length"] for r in records]),
        "steps_per_response": _mean([r["steps"] for r in records]),
        "repeated_step_fraction": _mean([r["repeated_step_fraction"] for r in records]),
        "finished_by_eos": _mean([float(r["finish_reason"] == "EOS") for r in records]),
        "no_answer_fraction": _mean([float(r["answer"] is None) for r in records]),
    }
    if records and "rm_score" in records[0]:
        scores = [np.nan if r["rm_score"] is None else r["rm_score"] for r in records]
        out["rm_score"] = _mean(scores)
        out["rm_score_correlation"] = correlation(scores, correct)
    if records and records[0].get("prm_return") is not None:
        returns = [r["prm_return"] for r in records]
        out["prm_return"] = _mean(returns)
        out["prm_return_correct"] = _mean([x for x, c in zip(returns, correct, strict=True) if c])
        out["prm_return_incorrect"] = _mean(
            [x for x, c in zip(returns, correct, strict=True) if not c]
        )
        out["prm_return_correlation"] = correlation(returns, correct)
    return out
