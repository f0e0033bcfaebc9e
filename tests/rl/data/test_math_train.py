"""MATH train: the builder mirrors all 7,500 items; RL loading leaves out the 2 without an
answer."""

import logging

from rl import data


def test_builder_keeps_all_7500_items_and_load_can_too(data_dir):
    examples = data.load("math", "train", data_dir=data_dir, require_answer=False)
    assert len(examples) == 7500
    assert examples[0].id == "math/train/0" and examples[0].answer == "\\frac{1}{4}"
    assert examples[0].solution == ""
    assert [ex.id for ex in examples if not ex.answer] == ["math/train/2300", "math/train/2544"]


def test_load_leaves_out_unanswerable_items_and_names_them(data_dir, caplog):
    with caplog.at_level(logging.WARNING, logger="rl.data.load"):
        examples = data.load("math", "train", data_dir=data_dir)
    assert len(examples) == 7498
    assert all(ex.answer for ex in examples)
    assert "leaving out 2 of 7500" in caplog.text
    assert "math/train/2300" in caplog.text and "math/train/2544" in caplog.text


def test_answers_are_stripped(data_dir):
    examples = data.load("math", "train", data_dir=data_dir)
    assert all(ex.answer == ex.answer.strip() for ex in examples)
    assert examples[335].answer == "\\frac{7}{15}"  # " \\frac{7}{15}" in the file.
