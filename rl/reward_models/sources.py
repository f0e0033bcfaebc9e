"""Where step-labelled solutions come from, besides automatic labelling
(``rl.reward_models.labels``): readers of the published label formats, this project's own
``labels.jsonl`` (``save_jsonl`` / ``load_jsonl``), and a synthetic toy source. Each returns
``rl.reward_models.data.StepLabelled`` rows.

Formats (samples in ``rl/data/files/process_labels/``, README there):

* **Math-Shepherd**: ``input`` = question, then steps ``"Step k: ..."`` each closed by the tag
  ``ки``; ``label`` is the same text with ``+`` (1) or ``-`` (0) in place of each tag.
* **PRM800K** (raw phase records): per step, the completions the labeller rated (1 good, 0 neutral,
  -1 bad) and the one they chose to continue with. The labelled trajectory is rebuilt step by step:
  the chosen completion with its rating; where none was chosen but a human wrote a step, that step
  with label 1 (humans wrote it as the correct continuation; its rating is null); where neither,
  the labeller stopped there (found an error, gave up): the first completion rated -1 ends the
  trajectory with label 0. Rating 0 ("neutral": reasonable but not clearly progressing) maps to
  ``neutral``, default 1.0: a neutral step is no error, and the label asked for here is "is the
  prefix still on track"; pass 0.0 for the strict reading or 0.5 for a soft one.
* **math-aps** (OmegaPRM): ``reasoning_steps[i].solution_prefix`` is the question followed by a
  partial solution, ``mc_value`` its Monte-Carlo success rate. Each prefix becomes one example whose
  steps are the prefix's steps (split by ``sep``) and whose only label is ``mc_value`` on the last
  step. The root prefix (the bare question) has no step and is skipped.

A row that cannot be read raises ``DataError`` naming the file, the 1-based line and the field.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
import random
from collections.abc import Iterator, Sequence
from typing import Any

from rewards import steps as steps_lib
from rl.data import toy
from rl.data.rows import DataError
from rl.reward_models.data import StepLabelled

log = logging.getLogger(__name__)

SHEPHERD_TAG = "ки"
SHEPHERD_GOOD, SHEPHERD_BAD = "+", "-"
FORMATS = ("math_shepherd", "prm800k", "math_aps")
_SHOWN = 5


def _rows(path: pathlib.Path) -> Iterator[tuple[int, dict[str, Any]]]:
    with path.open(encoding="utf-8") as f:
        for line_no, line in enumerate(f, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as e:
                raise DataError(f"{path}:{line_no}: not JSON ({e})") from None
            if not isinstance(row, dict):
                raise DataError(
                    f"{path}:{line_no}: expected a JSON object, got {type(row).__name__}"
                )
            yield line_no, row


def _field(row: dict, key: str, kind: type | tuple[type, ...], where: str, name: str | None = None):
    name = name or key
    if key not in row:
        raise DataError(f"{where}: field {name!r} is missing")
    value = row[key]
    if not isinstance(value, kind):
        raise DataError(
            f"{where}: field {name!r} should be {getattr(kind, '__name__', kind)}, got "
            f"{value!r:.80}"
        )
    return value


def read_math_shepherd(path: str | pathlib.Path) -> list[StepLabelled]:
    """Math-Shepherd rows (``input``/``label`` with ``ки`` tags → ``+``/``-``)."""
    path = pathlib.Path(path)
    out = []
    for line_no, row in _rows(path):
        where = f"{path}:{line_no}"
        text = _field(row, "input", str, where)
        label = _field(row, "label", str, where)
        pieces = text.split(SHEPHERD_TAG)
        if len(pieces) < 2:
            raise DataError(f"{where}: field 'input' has no step tag {SHEPHERD_TAG!r}")
        labels, pos = [], 0
        for k, piece in enumerate(pieces[:-1]):
            if label[pos : pos + len(piece)] != piece or pos + len(piece) >= len(label):
                raise DataError(
                    f"{where}: field 'label' does not match 'input' before step tag {k}"
                )
            mark = label[pos + len(piece)]
            if mark not in (SHEPHERD_GOOD, SHEPHERD_BAD):
                raise DataError(
                    f"{where}: field 'label' has {mark!r} at step tag {k}, expected "
                    f"{SHEPHERD_GOOD!r} or {SHEPHERD_BAD!r}"
                )
            labels.append(1.0 if mark == SHEPHERD_GOOD else 0.0)
            pos += len(piece) + 1
        if label[pos:] != pieces[-1]:
            raise DataError(
                f"{where}: field 'label' does not match 'input' after the last step tag"
            )
        first = pieces[0].find("Step 1:")
        if first < 0:
            raise DataError(
                f"{where}: field 'input' has no 'Step 1:' separating question and steps"
            )
        question = pieces[0][:first].strip()
        steps = [pieces[0][first:].strip()] + [p.strip() for p in pieces[1:-1]]
        try:
            out.append(StepLabelled(question, steps, labels, id=f"{path.name}:{line_no}"))
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    return out


def _prm800k_trajectory(steps: list, where: str, neutral: float) -> list[tuple[str, float]]:
    rating_label = {1: 1.0, 0: float(neutral), -1: 0.0}
    out = []
    for k, step in enumerate(steps):
        at = f"label.steps[{k}]"
        if not isinstance(step, dict):
            raise DataError(f"{where}: field {at!r} should be an object")
        completions = step.get("completions") or []
        if not isinstance(completions, list) or not all(isinstance(c, dict) for c in completions):
            raise DataError(f"{where}: field '{at}.completions' should be a list of objects")
        chosen = step.get("chosen_completion")
        human = step.get("human_completion")
        if chosen is not None:
            if not isinstance(chosen, int) or not 0 <= chosen < len(completions):
                raise DataError(
                    f"{where}: field '{at}.chosen_completion'={chosen!r} is not an "
                    f"index into its {len(completions)} completions"
                )
            c = completions[chosen]
            rating = c.get("rating")
            if rating not in rating_label:
                raise DataError(
                    f"{where}: field '{at}.completions[{chosen}].rating'={rating!r}: "
                    "expected -1, 0 or 1"
                )
            out.append(
                (
                    _field(c, "text", str, where, f"{at}.completions[{chosen}].text"),
                    rating_label[rating],
                )
            )
        elif human is not None:
            if not isinstance(human, dict):
                raise DataError(f"{where}: field '{at}.human_completion' should be an object")
            out.append((_field(human, "text", str, where, f"{at}.human_completion.text"), 1.0))
        else:  # The labeller stopped here: the trajectory ends with its first bad step, if rated.
            bad = [c for c in completions if c.get("rating") == -1]
            if bad:
                out.append((_field(bad[0], "text", str, where, f"{at}.completions[].text"), 0.0))
            break
    return out


def read_prm800k(path: str | pathlib.Path, *, neutral: float = 1.0) -> list[StepLabelled]:
    """PRM800K phase records; see the module docstring for how the trajectory is rebuilt. Rows
    whose trajectory has no step (e.g. a problem flagged as bad before any rating) are skipped and
    logged."""
    if not 0.0 <= neutral <= 1.0:
        raise ValueError(f"neutral={neutral!r}: must be in [0, 1]")
    path = pathlib.Path(path)
    out, empty = [], []
    for line_no, row in _rows(path):
        where = f"{path}:{line_no}"
        question = _field(row, "question", dict, where)
        problem = _field(question, "problem", str, where, "question.problem")
        answer = question.get("ground_truth_answer") or ""
        steps = _field(_field(row, "label", dict, where), "steps", list, where, "label.steps")
        trajectory = [(t.strip(), y) for t, y in _prm800k_trajectory(steps, where, neutral)]
        if not trajectory:
            empty.append(line_no)
            continue
        try:
            out.append(
                StepLabelled(
                    problem,
                    [t for t, _ in trajectory],
                    [y for _, y in trajectory],
                    answer=str(answer),
                    id=f"{path.name}:{line_no}",
                )
            )
        except ValueError as e:
            raise DataError(f"{where}: {e}") from None
    if empty:
        log.info(
            "%s: skipped %d rows with no labelled step (lines %s)", path, len(empty), empty[:_SHOWN]
        )
    return out


def read_math_aps(
    path: str | pathlib.Path, *, sep: str = steps_lib.DEFAULT_SEPARATOR
) -> list[StepLabelled]:
    """OmegaPRM math-aps rows: one example per non-root prefix, labelled on its last step."""
    path = pathlib.Path(path)
    out = []
    for line_no, row in _rows(path):
        where = f"{path}:{line_no}"
        question = _field(row, "question", str, where)
        answer = str(row.get("final_answer") or "")
        for i, node in enumerate(_field(row, "reasoning_steps", list, where)):
            at = f"reasoning_steps[{i}]"
            if not isinstance(node, dict):
                raise DataError(f"{where}: field {at!r} should be an object")
            prefix = _field(node, "solution_prefix", str, where, f"{at}.solution_prefix")
            value = _field(node, "mc_value", (int, float), where, f"{at}.mc_value")
            if not prefix.startswith(question):
                raise DataError(
                    f"{where}: field '{at}.solution_prefix' does not start with the question"
                )
            steps = steps_lib.step_texts(prefix[len(question) :], sep)
            if not steps:
                continue
            try:
                labels = [math.nan] * (len(steps) - 1) + [float(value)]
                out.append(
                    StepLabelled(
                        question, steps, labels, answer=answer, id=f"{path.name}:{line_no}#{i}"
                    )
                )
            except ValueError as e:
                raise DataError(f"{where}: {at}: {e}") from None
    return out


def read_process_labels(fmt: str, path: str | pathlib.Path, **kwargs) -> list[StepLabelled]:
    """``fmt`` is one of FORMATS; kwargs go to the format's reader."""
    readers = {
        "math_shepherd": read_math_shepherd,
        "prm800k": read_prm800k,
        "math_aps": read_math_aps,
    }
    if fmt not in readers:
        raise ValueError(f"format={fmt!r}: must be one of {FORMATS}")
    return readers[fmt](path, **kwargs)


def save_jsonl(path: str | pathlib.Path, examples: Sequence[StepLabelled]) -> None:
    """One JSON object per example (NaN labels as null); ``load_jsonl`` reads it back."""
    with pathlib.Path(path).open("w", encoding="utf-8") as f:
        for ex in examples:
            row = dataclasses.asdict(ex)
            row["labels"] = [None if math.isnan(x) else x for x in ex.labels]
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def load_jsonl(path: str | pathlib.Path) -> list[StepLabelled]:
    path = pathlib.Path(path)
    out = []
    for line_no, row in _rows(path):
        where = f"{path}:{line_no}"
        labels = _field(row, "labels", list, where)
        try:
            out.append(
                StepLabelled(
                    question=_field(row, "question", str, where),
                    steps=_field(row, "steps", list, where),
                    labels=[math.nan if x is None else float(x) for x in labels],
                    answer=row.get("answer") or "",
                    outcome=row.get("outcome"),
                    id=row.get("id") or "",
                )
            )
        except (TypeError, ValueError) as e:
            raise DataError(f"{where}: {e}") from None
    return out


# --- Synthetic toy labels -------------------------------------------------------------------------


_OFFSETS = tuple(o for o in range(-9, 10) if o)
_TOY_SPEC = toy.ToySpec()  # the task's own defaults


def toy_step_labelled(
    split: str,
    size: int,
    *,
    seed: int = 0,
    error_prob: float = 0.5,
    spec: toy.ToySpec = _TOY_SPEC,
) -> list[StepLabelled]:
    """Toy solutions in which each arithmetic step is, with probability ``error_prob``, written with
    a wrong result (off by 1..9 either way, kept in [0, spec.max_value] like every value of the
    task where the chain allows); the chain continues from the written value.

    Labels: ``toy.step_is_correct`` of each arithmetic line (a local check, so it is learnable from
    the line alone); the ``\\boxed{}`` line is unlabelled (NaN). outcome: the boxed value is right.
    Redundant re-statements appear as in the task (``spec.redundant_step_prob``), with their line's
    label. Deterministic in (split, size, seed).
    """
    rng = random.Random(f"rlreward-toy-steps/seed={seed}/split={split}")
    out = []
    for row in toy.generate(split, size, seed=seed, spec=spec):
        problem = row.problem
        lines, labels = [], []
        value = problem.start
        for delta in problem.deltas:
            result = value + delta
            if rng.random() < error_prob:
                # In range if possible (after an earlier error the chain may have left it).
                offsets = (
                    [o for o in _OFFSETS if 0 <= result + o <= spec.max_value]
                    or [o for o in _OFFSETS if result + o >= 0]
                    or list(_OFFSETS)
                )
                result += rng.choice(offsets)
            line = toy.format_step(value, delta, result)
            repeats = 2 if rng.random() < spec.redundant_step_prob else 1
            lines += [line] * repeats
            labels += [float(toy.step_is_correct(line))] * repeats
            value = result
        lines.append(toy.boxed(value))
        labels.append(math.nan)
        out.append(
            StepLabelled(
                problem.question,
                lines,
                labels,
                answer=str(problem.answer),
                outcome=float(value == problem.answer),
                id=row.id,
            )
        )
    return out
