"""The reasoning-pattern reward of a rollout (``reward.pattern_*``): which responses earn it, and
how much, from their decoded texts on the host; ``rl.algo.scoring`` then adds ``pattern_weight``
times it to the outcome reward at the last token (arXiv 2505.22653, "RPR").

A response earns ``rewards.patterns.reasoning_pattern_reward`` of its text where all of:

* it was not cut off by the length limit (like the success reward: no final answer in the budget);
* it states a final answer (``rewards.verify.extract_answer``), when ``pattern_requires_answer``:
  the paper's code gives neither reward to a response without a boxed answer, which stops a policy
  from farming phrases without ever answering;
* ``pattern_when="wrong"`` only: its success reward (after ``success_flip_prob``'s noise) is below
  0.5. This is the paper's calibration of a noisy verifier (``add_format_reward_when_wrong``): a
  response the verifier calls wrong, possibly a false negative, is rewarded for its reasoning
  instead of 0; one it calls right keeps its 1.

Everywhere else the term is 0. ``outcome_rewards`` returns the terms with the outcome they make,
``success_weight * success + pattern_weight * term``, which ``rl.runtime.samples`` logs next to each
response's text (``train.log_samples``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import NamedTuple

import numpy as np

from rewards.patterns import DEFAULT_PHRASES, reasoning_pattern_reward
from rewards.verify import extract_answer
from rl.config import RewardConfig, RLConfig
from rl.data.example import Example

# pattern_when="wrong": a success reward below this is a "wrong" verdict (0/1 verifiers: 0).
WRONG_BELOW = 0.5


def text_pattern_reward(text: str, reward: RewardConfig, sep: str) -> float:
    """The reasoning-pattern reward of one text under the config's phrases, scale and cap (steps
    for the repetition penalty split at the run's ``data.step_separator``)."""
    return reasoning_pattern_reward(
        text,
        phrases=reward.pattern_phrases or DEFAULT_PHRASES,
        scale=reward.pattern_scale,
        cap=reward.pattern_cap,
        sep=sep,
    )


def pattern_applies(
    reward: RewardConfig, texts: Sequence[str], success_B: np.ndarray, truncated_B: np.ndarray
) -> np.ndarray:
    """[B] bool: the responses that earn the pattern reward (module docstring)."""
    applies = ~np.asarray(truncated_B, bool)
    if reward.pattern_requires_answer:
        applies &= np.array([extract_answer(t) is not None for t in texts], bool)
    if reward.pattern_when == "wrong":
        applies &= np.asarray(success_B, np.float64) < WRONG_BELOW
    return applies


class Outcome(NamedTuple):
    """A rollout's outcome reward and its parts, per response row: what ``rl.algo.scoring`` puts at
    the last token (before the ORM term) and what ``rl.runtime.samples`` logs."""

    success_B: np.ndarray  # the success reward: verifier (or success_fn), truncation, noise
    pattern_B: np.ndarray  # the pattern reward where it applies, else 0
    outcome_B: np.ndarray  # success_weight * success + pattern_weight * pattern (float32)
    truncated_B: np.ndarray

    def columns(self, examples: Sequence[Example], texts: Sequence[str]) -> dict[str, list]:
        """Per row: the prompt's id and reference answer, the response and its rewards."""
        n = len(texts) // max(len(examples), 1)
        return {
            "prompt_id": [ex.id for ex in examples for _ in range(n)],
            "answer": [ex.answer for ex in examples for _ in range(n)],
            "text": list(texts),
            "truncated": [bool(t) for t in self.truncated_B],
            "success": [float(x) for x in self.success_B],
            "pattern": [float(x) for x in self.pattern_B],
            "outcome": [float(x) for x in self.outcome_B],
        }


def outcome_rewards(
    cfg: RLConfig, texts: Sequence[str], success_B: np.ndarray, truncated_B: np.ndarray
) -> Outcome:
    """The pattern reward of each response where it applies (all 0, nothing computed, when
    ``reward.pattern_weight`` is 0) and the outcome reward it makes with ``success_B``."""
    r = cfg.reward
    pattern = np.zeros(len(texts), np.float32)
    if r.pattern_weight > 0:
        for i in np.flatnonzero(pattern_applies(r, texts, success_B, truncated_B)):
            pattern[i] = text_pattern_reward(texts[i], r, cfg.data.step_separator)
    success = np.asarray(success_B, np.float32)
    # float32 as rl.algo.scoring computes it on the device.
    outcome = np.float32(r.success_weight) * success + np.float32(r.pattern_weight) * pattern
    return Outcome(success, pattern, outcome, np.asarray(truncated_B, bool))
