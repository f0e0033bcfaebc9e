"""From examples to the policy's input: prompt text in the policy's format, then left-padded token
ids.

Format. A tokenizer with a chat template (Qwen2.5, Qwen2.5-Math, ...) gets the conversation the
model was tuned on: the instruction ``BOXED_INSTRUCTION`` as the system message (Qwen2.5-Math's
documented usage), the question as the user message, and the assistant header
(``add_generation_prompt``). A template that rejects a system message gets the instruction appended
to the user message instead. A tokenizer without a chat template (the toy's, a base model's) gets
the plain format ``[system_prompt + "\\n\\n"] + question + "\\n"``: the question line, then the
model writes its solution. The toy task uses no instruction (``system_prompt_for("toy")`` is None):
its tokenizer only knows the task's characters, and its solutions follow the question line directly.

Padding. Prompts are left-padded to exactly ``max_prompt_len`` (one length bucket, one compiled
shape), so every prompt ends at the same position and generation appends to all of them in step.
Why over-long prompts raise instead of being cut: truncating a math problem from the left removes
its beginning and silently changes the task. Filter the dataset once with ``drop_overlong`` (which
logs what it drops), or raise ``max_prompt_len``.
"""

from __future__ import annotations

import dataclasses
import logging
from collections.abc import Sequence
from typing import Any

import jinja2
import numpy as np

from rl.data.example import Example
from rl.data.rows import DataError

log = logging.getLogger(__name__)

BOXED_INSTRUCTION = "Please reason step by step, and put your final answer within \\boxed{}."
# Datasets whose prompts carry no instruction; all others use BOXED_INSTRUCTION.
_NO_INSTRUCTION = frozenset({"toy"})
_SHOWN = 10


def system_prompt_for(dataset: str) -> str | None:
    """The instruction used for ``dataset``'s prompts: None for the toy task, else
    BOXED_INSTRUCTION."""
    return None if dataset in _NO_INSTRUCTION else BOXED_INSTRUCTION


def format_prompt(
    question: str, tokenizer: Any, *, system_prompt: str | None = BOXED_INSTRUCTION
) -> str:
    """The prompt text for one question, in the tokenizer's chat format or the plain format."""
    if not getattr(tokenizer, "chat_template", None):
        return (f"{system_prompt}\n\n" if system_prompt else "") + question + "\n"
    user = {"role": "user", "content": question}
    if system_prompt:
        try:
            return _chat(tokenizer, [{"role": "system", "content": system_prompt}, user])
        except jinja2.TemplateError:
            # E.g. "System role not supported": carry the instruction in the user turn.
            user = {"role": "user", "content": f"{question}\n\n{system_prompt}"}
    return _chat(tokenizer, [user])


def _chat(tokenizer: Any, messages: list[dict[str, str]]) -> str:
    return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)


@dataclasses.dataclass(frozen=True)
class PromptBatch:
    """A batch of B prompts left-padded to P = max_prompt_len.

    input_ids: [B, P] int32, the tokenizer's pad id left of each prompt.
    attention_mask: [B, P] int32, 1 on prompt tokens, 0 on padding.
    ids, answers, texts: per row, the example's id and reference answer, and the formatted prompt.
    """

    input_ids: np.ndarray
    attention_mask: np.ndarray
    ids: tuple[str, ...]
    answers: tuple[str, ...]
    texts: tuple[str, ...]


def encode_prompts(
    examples: Sequence[Example],
    tokenizer: Any,
    max_prompt_len: int,
    *,
    system_prompt: str | None = BOXED_INSTRUCTION,
) -> PromptBatch:
    """Formats, tokenizes and left-pads ``examples``; ``DataError`` naming any prompt that is empty
    or longer than ``max_prompt_len`` tokens, or that the tokenizer cannot encode."""
    if not isinstance(max_prompt_len, int) or max_prompt_len < 1:
        raise DataError(f"max_prompt_len={max_prompt_len!r}: must be an integer >= 1")
    if tokenizer.pad_token_id is None:
        raise DataError(
            f"tokenizer {type(tokenizer).__name__} has no pad token; set tokenizer.pad_token"
        )
    texts = [format_prompt(ex.question, tokenizer, system_prompt=system_prompt) for ex in examples]
    token_ids = _tokenize(texts, [ex.id for ex in examples], tokenizer)
    input_ids = np.full((len(examples), max_prompt_len), tokenizer.pad_token_id, dtype=np.int32)
    attention_mask = np.zeros((len(examples), max_prompt_len), dtype=np.int32)
    for row, (ex, ids) in enumerate(zip(examples, token_ids)):
        if not ids:
            raise DataError(f"example {ex.id!r}: the prompt encodes to no tokens")
        if len(ids) > max_prompt_len:
            raise DataError(
                f"example {ex.id!r}: prompt is {len(ids)} tokens, longer than "
                f"max_prompt_len={max_prompt_len}; raise it or filter with drop_overlong"
            )
        input_ids[row, max_prompt_len - len(ids) :] = ids
        attention_mask[row, max_prompt_len - len(ids) :] = 1
    return PromptBatch(
        input_ids,
        attention_mask,
        tuple(ex.id for ex in examples),
        tuple(ex.answer for ex in examples),
        tuple(texts),
    )


def prompt_lengths(
    examples: Sequence[Example], tokenizer: Any, *, system_prompt: str | None = BOXED_INSTRUCTION
) -> list[int]:
    """Token length of each example's formatted prompt."""
    texts = [format_prompt(ex.question, tokenizer, system_prompt=system_prompt) for ex in examples]
    return [len(ids) for ids in _tokenize(texts, [ex.id for ex in examples], tokenizer)]


def drop_overlong(
    examples: Sequence[Example],
    tokenizer: Any,
    max_prompt_len: int,
    *,
    system_prompt: str | None = BOXED_INSTRUCTION,
) -> list[Example]:
    """The examples whose prompts fit in ``max_prompt_len`` tokens; logs how many (and which) are
    not."""
    lengths = prompt_lengths(examples, tokenizer, system_prompt=system_prompt)
    dropped = [f"{ex.id} ({n})" for ex, n in zip(examples, lengths) if n > max_prompt_len]
    if dropped:
        more = ", ..." if len(dropped) > _SHOWN else ""
        log.warning(
            "dropping %d of %d examples whose prompt is longer than max_prompt_len=%d tokens: %s%s",
            len(dropped),
            len(examples),
            max_prompt_len,
            ", ".join(dropped[:_SHOWN]),
            more,
        )
    return [ex for ex, n in zip(examples, lengths) if n <= max_prompt_len]


def _tokenize(texts: list[str], example_ids: list[str], tokenizer: Any) -> list[list[int]]:
    # The formatted text already holds every special token the format needs (chat markers).
    if not texts:
        return []
    try:
        return tokenizer(texts, add_special_tokens=False)["input_ids"]
    except Exception:  # The batch call does not say which text failed; find it and name it.
        for text, example_id in zip(texts, example_ids):
            try:
                tokenizer(text, add_special_tokens=False)
            except Exception as e:
                raise DataError(
                    f"example {example_id!r}: tokenizer cannot encode prompt {text!r}: {e}"
                ) from e
        raise
