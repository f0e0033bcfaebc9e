"""Sources of step-labelled solutions: readers of the published formats (on the shipped samples),
this project's labels.jsonl round trip, and the synthetic toy labels."""

import json
import math

import pytest

from rl.data import toy
from rl.data.rows import DataError
from rl.reward_models import sources
from rl.reward_models.data import StepLabelled

FILES = "rl/data/files/process_labels/"


def test_math_shepherd_sample():
    examples = sources.read_math_shepherd(FILES + "samples_math-shepherd.jsonl")
    assert len(examples) == 7
    first = examples[0]
    assert first.question.startswith("Janet pays $40/hour")
    assert first.question.endswith("in a year?")
    assert len(first.steps) == 5 and first.steps[0].startswith("Step 1: Janet spends")
    assert first.steps[-1].endswith("The answer is: 13520")
    assert first.labels == [1.0, 1.0, 1.0, 1.0, 0.0]
    assert examples[4].labels == [1.0, 0.0, 0.0, 0.0, 0.0]
    assert [len(e.steps) for e in examples] == [5, 3, 2, 5, 5, 2, 3]
    assert all(SHEPHERD not in s for e in examples for s in e.steps for SHEPHERD in ("ки",))
    assert first.outcome is None and first.outcome_label == 0.0


def test_prm800k_sample():
    examples = sources.read_prm800k(FILES + "samples_prm800k.jsonl")
    assert len(examples) == 6
    first = examples[0]
    assert first.answer == "29" and first.question.startswith("Three pencils")
    # Step 2 had no chosen completion (all rated -1): the human-written step continues, label 1.
    assert first.steps[1] == "We have $3p+e=1.24$ and $5p+e=1.82$."
    assert first.labels == [1.0] * 6
    # A phase-2 record that found an error: the pre-generated step rated -1 ends it with label 0.
    found_error = examples[1]
    assert found_error.labels == [1.0, 1.0, 1.0, 1.0, 1.0, 1.0, 0.0]
    assert found_error.steps[-1].startswith("For the Democrats, there are 5! ways")
    assert [len(e.steps) for e in examples] == [6, 7, 5, 7, 8, 12]
    # Rating 0 ("neutral") maps to `neutral`: the second record's step 2 was rated 0.
    strict = sources.read_prm800k(FILES + "samples_prm800k.jsonl", neutral=0.0)
    assert strict[1].labels[1] == 0.0


def test_math_aps_sample():
    examples = sources.read_math_aps(FILES + "samples_math-aps.jsonl")
    assert len(examples) == (90 - 1) + (13 - 1) + (42 - 1)  # every prefix but the bare question
    first = examples[0]
    assert first.answer == "64" and first.labels[-1] == 1.0
    assert all(math.isnan(x) for e in examples for x in e.labels[:-1])
    with open(FILES + "samples_math-aps.jsonl") as f:
        row = json.loads(f.readline())
    values = [s["mc_value"] for s in row["reasoning_steps"][1:]]
    assert [e.labels[-1] for e in examples[:89]] == values


@pytest.mark.parametrize(
    "fmt,row,message",
    [
        ("math_shepherd", {"input": "Q? Step 1: a ки", "label": "Q? Step 1: a ?"}, "at step tag 0"),
        ("math_shepherd", {"input": "Q? Step 1: a ки"}, "field 'label' is missing"),
        ("math_shepherd", {"input": "Q? no steps", "label": "Q? no steps"}, "no step tag"),
        (
            "prm800k",
            {
                "question": {"problem": "Q"},
                "label": {
                    "steps": [{"completions": [{"text": "a", "rating": 7}], "chosen_completion": 0}]
                },
            },
            "label.steps[0].completions[0].rating",
        ),
        (
            "prm800k",
            {
                "question": {"problem": "Q"},
                "label": {
                    "steps": [{"completions": [{"text": "a", "rating": 1}], "chosen_completion": 3}]
                },
            },
            "label.steps[0].chosen_completion",
        ),
        ("prm800k", {"label": {"steps": []}}, "field 'question' is missing"),
        (
            "math_aps",
            {"question": "Q", "reasoning_steps": [{"solution_prefix": "X", "mc_value": 1}]},
            "reasoning_steps[0].solution_prefix",
        ),
        (
            "math_aps",
            {"question": "Q", "reasoning_steps": [{"solution_prefix": "Q a"}]},
            "reasoning_steps[0].mc_value",
        ),
    ],
)
def test_malformed_rows_name_file_line_and_field(tmp_path, fmt, row, message):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n" + json.dumps(row) + "\n")
    with pytest.raises(DataError) as err:
        sources.read_process_labels(fmt, path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_not_json_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: not JSON"):
        sources.read_math_shepherd(path)


def test_labels_jsonl_round_trip(tmp_path):
    examples = [
        StepLabelled("q", ["a", "b"], [1.0, math.nan], answer="2", outcome=0.0, id="x:1"),
        StepLabelled("Ünï 数", ["∑ c"], [0.25]),
    ]
    sources.save_jsonl(tmp_path / "labels.jsonl", examples)
    rows = [json.loads(x) for x in (tmp_path / "labels.jsonl").read_text().splitlines()]
    assert rows[0]["labels"] == [1.0, None] and rows[1]["outcome"] is None
    back = sources.load_jsonl(tmp_path / "labels.jsonl")
    assert back[1] == examples[1]
    assert (
        back[0].steps == ["a", "b"] and back[0].labels[0] == 1.0 and math.isnan(back[0].labels[1])
    )
    assert (back[0].answer, back[0].outcome, back[0].id) == ("2", 0.0, "x:1")


def test_toy_step_labels_are_the_arithmetic_check():
    examples = sources.toy_step_labelled("train", 50, seed=3, error_prob=0.5)
    assert examples == sources.toy_step_labelled("train", 50, seed=3, error_prob=0.5)
    wrong = 0
    for ex in examples:
        problem = toy.parse_question(ex.question)
        assert toy.boxed_value(ex.steps[-1]) is not None and math.isnan(ex.labels[-1])
        for line, label in zip(ex.steps[:-1], ex.labels[:-1], strict=True):
            assert label == float(toy.step_is_correct(line))
            wrong += label == 0.0
        assert ex.outcome == float(toy.boxed_value(ex.steps[-1]) == problem.answer)
        assert ex.answer == str(problem.answer)
    assert 0.3 < wrong / sum(len(e.steps) - 1 for e in examples) < 0.7
