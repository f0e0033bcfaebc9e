"""The MATH training split (Hendrycks et al. 2021): 7,500 problems with final answers, no solutions.

Source: openreasoner/openr's ``extracted_problems_and_answers.json``, a JSON list of
``{"problem", "final_answer"}``. All 7,500 items are stored, faithfully, including the two whose
``final_answer`` is empty (items 2300 and 2544, multiple-choice problems whose answer extraction
failed): the builder mirrors the file. They cannot be rewarded by a verifier, so ``rl.data.load``
leaves them out of RL prompts (with a logged count naming them) unless ``require_answer=False``.
Final answers are stored with surrounding whitespace stripped. ``solution`` is "" (the source has
none).
"""

from __future__ import annotations

import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import tensorflow_datasets as tfds

from rl.data import rows
from rl.data.source_builder import SourceFileBuilder


class MathTrain(SourceFileBuilder):
    """MATH train problems and final answers (openreasoner/openr), read from
    rl/data/files/math_train."""

    name = "rlreward_math_train"
    VERSION = tfds.core.Version("1.0.0")
    SOURCES = {"train": "math_train/extracted_problems_and_answers.json"}
    HOMEPAGE = "https://github.com/openreasoner/openr"

    def read_rows(self, path: pathlib.Path) -> Iterator[rows.RawRow]:
        return rows.read_json_list(path)

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> dict[str, Any]:
        return {
            "id": f"math/{split}/{index}",
            "question": rows.text_field(row, "problem").strip(),
            "solution": "",
            "answer": rows.text_field(row, "final_answer", allow_empty=True).strip(),
        }
