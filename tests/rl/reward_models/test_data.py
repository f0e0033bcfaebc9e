"""Readers of the published step-label formats (on the shipped samples), the synthetic toy labels,
and the encoding of labelled solutions into the PPO sequence layout."""

import json
import math

import numpy as np
import pytest

from rl.data import toy
from rl.data.rows import DataError
from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models import data as rd

FILES = "rl/data/files/process_labels/"


def test_math_shepherd_sample():
    examples = rd.read_math_shepherd(FILES + "samples_math-shepherd.jsonl")
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
    examples = rd.read_prm800k(FILES + "samples_prm800k.jsonl")
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
    strict = rd.read_prm800k(FILES + "samples_prm800k.jsonl", neutral=0.0)
    assert strict[1].labels[1] == 0.0


def test_math_aps_sample():
    examples = rd.read_math_aps(FILES + "samples_math-aps.jsonl")
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
        rd.read_process_labels(fmt, path)
    assert f"{path}:2" in str(err.value) and message in str(err.value)


def test_not_json_is_named(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("{oops\n")
    with pytest.raises(DataError, match=r"bad.jsonl:1: not JSON"):
        rd.read_math_shepherd(path)


def test_step_labelled_validation():
    with pytest.raises(ValueError, match="2 steps but 1 labels"):
        rd.StepLabelled("q", ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="not in"):
        rd.StepLabelled("q", ["a"], [1.5])
    with pytest.raises(ValueError, match="step 0 is empty"):
        rd.StepLabelled("q", [" "], [1.0])
    hard = rd.hard_labels([rd.StepLabelled("q", ["a", "b", "c"], [0.0, 0.25, math.nan])])[0]
    assert hard.labels[:2] == [0.0, 1.0] and math.isnan(hard.labels[2])


def test_toy_step_labels_are_the_arithmetic_check():
    examples = rd.toy_step_labelled("train", 50, seed=3, error_prob=0.5)
    assert examples == rd.toy_step_labelled("train", 50, seed=3, error_prob=0.5)
    wrong = 0
    for ex in examples:
        problem = toy.parse_question(ex.question)
        assert toy.boxed_value(ex.steps[-1]) is not None and math.isnan(ex.labels[-1])
        for line, label in zip(ex.steps[:-1], ex.labels[:-1]):
            assert label == float(toy.step_is_correct(line))
            wrong += label == 0.0
        assert ex.outcome == float(toy.boxed_value(ex.steps[-1]) == problem.answer)
        assert ex.answer == str(problem.answer)
    assert 0.3 < wrong / sum(len(e.steps) - 1 for e in examples) < 0.7


def test_encode_layout_and_step_ends():
    tok = toy_tokenizer()
    ex = rd.StepLabelled(
        "Q: 7+5-3", ["7+5=12", "12-3=9", "\\boxed{9}"], [1.0, 0.25, math.nan], outcome=1.0
    )
    long = rd.StepLabelled("Q: 7+5-3", ["7+5=12"] * 20, [1.0] * 20)
    arrays = rd.encode([ex, long], tok, max_prompt_len=12, max_response_len=32, sep="\n")
    assert len(arrays) == 1 and arrays.index.tolist() == [0]  # the long one is left out
    p = arrays.prompt_len
    row = arrays.tokens[0]
    prompt = tok("Q: 7+5-3\n", add_special_tokens=False)["input_ids"]
    assert row[: p - len(prompt)].tolist() == [tok.pad_token_id] * (p - len(prompt))
    assert row[p - len(prompt) : p].tolist() == prompt
    text = "7+5=12\n12-3=9\n\\boxed{9}"
    n = len(text) + 1  # + EOS
    assert tok.decode(row[p : p + n - 1]) == text and row[p + n - 1] == tok.eos_token_id
    assert arrays.response_mask[0].sum() == n and arrays.response_mask[0, p : p + n].all()
    assert arrays.attention_mask[0].sum() == n + len(prompt)
    ends = np.flatnonzero(arrays.step_end[0]) - p
    assert ends.tolist() == [text.index("\n") - 1, text.rindex("\n") - 1, len(text) - 1]
    assert np.flatnonzero(arrays.label_mask[0]).tolist() == (ends[:2] + p).tolist()
    assert arrays.step_labels[0][arrays.label_mask[0]].tolist() == [1.0, 0.25]
    assert arrays.outcome.tolist() == [1.0] and arrays.outcome_mask.tolist() == [True]
    train, held = rd.split_heldout(arrays, 0.0)
    assert len(train) == 1 and len(held) == 0
