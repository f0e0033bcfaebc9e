"""Step-labelled solutions for reward-model training: the container and its encoding into
fixed-shape arrays.

    examples = read_process_labels(            # rl.reward_models.sources
        "math_shepherd", "rl/data/files/process_labels/samples_math-shepherd.jsonl")
    arrays = encode(examples, tokenizer, max_prompt_len=64, max_response_len=128, sep="\\n")

Every source (``rl.reward_models.sources``, ``rl.reward_models.labels``) yields
``StepLabelled(question, steps, labels)``: the solution as a list of step texts and one label in
[0, 1] per step, the chance that the solution is still on track after that step (hard 0/1 labels
from humans, soft Monte-Carlo fractions from automatic labelling). NaN marks a step without a label
(OmegaPRM's math-aps labels only the last step of each prefix); losses skip it.

Array layout (``RewardArrays``), as in PPO (``rl.algo.update``): each row is the formatted prompt
left-padded to P, then the response right-padded to R; all per-token arrays are ``[N, S]`` with
S = P + R.
"""

from __future__ import annotations

import dataclasses
import logging
import math
from collections.abc import Sequence
from typing import Any

import numpy as np

from rewards import steps as steps_lib
from rl.data import prompts as prompts_lib

log = logging.getLogger(__name__)

_SHOWN = 5


@dataclasses.dataclass(frozen=True)
class StepLabelled:
    """One solution with a label per step.

    labels[k] in [0, 1] (or NaN: unlabelled) belongs to steps[k]. answer: the reference final answer
    ("" when the source has none); outcome: whether the whole solution's final answer is right, when
    known (a verifier's verdict), else None. id: where it came from ("file:line", "toy/train/3#0").
    """

    question: str
    steps: list[str]
    labels: list[float]
    answer: str = ""
    outcome: float | None = None
    id: str = ""

    def __post_init__(self):
        where = f"StepLabelled {self.id!r}" if self.id else "StepLabelled"
        if len(self.steps) != len(self.labels):
            raise ValueError(f"{where}: {len(self.steps)} steps but {len(self.labels)} labels")
        if not self.steps:
            raise ValueError(f"{where}: no steps")
        for k, step in enumerate(self.steps):
            if not isinstance(step, str) or not step.strip():
                raise ValueError(f"{where}: step {k} is empty ({step!r})")
        for k, label in enumerate(self.labels):
            if not (math.isnan(label) or 0.0 <= label <= 1.0):
                raise ValueError(f"{where}: label {k} = {label!r} is not in [0, 1] (or NaN)")
        if self.outcome is not None and not 0.0 <= self.outcome <= 1.0:
            raise ValueError(f"{where}: outcome={self.outcome!r} is not in [0, 1]")

    @property
    def outcome_label(self) -> float:
        """The outcome if known, else the last step's label (a prefix that is the whole solution is
        labelled by its answer in every format here), else NaN."""
        if self.outcome is not None:
            return float(self.outcome)
        return float(self.labels[-1])

    def response(self, sep: str) -> str:
        return sep.join(self.steps)


def hard_labels(examples: Sequence[StepLabelled]) -> list[StepLabelled]:
    """Soft labels made hard the Math-Shepherd way: 1 iff any completion succeeded (label > 0)."""

    def hard(x: float) -> float:
        return x if math.isnan(x) else float(x > 0)

    return [dataclasses.replace(ex, labels=[hard(x) for x in ex.labels]) for ex in examples]


@dataclasses.dataclass(frozen=True)
class RewardArrays:
    """Fixed-shape training/evaluation arrays of N examples; S = prompt_len + response_len.

    tokens [N, S] int32 (prompt left-padded to P, response right-padded; pads are the pad id);
    attention_mask [N, S] bool; response_mask [N, S] bool (response tokens, EOS included);
    step_end [N, S] bool: last token of every step; label_mask [N, S] bool: step ends that carry a
    label; step_labels [N, S] float32: the label there, 0 elsewhere; outcome [N] float32 and
    outcome_mask [N] bool (False where unknown); index [N]: position of each row's example in the
    list given to ``encode``.
    """

    tokens: np.ndarray
    attention_mask: np.ndarray
    response_mask: np.ndarray
    step_end: np.ndarray
    label_mask: np.ndarray
    step_labels: np.ndarray
    outcome: np.ndarray
    outcome_mask: np.ndarray
    index: np.ndarray
    prompt_len: int

    def __len__(self) -> int:
        return int(self.tokens.shape[0])

    def take(self, rows) -> RewardArrays:
        rows = np.asarray(rows)
        fields = {f.name: getattr(self, f.name) for f in dataclasses.fields(self)}
        return RewardArrays(**{k: (v if k == "prompt_len" else v[rows]) for k, v in fields.items()})

    def batch(self) -> dict[str, np.ndarray]:
        """The arrays a train step takes (everything but index and prompt_len)."""
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)
            if f.name not in ("index", "prompt_len")
        }


def split_heldout(
    arrays: RewardArrays, fraction: float, seed: int = 0
) -> tuple[RewardArrays, RewardArrays]:
    """(train, held-out) by a seeded permutation of the rows."""
    perm = np.random.default_rng(seed).permutation(len(arrays))
    n_held = int(round(fraction * len(arrays)))
    return arrays.take(np.sort(perm[n_held:])), arrays.take(np.sort(perm[:n_held]))


def _response_ids(example: StepLabelled, tokenizer: Any, sep: str) -> tuple[list[int], list[int]]:
    """Token ids of the steps joined by ``sep`` and the index of each step's last token."""
    text, spans, pos = [], [], 0
    for k, step in enumerate(example.steps):
        piece = (sep if k else "") + step
        text.append(piece)
        start = pos + len(piece) - len(step)
        lead = len(step) - len(step.lstrip())
        spans.append((start + lead, start + len(step.rstrip())))
        pos += len(piece)
    enc = tokenizer("".join(text), add_special_tokens=False, return_offsets_mapping=True)
    ids = list(enc["input_ids"])
    offsets = [(int(a), int(b)) for a, b in enc["offset_mapping"]]
    ends = []
    for span in spans:  # One position per step, even when two steps end in one token.
        found = steps_lib.step_end_positions([span], offsets)
        ends.append(found[0] if found else -1)
    return ids, ends


def encode(
    examples: Sequence[StepLabelled],
    tokenizer: Any,
    *,
    max_prompt_len: int,
    max_response_len: int,
    sep: str = steps_lib.DEFAULT_SEPARATOR,
    system_prompt: str | None = None,
    append_eos: bool = True,
) -> RewardArrays:
    """Formats each question as the policy's prompt (``rl.data.prompts.format_prompt``), joins the
    steps with ``sep`` as the response (+ EOS, which is where the PPO trainer reads an ORM), and
    marks every step's last token, as ``rewards.steps`` does for sampled responses.

    Examples whose prompt or response does not fit are left out and logged (``index`` says which
    were kept).
    """
    p, r = max_prompt_len, max_response_len
    n = len(examples)
    pad = tokenizer.pad_token_id if tokenizer.pad_token_id is not None else 0
    tokens = np.full((n, p + r), pad, np.int32)
    attn = np.zeros((n, p + r), bool)
    resp = np.zeros((n, p + r), bool)
    step_end = np.zeros((n, p + r), bool)
    label_mask = np.zeros((n, p + r), bool)
    labels = np.zeros((n, p + r), np.float32)
    outcome = np.zeros((n,), np.float32)
    keep, too_long = [], []
    for i, ex in enumerate(examples):
        prompt_text = prompts_lib.format_prompt(ex.question, tokenizer, system_prompt=system_prompt)
        prompt_ids = tokenizer(prompt_text, add_special_tokens=False)["input_ids"]
        ids, ends = _response_ids(ex, tokenizer, sep)
        if append_eos and tokenizer.eos_token_id is not None:
            ids = ids + [tokenizer.eos_token_id]
        if len(prompt_ids) > p or len(ids) > r or not prompt_ids:
            too_long.append(f"{ex.id or i} ({len(prompt_ids)}+{len(ids)})")
            continue
        tokens[i, p - len(prompt_ids) : p] = prompt_ids
        tokens[i, p : p + len(ids)] = ids
        attn[i, p - len(prompt_ids) : p + len(ids)] = True
        resp[i, p : p + len(ids)] = True
        for end, y in zip(ends, ex.labels, strict=True):
            if end < 0:
                continue
            step_end[i, p + end] = True
            if not math.isnan(y):
                label_mask[i, p + end] = True
                labels[i, p + end] = y
        outcome[i] = ex.outcome_label
        keep.append(i)
    if too_long:
        more = ", ..." if len(too_long) > _SHOWN else ""
        log.warning(
            "encode: left out %d of %d examples longer than max_prompt_len=%d / "
            "max_response_len=%d tokens: %s%s",
            len(too_long),
            n,
            p,
            r,
            ", ".join(too_long[:_SHOWN]),
            more,
        )
    rows = np.asarray(keep, np.int64)
    outcome = outcome[rows]
    return RewardArrays(
        tokens=tokens[rows],
        attention_mask=attn[rows],
        response_mask=resp[rows],
        step_end=step_end[rows],
        label_mask=label_mask[rows],
        step_labels=labels[rows],
        outcome=np.nan_to_num(outcome, nan=0.0),
        outcome_mask=~np.isnan(outcome),
        index=rows,
        prompt_len=p,
    )
