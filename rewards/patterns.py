"""Reasoning-pattern reward (arXiv 2505.22653): reward the presence of key reasoning phrases.

A host-side text reward for the noisy-reward studies: it needs no verifier and no reward model, and
the paper reports it reaches near-verifier accuracy. It is built to be hard to farm: each phrase
counts once however often it appears, the total is capped, and repeated steps are subtracted.

    reward = min(scale * #distinct phrases present, cap) - repetition_ratio

with ``repetition_ratio`` the fraction of steps that repeat an earlier step (``rewards.steps``).
"""

from __future__ import annotations

import re
from collections.abc import Sequence

from rewards import steps as steps_lib

DEFAULT_PHRASES = (
    "first, i need to",
    "let me first",
    "let me check",
    "let me verify",
    "let's verify",
    "wait",
    "alternatively",
    "on the other hand",
    "this means",
    "therefore",
    "so the answer",
    "to summarize",
    "double-check",
    "step by step",
)


def reasoning_pattern_reward(
    text: str,
    *,
    phrases: Sequence[str] = DEFAULT_PHRASES,
    scale: float = 0.2,
    cap: float = 1.0,
    sep: str = steps_lib.DEFAULT_SEPARATOR,
) -> float:
    """``min(scale * #distinct phrases, cap) - repeated-step fraction``; case-insensitive, and text
    and phrases alike have every whitespace run read as one space (a line break between two words
    is a space between them; a phrase ``"first, "`` matches before any word)."""
    if scale < 0 or cap < 0:
        raise ValueError(f"scale and cap must be >= 0, got scale={scale!r}, cap={cap!r}")
    lowered = _normalize(text)
    present = sum(1 for p in dict.fromkeys(_normalize(ph) for ph in phrases) if p and p in lowered)
    repetition = steps_lib.repeated_step_fraction(steps_lib.step_texts(text, sep))
    return min(scale * present, cap) - repetition


def _normalize(text: str) -> str:
    return re.sub(r"\s+", " ", text.lower())
