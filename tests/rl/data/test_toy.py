"""The toy task: deterministic, disjoint splits, correct solutions, natural redundant steps."""

import pytest

from rl.data import toy

TRAIN = toy.generate("train", 3000, seed=0)
TEST = toy.generate("test", 300, seed=0)


def test_the_example_format():
    problem = toy.ToyProblem(7, (5, -3, 8))
    assert problem.question == "Q: 7+5-3+8"
    assert problem.values == (7, 12, 9, 17) and problem.answer == 17
    assert problem.solution() == "7+5=12\n12-3=9\n9+8=17\n\\boxed{17}"
    assert problem.solution([False, True, False]) == "7+5=12\n12-3=9\n12-3=9\n9+8=17\n\\boxed{17}"
    assert toy.parse_question("Q: 7+5-3+8") == problem


def test_same_seed_same_rows_other_seed_other_rows():
    assert toy.generate("train", 3000, seed=0) == TRAIN
    other = toy.generate("train", 3000, seed=1)
    assert [r.problem for r in other] != [r.problem for r in TRAIN]


def test_a_larger_size_extends_a_smaller_one():
    assert toy.generate("test", 50, seed=0) == TEST[:50]


def test_splits_are_disjoint_across_seeds_and_rows_are_distinct():
    train_questions = {r.problem.question for r in TRAIN} | {
        r.problem.question for r in toy.generate("train", 3000, seed=1)
    }
    test_questions = {r.problem.question for r in TEST} | {
        r.problem.question for r in toy.generate("test", 300, seed=1)
    }
    assert not train_questions & test_questions
    assert len({r.problem.question for r in TRAIN}) == len(TRAIN)
    assert all(toy.is_test_problem(r.problem) for r in TEST)
    assert not any(toy.is_test_problem(r.problem) for r in TRAIN)


def test_every_solution_is_correct_step_by_step_and_boxes_the_chain_value():
    spec = toy.ToySpec()
    for row in TRAIN + TEST:
        problem, lines = row.problem, row.solution.split(toy.STEP_SEPARATOR)
        assert spec.min_ops <= len(problem.deltas) <= spec.max_ops
        assert all(0 <= v <= spec.max_value for v in problem.values)
        assert all(1 <= abs(d) <= spec.max_operand for d in problem.deltas)
        assert toy.parse_question(problem.question) == problem
        steps = [line for i, line in enumerate(lines[:-1]) if i == 0 or line != lines[i - 1]]
        assert steps == [problem.step_line(k) for k in range(len(problem.deltas))]
        assert all(toy.step_is_correct(line) for line in lines[:-1])
        assert toy.boxed_value(lines[-1]) == problem.answer


@pytest.mark.parametrize("prob", [0.0, 0.15, 0.4])
def test_redundant_steps_appear_at_the_configured_rate(prob):
    rows = toy.generate("train", 2000, seed=0, spec=toy.ToySpec(redundant_step_prob=prob))
    steps = repeats = 0
    for row in rows:
        lines = row.solution.split("\n")[:-1]
        repeats += sum(lines[i] == lines[i - 1] for i in range(1, len(lines)))
        steps += len(row.problem.deltas)
    # ~9,000 steps: the binomial standard error of the rate is below 0.006.
    assert abs(repeats / steps - prob) < 0.02


@pytest.mark.parametrize(
    "line, correct",
    [
        ("7+5=12", True),
        ("12-3=9", True),
        ("0+9=9", True),
        ("3-5=-2", True),
        ("7+5=13", False),
        ("12-3=8", False),
        ("07+5=12", False),
        ("7+5=012", False),
        ("7 + 5 = 12", False),
        ("7+5-3=9", False),
        ("\\boxed{12}", False),
        ("", False),
        ("12", False),
        ("7+5=12\n", False),
    ],
)
def test_step_is_correct(line, correct):
    assert toy.step_is_correct(line) is correct


def test_parse_step_and_boxed_value():
    assert toy.parse_step("12-3=8") == toy.Step(left=12, delta=-3, result=8)
    assert not toy.parse_step("12-3=8").is_correct
    assert toy.parse_step("\\boxed{9}") is None
    assert toy.boxed_value("\\boxed{9}") == 9 and toy.boxed_value("9") is None


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(min_ops=0), "ToySpec.min_ops=0"),
        (dict(min_ops=5, max_ops=4), "ToySpec.max_ops=4: must be >= min_ops=5"),
        (dict(redundant_step_prob=1.0), "ToySpec.redundant_step_prob=1.0"),
    ],
)
def test_spec_errors_name_the_field(kwargs, match):
    with pytest.raises(ValueError, match=match):
        toy.ToySpec(**kwargs)


def test_asking_for_more_problems_than_exist_is_an_error():
    tiny = toy.ToySpec(min_ops=1, max_ops=1, max_operand=1, max_value=2)
    with pytest.raises(ValueError, match="found only"):
        toy.generate("train", 50, spec=tiny)
    with pytest.raises(ValueError, match="split='dev'"):
        toy.generate("dev", 5)
    with pytest.raises(ValueError, match="not a toy question"):
        toy.parse_question("What is 7+5?")
