"""GSM8K: the real files' row counts, a known row, and final-answer normalization."""

import pytest

from rl import data
from rl.data.gsm8k import final_answer, normalize_final_answer


@pytest.mark.parametrize("split, rows", [("train", 7473), ("test", 1319)])
def test_real_files_give_every_row(data_dir, split, rows):
    examples = data.load("gsm8k", split, data_dir=data_dir)
    assert len(examples) == rows
    assert len({ex.id for ex in examples}) == rows
    assert all(ex.question and ex.answer and ex.solution for ex in examples)


def test_first_test_row_is_janets_ducks_with_answer_18(data_dir):
    ex = data.load("gsm8k", "test", data_dir=data_dir)[0]
    assert ex.id == "gsm8k/test/0"
    assert ex.question.startswith("Janet\u2019s ducks lay 16 eggs per day.")
    assert ex.answer == "18"
    # The worked solution is stored verbatim, calculator annotations and final line included.
    assert ex.solution.startswith("Janet sells 16 - 3 - 4 = <<16-3-4=9>>9 duck eggs a day.")
    assert ex.solution.endswith("#### 18")


def test_thousands_commas_are_removed_in_the_stored_answers(data_dir):
    answers = [ex.answer for ex in data.load("gsm8k", "train", data_dir=data_dir)]
    assert "1080" in answers  # Written "#### 1,080" in the file.
    assert not any("," in a for a in answers)


@pytest.mark.parametrize(
    "text, want",
    [
        (" 18", "18"),
        ("1,234", "1234"),
        (" -2,500,000 ", "-2500000"),
        ("3.5", "3.5"),
        ("0", "0"),
    ],
)
def test_normalize_final_answer(text, want):
    assert normalize_final_answer(text) == want


@pytest.mark.parametrize("text", ["1,23", "12,3456", "$18", "eighteen", "", "1 000"])
def test_non_numbers_and_odd_commas_are_refused(text):
    with pytest.raises(ValueError, match="not a number"):
        normalize_final_answer(text)


def test_final_answer_uses_the_last_marker_and_requires_one():
    assert final_answer("a #### b\n#### 7") == "7"
    with pytest.raises(ValueError, match="no '####'"):
        final_answer("The answer is 7.")
