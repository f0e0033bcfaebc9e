"""``Example``: one problem as the trainer and evaluator see it, whatever dataset it came from."""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from typing import Any


@dataclasses.dataclass(frozen=True)
class Example:
    """A problem with its reference answer.

    id: unique within its dataset and split, stable across builds ("gsm8k/test/0",
        "math500/test/precalculus/807.json", "toy/train/12").
    question: the problem text, without any prompt formatting.
    answer: the final answer string the verifier compares against ("" only when the source has
        none, which ``rl.data.load`` drops unless asked not to).
    solution: the reference worked solution, "" when the source has none (MATH train).
    meta: dataset-specific extras (MATH500: ``subject``, ``level``).
    """

    id: str
    question: str
    answer: str
    solution: str = ""
    meta: Mapping[str, Any] = dataclasses.field(default_factory=dict, hash=False)
