"""The premise figures by hand: maj@N, pass@N, best-of-N by ORM and PRM, the paired margin and its
standard error, and the check decided on the PRM's min aggregation."""

import math

import numpy as np
import pytest

from rl.eval.premise import CHECK_AGGREGATION, premise_summary

# Problem 0: samples wrong/right/wrong, answers 1, 2, 1 -> the majority (1) is wrong; the ORM
#   (0.1, 0.9, 0.2) and every PRM aggregation pick sample 1 (min 0.2 0.7 0.5; last 0.2 0.7 0.5;
#   product 0.18 0.56 0.5), which is right.
# Problem 1: right/right/wrong, answers 3, 3, 4 -> the majority is right; ORM (0.5, 0.4, 0.6) and
#   the PRM (0.6 | 0.9 | 0.95) pick sample 2, which is wrong.
# Problem 2: nothing right, no answers -> no majority (wrong); the PRM scores only sample 1 (the
#   others have no complete step and rank last).
CORRECT = [[0, 1, 0], [1, 1, 0], [0, 0, 0]]
ANSWERS = [["1", "2", "1"], ["3", "3", "4"], [None, None, None]]
ORM = [[0.1, 0.9, 0.2], [0.5, 0.4, 0.6], [0.3, 0.2, 0.1]]
PRM = [[[0.9, 0.2], [0.8, 0.7], [0.5]], [[0.6], [0.9], [0.95]], [[], [0.1], []]]


def test_every_figure_by_hand():
    out = premise_summary(np.array(CORRECT, bool), ANSWERS, np.array([1, 0, 0], bool), ORM, PRM)
    assert (out["problems"], out["samples"]) == (3, 3)
    assert out["greedy_accuracy"] == pytest.approx(1 / 3)
    assert out["mean_sample_accuracy"] == pytest.approx(3 / 9)
    assert out["answered_fraction"] == pytest.approx(6 / 9)
    assert out["pass@n"] == pytest.approx(2 / 3)
    assert out["maj@n"] == pytest.approx(1 / 3)
    # picks right on problem 0 only: d = (1, -1, 0), mean 0, std (ddof 1) 1, se 1 / sqrt(3)
    for name in ("orm", "prm_min", "prm_last", "prm_product"):
        figures = out["best_of_n"][name]
        assert figures["accuracy"] == pytest.approx(1 / 3), name
        assert figures["margin"] == pytest.approx(0.0), name
        assert figures["margin_se"] == pytest.approx(1 / math.sqrt(3)), name
    assert CHECK_AGGREGATION == "min"
    assert out["check"]["holds"] is False and out["check"]["margin"] == pytest.approx(0.0)


def test_the_check_holds_when_the_prm_beats_the_vote_beyond_its_standard_error():
    """Four problems where the majority is always wrong and the PRM's min pick always right:
    d = 1 everywhere, margin 1, standard error 0."""
    correct = np.array([[1, 0, 0]] * 4, bool)
    answers = [["5", "6", "6"]] * 4
    prm = [[[0.9], [0.2, 0.3], [0.1]]] * 4
    out = premise_summary(correct, answers, np.zeros(4, bool), None, prm)
    assert "orm" not in out["best_of_n"]
    assert out["maj@n"] == 0.0 and out["best_of_n"]["prm_min"]["accuracy"] == 1.0
    assert out["check"] == {
        "statement": out["check"]["statement"],
        "margin": 1.0,
        "margin_se": 0.0,
        "holds": True,
    }
    # the product aggregation ranks sample 1 (0.06) below sample 2 (0.1): both wrong, both picks
    # are sample 0 (0.9) anyway
    assert out["best_of_n"]["prm_product"]["accuracy"] == 1.0


def test_without_a_prm_there_is_no_check():
    out = premise_summary(np.array(CORRECT, bool), ANSWERS, np.zeros(3, bool), ORM, None)
    assert "check" not in out and set(out["best_of_n"]) == {"orm"}


def test_best_of_n_picks_among_answered_samples_and_reports_the_pick_among_all():
    """Sample 0 has no answer (a truncated response) and the PRM's highest min (0.9); among the
    answered samples min ranks sample 1 (0.6) over 2 (0.4) and 3 (0.3); the majority ("3") is
    wrong. Two identical problems: d = (1, 1), margin 1, standard error 0."""
    correct = np.array([[0, 1, 0, 0]] * 2, bool)
    answers = [[None, "2", "3", "3"]] * 2
    prm = [[[0.9], [0.8, 0.6], [0.5, 0.4], [0.3]]] * 2
    orm = [[0.99, 0.1, 0.2, 0.3]] * 2  # among answered: sample 3 (wrong)
    out = premise_summary(correct, answers, np.zeros(2, bool), orm, prm)
    assert out["answered_fraction"] == pytest.approx(3 / 4)
    assert out["maj@n"] == 0.0
    assert out["best_of_n"]["prm_min"]["accuracy"] == 1.0
    assert out["best_of_n"]["prm_min"]["any_response_accuracy"] == 0.0
    assert out["best_of_n"]["orm"]["accuracy"] == 0.0
    assert out["check"]["holds"] is True and out["check"]["margin"] == 1.0
