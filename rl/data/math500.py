"""MATH500: the 500-problem MATH test subset of Lightman et al. 2023 ("Let's Verify Step by Step").

Stored as in the source: ``question`` = problem, ``solution`` = the worked solution, ``answer`` =
the final answer string (LaTeX, e.g. ``\\left( 3, \\frac{\\pi}{2} \\right)``), plus ``subject`` and
``level`` (1-5) for per-subject / per-level accuracy. ``id`` is ``math500/`` + the source's
``unique_id`` (``test/precalculus/807.json``), the key PRM800K and other papers cite problems by.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import numpy as np
import tensorflow_datasets as tfds

from rl.data import rows
from rl.data.source_builder import SourceFileBuilder

LEVELS = range(1, 6)


class Math500(SourceFileBuilder):
    """MATH500 test problems (openai/prm800k math_splits/test.jsonl), read from
    rl/data/files/math500."""

    name = "rlreward_math500"
    VERSION = tfds.core.Version("1.0.0")
    SOURCES = {"test": "math500/test.jsonl"}
    EXTRA_FEATURES = {"subject": tfds.features.Text(), "level": np.int32}
    HOMEPAGE = "https://github.com/openai/prm800k"

    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> dict[str, Any]:
        unique_id = rows.text_field(row, "unique_id").strip()
        level = rows.int_field(row, "level")
        if level not in LEVELS:
            raise rows.RowError("level", f"{level} is not in 1..5")
        return {
            "id": f"math500/{unique_id}",
            "question": rows.text_field(row, "problem").strip(),
            "solution": rows.text_field(row, "solution"),
            "answer": rows.text_field(row, "answer").strip(),
            "subject": rows.text_field(row, "subject").strip(),
            "level": level,
        }
