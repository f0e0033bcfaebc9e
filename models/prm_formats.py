"""How each published process reward model wants a (question, steps) pair turned into tokens, and
where in those tokens each step's score is read. Host side only: text and token ids, no arrays.

Every format follows its authors' usage code; the source is named on each class. The step list is
taken as given (no re-splitting). What the formats share:

* A step's text (and, where the tag is found by token id, the question's) may contain the format's
  own step marker (`ки`, `<extra_0>`, Skywork's step token, the `own` separator). Each occurrence
  is replaced by one space before tokenizing, so the model sees exactly one marker per step, where
  the authors put it, and there is exactly one read position per step.
* An empty step list gives an empty row (no tokens, no read positions).
* `Row.reads[k]` is the token index whose output scores step k, or -1 when step k has no token to
  read (only `own`, for a step that is only whitespace).

A tokenizer that cannot express a format (tag not one token, "+" not one token, no chat template,
no BOS where Skywork prepends one) raises `FormatMismatch` when the encoder is built; `models.prm`
re-raises it as `PRMFormatError` naming the config key.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jinja2

FORMATS = ("own", "qwen_math_prm", "math_shepherd", "rlhflow", "value_head")


class FormatMismatch(ValueError):
    """The tokenizer or the data cannot be encoded the way the format needs."""


@dataclasses.dataclass(frozen=True)
class Row:
    """One encoded (question, steps): token ids and, per step, the index its score is read at."""

    ids: list[int]
    reads: list[int]


EMPTY = Row(ids=[], reads=[])


def _one_token(tokenizer: Any, text: str, what: str) -> int:
    ids = tokenizer.encode(text, add_special_tokens=False)
    if len(ids) != 1:
        raise FormatMismatch(f"{what} {text!r} is {len(ids)} tokens in the PRM's tokenizer, not 1")
    return int(ids[0])


def _tag_reads(ids: Sequence[int], tag_id: int, steps: int, tag: str) -> list[int]:
    """Every position holding the tag token: the authors' `input_ids == step_tag_id`."""
    reads = [i for i, t in enumerate(ids) if t == tag_id]
    if len(reads) != steps:
        raise FormatMismatch(
            f"{steps} step(s) but the step tag {tag!r} (token {tag_id}) came out {len(reads)} "
            "time(s) in the tokenized input"
        )
    return reads


def _needs_chat_template(tokenizer: Any, fmt: str) -> None:
    if not getattr(tokenizer, "chat_template", None):
        raise FormatMismatch(
            f"{fmt} builds its input with the tokenizer's chat template; it has none"
        )


class QwenMathPRM:
    """Qwen2.5-Math-PRM (https://huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, also
    https://huggingface.co/Qwen/Qwen2.5-Math-7B-PRM800K): chat template with the card's system
    prompt, user = question, assistant = steps joined by `<extra_0>` plus a trailing `<extra_0>`,
    rendered with `add_generation_prompt=False` and `tokenizer.encode`d; scores at every `<extra_0>`
    token (the 2-way head's softmax[..., 1], read in `models.prm`)."""

    TAG = "<extra_0>"
    SYSTEM = "Please reason step by step, and put your final answer within \\boxed{}."

    def __init__(self, tokenizer: Any):
        _needs_chat_template(tokenizer, "qwen_math_prm")
        self.tokenizer = tokenizer
        self.tag_id = _one_token(tokenizer, self.TAG, "step tag")
        self.special_ids = (self.tag_id,)

    def row(self, question: str, steps: Sequence[str]) -> Row:
        if not steps:
            return EMPTY
        question = question.replace(self.TAG, " ")
        steps = [s.replace(self.TAG, " ") for s in steps]
        messages = [
            {"role": "system", "content": self.SYSTEM},
            {"role": "user", "content": question},
            {"role": "assistant", "content": self.TAG.join(steps) + self.TAG},
        ]
        text = self.tokenizer.apply_chat_template(
            messages, tokenize=False, add_generation_prompt=False
        )
        ids = list(self.tokenizer.encode(text))
        return Row(ids, _tag_reads(ids, self.tag_id, len(steps), self.TAG))


def _without_bos(tokenizer: Any, ids: list[int]) -> list[int]:
    bos = tokenizer.bos_token_id
    return ids[1:] if ids and bos is not None and ids[0] == bos else ids


class MathShepherd:
    """Math-Shepherd (https://huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm): the input is
    `f"{question} {output}"` with output = each step followed by " ки", joined by "\\n" (the card's
    `"Step 1: ... ки\\nStep 2: ... ки"`), `tokenizer.encode`d (BOS included); the step tag is
    `tokenizer.encode("ки")[-1]` and the candidates `tokenizer.encode("+ -")[1:]`, i.e. without the
    BOS (dropped here only when the tokenizer adds one). Score = softmax over the two candidates'
    logits at each tag, P(+). The card's steps carry their own "Step k: " prefixes; the caller's
    step text is used as it is."""

    TAG, GOOD, BAD = "ки", "+", "-"

    def __init__(self, tokenizer: Any):
        self.tokenizer = tokenizer
        self.tag_id = int(tokenizer.encode(self.TAG)[-1])
        if tokenizer.decode([self.tag_id]).strip() != self.TAG:
            raise FormatMismatch(
                f"step tag {self.TAG!r} is not one token in the PRM's tokenizer "
                f"(its last token decodes to {tokenizer.decode([self.tag_id])!r})"
            )
        candidates = _without_bos(tokenizer, list(tokenizer.encode(f"{self.GOOD} {self.BAD}")))
        texts = [tokenizer.decode([c]).strip() for c in candidates]
        if texts != [self.GOOD, self.BAD]:
            raise FormatMismatch(
                f"good/bad tokens {self.GOOD!r}/{self.BAD!r} must be one token each; "
                f"{self.GOOD + ' ' + self.BAD!r} tokenizes to {texts}"
            )
        self.good_id, self.bad_id = (int(c) for c in candidates)
        self.special_ids = (self.tag_id, self.good_id, self.bad_id)

    def row(self, question: str, steps: Sequence[str]) -> Row:
        if not steps:
            return EMPTY
        question = question.replace(self.TAG, " ")
        output = "\n".join(f"{s.replace(self.TAG, ' ')} {self.TAG}" for s in steps)
        ids = list(self.tokenizer.encode(f"{question} {output}"))
        return Row(ids, _tag_reads(ids, self.tag_id, len(steps), self.TAG))


class RLHFlow:
    """RLHFlow PRMs (https://huggingface.co/RLHFlow/Llama3.1-8B-PRM-Deepseek-Data, -Mistral-Data;
    usage code https://github.com/RLHFlow/RLHF-Reward-Modeling, math-rm/prm_evaluate.py): each
    step (stripped) is a user turn, the first one `question + " " + step`, each followed by an
    assistant turn "+", through the tokenizer's chat template (tokenized without extra special
    tokens, as `apply_chat_template` does). The authors run one forward per step prefix and read
    `logits[:, -3]`, the position just before that prefix's last "+" (its turn ends in
    "+<|eot_id|>"); the model being causal, one pass over the whole conversation gives the same
    logits at the position before each assistant "+". Candidates: `encode("+")[-1]`,
    `encode("-")[-1]`; score = P(+) over the two."""

    GOOD, BAD = "+", "-"

    def __init__(self, tokenizer: Any):
        _needs_chat_template(tokenizer, "rlhflow")
        if not getattr(tokenizer, "is_fast", False):
            raise FormatMismatch(
                "rlhflow locates turns by character offsets: needs a fast tokenizer"
            )
        self.tokenizer = tokenizer
        self.good_id = _one_token(tokenizer, self.GOOD, "good token")
        self.bad_id = _one_token(tokenizer, self.BAD, "bad token")
        self.special_ids = (self.good_id, self.bad_id)

    def _render(self, conversation: list[dict[str, str]]) -> str:
        return self.tokenizer.apply_chat_template(conversation, tokenize=False)

    def row(self, question: str, steps: Sequence[str]) -> Row:
        if not steps:
            return EMPTY
        conversation: list[dict[str, str]] = []
        for k, step in enumerate(steps):
            text = question + " " + step.strip() if k == 0 else step.strip()
            conversation += [
                {"content": text, "role": "user"},
                {"content": self.GOOD, "role": "assistant"},
            ]
        full = self._render(conversation)
        enc = self.tokenizer(full, add_special_tokens=False, return_offsets_mapping=True)
        ids = list(enc["input_ids"])
        ends = [int(b) for _, b in enc["offset_mapping"]]
        reads = []
        for k in range(len(steps)):
            prefix = self._render(conversation[: 2 * k + 2])
            if not full.startswith(prefix):
                raise FormatMismatch(
                    "the chat template renders a conversation's first turns differently once more "
                    "turns follow; one pass cannot stand for the per-prefix passes"
                )
            plus = prefix.rfind(self.GOOD)
            token = next(i for i, end in enumerate(ends) if end > plus)
            if ids[token] != self.good_id:
                raise FormatMismatch(
                    f"assistant turn {k}'s {self.GOOD!r} did not tokenize as token {self.good_id}"
                )
            reads.append(token - 1)
        return Row(ids, reads)


class ValueHead:
    """Skywork-o1-Open-PRM (https://huggingface.co/Skywork/Skywork-o1-Open-PRM-Qwen-2.5-1.5B; code
    https://github.com/SkyworkAI/skywork-o1-prm-inference, model_utils/io_utils.py `prepare_input`
    and model_utils/prm_model.py): `tokenizer.encode(bos_token + problem + "\\n")`, then per step
    `tokenizer.encode(step)` (nothing for an empty step) followed by the step token's id
    (`encode(step_token)[-1]`, "\\n" in the README); the reward is sigmoid of the value head
    (`v_head.summary`, Linear(hidden, 1)) at each step token (`return_probs=True`)."""

    STEP_TOKEN = "\n"

    def __init__(self, tokenizer: Any):
        if tokenizer.bos_token is None:
            raise FormatMismatch(
                "value_head (Skywork) starts every input with the tokenizer's bos_token; "
                "it has none"
            )
        self.tokenizer = tokenizer
        self.step_id = int(tokenizer.encode(self.STEP_TOKEN)[-1])
        if tokenizer.decode([self.step_id]) != self.STEP_TOKEN:
            raise FormatMismatch(f"step token {self.STEP_TOKEN!r} is not one token")
        self.special_ids = (self.step_id,)

    def row(self, question: str, steps: Sequence[str]) -> Row:
        if not steps:
            return EMPTY
        ids = list(self.tokenizer.encode(self.tokenizer.bos_token + question + "\n"))
        reads = []
        for step in steps:
            step = step.replace(self.STEP_TOKEN, " ")
            if step != "":
                ids += self.tokenizer.encode(step)
            ids.append(self.step_id)
            reads.append(len(ids) - 1)
        return Row(ids, reads)


def format_prompt(question: str, tokenizer: Any, system_prompt: str | None) -> str:
    """The policy's prompt text, as `rl.data.prompts.format_prompt` writes it (which models/ may not
    import): the chat template with the instruction as system message (or appended to the user
    turn when the template rejects a system role) and the assistant header; without a template,
    `[system_prompt + "\\n\\n"] + question + "\\n"`."""
    if not getattr(tokenizer, "chat_template", None):
        return (f"{system_prompt}\n\n" if system_prompt else "") + question + "\n"
    user = {"role": "user", "content": question}

    def chat(messages):
        return tokenizer.apply_chat_template(messages, tokenize=False, add_generation_prompt=True)

    if system_prompt:
        try:
            return chat([{"role": "system", "content": system_prompt}, user])
        except jinja2.TemplateError:
            user = {"role": "user", "content": f"{question}\n\n{system_prompt}"}
    return chat([user])


class Own:
    """A reward model trained here (`models.reward_io.save_reward_model`), scored the way
    `rl.reward_models.data.encode` laid out its training rows: the question as the policy's prompt
    (`format_prompt`, with the system prompt recorded in reward_model.json, none if not recorded),
    then the steps joined by the recorded separator; each step's score is read at the token holding
    its last non-space character (one position per step even when two steps end in one token)."""

    def __init__(self, tokenizer: Any, sep: str, system_prompt: str | None):
        if not sep:
            raise FormatMismatch(f"step_separator={sep!r} must be a non-empty string")
        if not getattr(tokenizer, "is_fast", False):
            raise FormatMismatch(
                "own locates step ends by character offsets: needs a fast tokenizer"
            )
        self.tokenizer, self.sep, self.system_prompt = tokenizer, sep, system_prompt
        self.special_ids: tuple[int, ...] = ()

    def row(self, question: str, steps: Sequence[str]) -> Row:
        if not steps:
            return EMPTY
        prompt = format_prompt(question, self.tokenizer, self.system_prompt)
        prompt_ids = list(self.tokenizer(prompt, add_special_tokens=False)["input_ids"])
        pieces, last_chars, pos = [], [], 0
        for k, step in enumerate(steps):
            step = step.replace(self.sep, " ")
            piece = (self.sep if k else "") + step
            start = pos + len(piece) - len(step)
            last_chars.append(start + len(step.rstrip()) - 1 if step.strip() else -1)
            pieces.append(piece)
            pos += len(piece)
        enc = self.tokenizer("".join(pieces), add_special_tokens=False, return_offsets_mapping=True)
        spans = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
        reads = []
        for char in last_chars:
            token = next((i for i, (a, b) in enumerate(spans) if b > a and b > char), None)
            reads.append(-1 if char < 0 or token is None else len(prompt_ids) + token)
        return Row(prompt_ids + list(enc["input_ids"]), reads)
