"""GSM8K (Cobbe et al. 2021), train 7,473 and test 1,319 grade-school word problems.

The source's ``answer`` is a worked solution with ``<<calc>>`` annotations ending in ``####
<final>``. Stored: ``solution`` = that text verbatim (annotations and the ``####`` line included, so
nothing of the source is lost), ``answer`` = the final answer normalized for the verifier:
whitespace stripped and thousands separators removed ("1,234" -> "1234"). A final answer that is
then not a plain number, or a comma that is not a thousands separator ("1,23"), makes the row
malformed rather than guessed at.
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from typing import Any

import tensorflow_datasets as tfds

from rl.data import rows
from rl.data.source_builder import SourceFileBuilder

_FINAL_MARK = "####"
_THOUSANDS = re.compile(r"-?\d{1,3}(,\d{3})+(\.\d+)?")
_NUMBER = re.compile(r"-?\d+(\.\d+)?")


def normalize_final_answer(text: str) -> str:
    """``" 1,234 "`` -> ``"1234"``; raises ``ValueError`` for anything that is not a plain
    number."""
    answer = text.strip()
    if _THOUSANDS.fullmatch(answer):
        answer = answer.replace(",", "")
    if not _NUMBER.fullmatch(answer):
        raise ValueError(
            f"final answer {text.strip()!r} is not a number (thousands commas allowed)"
        )
    return answer


def final_answer(solution: str) -> str:
    """The normalized number after the last ``####`` of a GSM8K solution."""
    if _FINAL_MARK not in solution:
        raise ValueError(f"no {_FINAL_MARK!r} final-answer line")
    return normalize_final_answer(solution.rsplit(_FINAL_MARK, 1)[1])


class Gsm8k(SourceFileBuilder):
    """GSM8K grade-school math word problems (openai/grade-school-math), read from
    rl/data/files/gsm8k."""

    name = "rlreward_gsm8k"
    VERSION = tfds.core.Version("1.0.0")
    SOURCES = {"train": "gsm8k/train.jsonl", "test": "gsm8k/test.jsonl"}
    HOMEPAGE = "https://github.com/openai/grade-school-math"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> dict[str, Any]:
        question = rows.text_field(row, "question")
        solution = rows.text_field(row, "answer")
        try:
            answer = final_answer(solution)
        except ValueError as e:
            raise rows.RowError("answer", str(e)) from None
        return {
            "id": f"gsm8k/{split}/{index}",
            "question": question.strip(),
            "solution": solution,
            "answer": answer,
        }
