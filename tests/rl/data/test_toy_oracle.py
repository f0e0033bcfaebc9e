"""Ground truth for partial toy solutions: on-track prefixes and exact success probabilities."""

import random

import pytest

from rl.data import toy, toy_oracle

PROBLEM = toy.ToyProblem(7, (5, -3, 8))  # 7 -> 12 -> 9 -> 17


@pytest.mark.parametrize(
    "lines, on_track",
    [
        ([], True),
        (["7+5=12"], True),
        (["7+5=12", "7+5=12", "12-3=9"], True),  # a re-statement keeps it on track
        (["7+5=12", "12-3=9", "9+8=17", "\\boxed{17}"], True),
        (["7+5=13"], False),  # wrong arithmetic
        (["7+5=13", "13-3=10"], False),
        (["7+5=12", "12+3=15"], False),  # not the problem's next operation
        (["7+5=12", "hello"], False),
        (["7+5=12", "12-3=9", "9+8=17", "\\boxed{16}"], False),
        (["\\boxed{17}", "7+5=12"], False),  # nothing may follow the box
    ],
)
def test_on_track(lines, on_track):
    assert toy_oracle.on_track(PROBLEM, lines) is on_track


def test_every_prefix_of_a_generated_solution_is_on_track():
    for row in toy.generate("test", 50, seed=3):
        lines = row.solution.split(toy.STEP_SEPARATOR)
        assert all(toy_oracle.on_track(row.problem, lines[:k]) for k in range(len(lines) + 1))


def test_success_probability_by_hand():
    p = 0.2
    assert toy_oracle.success_probability(PROBLEM, [], p) == pytest.approx(0.8**3)
    assert toy_oracle.success_probability(PROBLEM, ["7+5=12"], p) == pytest.approx(0.8**2)
    # One below the true value: exactly one of the two remaining steps must slip.
    assert toy_oracle.success_probability(PROBLEM, ["7+5=11"], p) == pytest.approx(2 * 0.2 * 0.8)
    assert toy_oracle.success_probability(PROBLEM, ["7+5=13"], p) == 0.0  # slips never subtract
    assert toy_oracle.success_probability(PROBLEM, ["7+5=9"], p) == 0.0  # 3 short, 2 steps left
    assert (
        toy_oracle.success_probability(PROBLEM, ["7+5=12", "12-3=9", "9+8=17", "\\boxed{17}"], p)
        == 1.0
    )
    assert toy_oracle.success_probability(PROBLEM, ["\\boxed{16}"], p) == 0.0
    assert toy_oracle.success_probability(PROBLEM, ["7+5=12"], 0.0) == 1.0


@pytest.mark.parametrize("prefix", [[], ["7+5=12"], ["7+5=11"], ["7+5=10"], ["7+5=11", "11-3=8"]])
def test_monte_carlo_over_the_solver_matches_the_exact_probability(prefix):
    rng, p, n = random.Random(0), 0.3, 4000
    hits = 0
    for _ in range(n):
        lines = prefix + toy_oracle.complete(PROBLEM, prefix, p, rng)
        hits += toy.boxed_value(lines[-1]) == PROBLEM.answer
    exact = toy_oracle.success_probability(PROBLEM, prefix, p)
    assert abs(hits / n - exact) < 4 * (exact * (1 - exact) / n) ** 0.5 + 1e-9


def test_the_solver_is_undefined_on_a_derailed_prefix():
    with pytest.raises(
        ValueError, match="line 1 '12\\+3=15' of the prefix does not follow the chain"
    ):
        toy_oracle.success_probability(PROBLEM, ["7+5=12", "12+3=15"], 0.1)
    with pytest.raises(ValueError, match="slip_prob=1.5"):
        toy_oracle.complete(PROBLEM, [], 1.5, random.Random(0))
