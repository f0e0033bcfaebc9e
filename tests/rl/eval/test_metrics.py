"""The metric aggregations on hand-computed inputs: pass@1, majority vote and maj@k, PRM
aggregation, best-of-N, correlation and the hacking diagnostics."""

import math

import numpy as np
import pytest

from rl.eval import metrics

NAN = float("nan")


def test_pass_at_1_is_the_mean_over_all_samples():
    assert metrics.pass_at_1(np.array([[1, 0], [1, 1]])) == 0.75
    assert metrics.pass_at_1(np.array([[0, 0, 0]])) == 0.0


def test_majority_vote_normalizes_answers_and_breaks_ties_by_first_appearance():
    # "1/2" and "0.5" are one answer (2 votes) tying with "3" (2 votes): the first to appear wins.
    assert metrics.majority_vote(["1/2", "3", "0.5", "3"]) == 0
    assert metrics.majority_vote(["3", "1/2", "0.5", "3"]) == 0
    # "x = 7" and "7" are one answer; responses without an answer do not vote.
    assert metrics.majority_vote([None, "5", "x = 7", "7"]) == 2
    assert metrics.majority_vote([None, "\\frac{1}{2}", "2", "0.50"]) == 1
    assert metrics.majority_vote([None, None]) is None


def test_maj_at_k_by_hand():
    answers = [
        ["5", "5", "3"],  # majority 5, correct
        ["2", None, "4"],  # 2 and 4 tie: 2 came first, wrong
        [None, None, None],
    ]  # nobody answered: wrong
    correct = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    assert metrics.maj_at_k(answers, correct) == pytest.approx(1 / 3)


def test_prm_aggregation_by_hand():
    steps = [0.9, 0.2, 0.8]
    assert metrics.aggregate_prm(steps, "min") == pytest.approx(0.2)
    assert metrics.aggregate_prm(steps, "last") == pytest.approx(0.8)
    assert metrics.aggregate_prm(steps, "product") == pytest.approx(0.9 * 0.2 * 0.8)
    assert math.isnan(metrics.aggregate_prm([], "min"))
    with pytest.raises(ValueError, match="prm_aggregation='mean'"):
        metrics.aggregate_prm(steps, "mean")


def test_best_of_n_picks_the_highest_score_nan_last_ties_first():
    assert metrics.best_of_index([0.1, NAN, 0.7, 0.7]) == 2
    assert metrics.best_of_index([NAN, -5.0]) == 1
    scores = np.array(
        [
            [0.1, 0.9, 0.5],  # picks sample 1: correct
            [0.8, 0.8, 0.1],  # tie, picks sample 0: wrong
            [NAN, 0.2, 0.3],
        ]
    )  # picks sample 2: wrong
    correct = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0]], bool)
    assert metrics.best_of_n(scores, correct) == pytest.approx(1 / 3)
    # PRM: aggregate each response's steps, then pick. min prefers [0.6, 0.6], last [0.9, 0.95].
    responses = [[0.6, 0.6], [0.1, 0.95], [0.9, 0.4, 0.9]]
    pick = lambda how: metrics.best_of_index([metrics.aggregate_prm(s, how) for s in responses])  # noqa
    assert (pick("min"), pick("last"), pick("product")) == (0, 1, 0)


def test_best_of_n_picks_among_the_responses_that_state_an_answer():
    """Answered responses rank above unanswered ones whatever their scores; within each, NaN
    ranks below every number."""
    assert metrics.best_of_index([0.9, 0.2, NAN, 0.5], [False, True, True, True]) == 3
    assert metrics.best_of_index([NAN, 0.9], [True, False]) == 0
    assert metrics.best_of_index([0.1, 0.9], [False, False]) == 1  # none answered: still a pick
    assert metrics.best_of_index([0.9, 0.2, NAN, 0.5]) == 0  # no mask: every response
    with pytest.raises(ValueError, match="answered_N has shape"):
        metrics.best_of_index([0.1, 0.2], [True])
    assert metrics.answered(["3", None, ""]).tolist() == [True, False, True]
    # Row 0: the top score (0.9) has no answer -> sample 1 (right); row 1: sample 0 (wrong).
    scores = np.array([[0.9, 0.5, 0.1], [0.7, NAN, 0.2]])
    correct = np.array([[0, 1, 0], [0, 0, 1]], bool)
    stated = np.array([[0, 1, 1], [1, 1, 1]], bool)
    assert metrics.best_of_n(scores, correct, stated) == pytest.approx(1 / 2)
    assert metrics.best_of_n(scores, correct) == 0.0


def test_correlation_is_point_biserial_and_nan_when_constant():
    # x = [1, 2, 3], y = [0, 0, 1]: cov 1, var x 2, var y 2/3 -> r = 1 / sqrt(4/3).
    assert metrics.correlation([1, 2, 3], [0, 0, 1]) == pytest.approx(3**0.5 / 2)
    assert math.isnan(metrics.correlation([1, 2, 3], [1, 1, 1]))
    assert math.isnan(metrics.correlation([1.0], [1.0]))
    assert metrics.correlation([1, NAN, 3, 2], [0, 1, 1, 0]) == pytest.approx(
        metrics.correlation([1, 3, 2], [0, 1, 0])
    )


def _record(correct, prm_return, steps=2, rep=0.0, length=10, answer="1", rm=0.5):
    return {
        "correct": correct,
        "prm_return": prm_return,
        "steps": steps,
        "rm_score": rm,
        "repeated_step_fraction": rep,
        "response_length": length,
        "answer": answer,
        "finish_reason": "EOS" if length < 10 else "LENGTH",
    }


def test_diagnostics_by_hand():
    records = [
        _record(True, 1.5, steps=3, rep=1 / 3, length=6),
        _record(False, 3.0, steps=5, rep=0.4, answer=None, rm=None),
        _record(False, 2.0, steps=1, rep=0.0),
    ]
    d = metrics.diagnostics(records)
    assert d["accuracy"] == pytest.approx(1 / 3)
    assert d["steps_per_response"] == pytest.approx(3.0)
    assert d["repeated_step_fraction"] == pytest.approx((1 / 3 + 0.4) / 3)
    assert d["response_length"] == pytest.approx(26 / 3)
    assert d["finished_by_eos"] == pytest.approx(1 / 3)
    assert d["no_answer_fraction"] == pytest.approx(1 / 3)
    assert d["rm_score"] == pytest.approx(0.5)  # the unscored response is left out
    assert d["prm_return"] == pytest.approx(6.5 / 3)
    assert d["prm_return_correct"] == pytest.approx(1.5)
    assert d["prm_return_incorrect"] == pytest.approx(2.5)
    assert d["prm_return_correlation"] == pytest.approx(metrics.correlation([1.5, 3, 2], [1, 0, 0]))
    assert d["prm_return_correlation"] < 0  # this PRM pays more to wrong answers: hackable
