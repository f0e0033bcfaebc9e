"""A dataset's problems as an evaluation poses and judges them: the prompts (the dataset's system
prompt, one length bucket), the step separator its responses are split on, and the verifier's
verdicts on the responses. Shared by the evaluator and SEAM scoring (``rl.eval.seam``).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from rewards import steps as steps_lib
from rewards.verify import Verifier, extract_answer
from rl.data import prompts as prompts_lib
from rl.data.example import Example

DATASET_SEPARATORS = {"toy": "\n"}  # Every other dataset: rewards.steps.DEFAULT_SEPARATOR.
# Default prompt width: the longest prompt rounded up to this. One bucket per evaluation either
# way; 16 keeps the padding every generated and scored row carries small (a toy prompt of 22
# tokens is 32 wide, not 64).
PROMPT_MULTIPLE = 16


def default_step_separator(dataset: str) -> str:
    return DATASET_SEPARATORS.get(dataset, steps_lib.DEFAULT_SEPARATOR)


def encode(
    examples: Sequence[Example], tokenizer: Any, dataset: str, max_prompt_len: int | None = None
) -> prompts_lib.PromptBatch:
    """The dataset's prompts, left-padded to `max_prompt_len` (None: the longest prompt rounded up
    to a multiple of PROMPT_MULTIPLE, one length bucket)."""
    system = prompts_lib.system_prompt_for(dataset)
    if max_prompt_len is None:
        longest = max(prompts_lib.prompt_lengths(examples, tokenizer, system_prompt=system))
        max_prompt_len = PROMPT_MULTIPLE * math.ceil(longest / PROMPT_MULTIPLE)
    return prompts_lib.encode_prompts(examples, tokenizer, max_prompt_len, system_prompt=system)


def check_answers(
    texts: Sequence[str], answers: Sequence[str], get_verifier: Callable[[], Verifier]
) -> np.ndarray:
    """[M] bool: the verifier's verdicts. A response without an extractable answer is wrong without
    asking it (as the verifier itself decides), so a policy that never answers (random weights,
    early training) never starts its worker processes."""
    correct = np.zeros(len(texts), bool)
    rows = [i for i, t in enumerate(texts) if extract_answer(t) is not None]
    if rows:
        verdict = get_verifier().check_batch([texts[i] for i in rows], [answers[i] for i in rows])
        correct[rows] = verdict.correct
    return correct
