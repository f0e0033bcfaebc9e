"""The toy task of the embedded default: chains of small additions and subtractions, solved step by
step.

A CPU-sized stand-in for math word problems that keeps what matters for reward design: a response
is a sequence of checkable steps ending in a ``\\boxed{}`` answer the verifier can grade.

    question   Q: 7+5-3+8
    solution   7+5=12
               12-3=9
               12-3=9      <- a redundant step: an identical re-statement
               9+8=17
               \\boxed{17}

- A problem is a start value and 3-6 operations ``+d`` / ``-d`` with d in 1..9, every running value
  kept in 0..99. Only + and - are used: with them the flat question is unambiguous under the usual
  left-to-right reading (``*`` would need brackets or a precedence convention).
- Steps are separated by ``"\\n"`` (the task's step separator); each arithmetic step is one line
  ``a±d=r``; the last line is ``\\boxed{answer}``.
- Redundant steps are natural here: each arithmetic step of a solution is, with probability
  ``redundant_step_prob`` (default 0.15), immediately re-stated as an identical line, as real chains
  of thought re-state and check. This matters: a policy fine-tuned on perfectly regular solutions
  almost never writes an extra line, so it cannot discover that repeating correct steps raises a raw
  PRM's return; with re-statements in its data it does.
- Train and test are disjoint by construction: a problem belongs to the test side iff a hash of its
  question text falls in one of ``TEST_BUCKETS`` buckets, whatever the seed, so no seed's training
  data contains any seed's test problem. Each split is drawn from its own stream seeded by (seed,
  split), without repeats, and a larger size extends a smaller one (the first n rows do not depend
  on size).
"""

from __future__ import annotations

import dataclasses
import hashlib
import random
import re
from collections.abc import Sequence

QUESTION_PREFIX = "Q: "
STEP_SEPARATOR = "\n"
SPLITS = ("train", "test")
# One in TEST_BUCKETS of all problems (by question hash) is reserved for the test split.
TEST_BUCKETS = 10

_NUMBER = r"(0|[1-9]\d*)"
_STEP = re.compile(rf"(-?{_NUMBER})([+-]){_NUMBER}=(-?{_NUMBER})")
_BOXED = re.compile(rf"\\boxed\{{(-?{_NUMBER})\}}")
_QUESTION = re.compile(rf"{re.escape(QUESTION_PREFIX)}{_NUMBER}((?:[+-][1-9]\d*)+)")


@dataclasses.dataclass(frozen=True)
class ToySpec:
    """The family of problems and solutions; every field is validated with its name and value."""

    min_ops: int = 3
    max_ops: int = 6
    max_operand: int = 9
    max_value: int = 99
    redundant_step_prob: float = 0.15

    def __post_init__(self):
        for name in ("min_ops", "max_ops", "max_operand", "max_value"):
            value = getattr(self, name)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ToySpec.{name}={value!r}: must be an integer >= 1")
        if self.max_ops < self.min_ops:
            raise ValueError(f"ToySpec.max_ops={self.max_ops!r}: must be >= min_ops={self.min_ops}")
        if not 0.0 <= self.redundant_step_prob < 1.0:
            raise ValueError(
                f"ToySpec.redundant_step_prob={self.redundant_step_prob!r}: must be in [0, 1)"
            )


@dataclasses.dataclass(frozen=True)
class ToyProblem:
    """A start value and the signed operands applied to it in order (``deltas=(5, -3, 8)``)."""

    start: int
    deltas: tuple[int, ...]

    @property
    def question(self) -> str:
        return QUESTION_PREFIX + str(self.start) + "".join(f"{d:+d}" for d in self.deltas)

    @property
    def values(self) -> tuple[int, ...]:
        """Running values, start included: ``values[k]`` is the value after k operations."""
        values = [self.start]
        for d in self.deltas:
            values.append(values[-1] + d)
        return tuple(values)

    @property
    def answer(self) -> int:
        return self.values[-1]

    def step_line(self, k: int) -> str:
        """The correct text of step k (0-based): ``"12-3=9"``."""
        return format_step(self.values[k], self.deltas[k], self.values[k + 1])

    def solution(self, repeated: Sequence[bool] = ()) -> str:
        """The worked solution; step k is written twice where ``repeated[k]`` is true."""
        lines = []
        for k in range(len(self.deltas)):
            lines.append(self.step_line(k))
            if k < len(repeated) and repeated[k]:
                lines.append(self.step_line(k))
        lines.append(boxed(self.answer))
        return STEP_SEPARATOR.join(lines)


@dataclasses.dataclass(frozen=True)
class Step:
    """A parsed arithmetic step ``left±|delta|=result`` (as written, right or wrong)."""

    left: int
    delta: int
    result: int

    @property
    def is_correct(self) -> bool:
        return self.left + self.delta == self.result


@dataclasses.dataclass(frozen=True)
class ToyRow:
    """One generated example: its id, the problem, and its worked solution text."""

    id: str
    problem: ToyProblem
    solution: str


def format_step(left: int, delta: int, result: int) -> str:
    return f"{left}{delta:+d}={result}"


def boxed(value: int) -> str:
    return f"\\boxed{{{value}}}"


def parse_step(line: str) -> Step | None:
    """The arithmetic step on ``line``, or None when the line is not one (e.g. the ``\\boxed{}``
    line).

    Numbers must be written canonically (no leading zeros, no "+" sign, no spaces), the way the task
    writes them, so that "correct" means "what a correct solver of this task would write".
    """
    match = _STEP.fullmatch(line)
    if match is None:
        return None
    left, sign, operand, result = int(match[1]), match[3], int(match[4]), int(match[5])
    return Step(left, operand if sign == "+" else -operand, result)


def step_is_correct(line: str) -> bool:
    """True iff ``line`` is one arithmetic step ``a+d=r`` / ``a-d=r`` whose arithmetic is right.

    This judges a line in isolation: it says nothing about whether the step belongs to the problem's
    chain (``rl.data.toy_oracle`` does that). The ``\\boxed{}`` line is not an arithmetic step:
    False.
    """
    step = parse_step(line)
    return step is not None and step.is_correct


def boxed_value(line: str) -> int | None:
    """The integer in a ``\\boxed{n}`` line, or None."""
    match = _BOXED.fullmatch(line)
    return int(match[1]) if match else None


def parse_question(question: str) -> ToyProblem:
    """The problem a question text states; ``ValueError`` naming the text when it is not one."""
    match = _QUESTION.fullmatch(question)
    if match is None:
        raise ValueError(
            f"not a toy question: {question!r} (expected e.g. {QUESTION_PREFIX + '7+5-3'!r})"
        )
    deltas = tuple(int(d) for d in re.findall(r"[+-]\d+", match[2]))
    return ToyProblem(int(match[1]), deltas)


def is_test_problem(problem: ToyProblem) -> bool:
    """Whether the problem is reserved for the test split (a seed-independent hash of its
    question)."""
    digest = hashlib.sha256(problem.question.encode()).digest()
    return int.from_bytes(digest[:8], "big") % TEST_BUCKETS == 0


def sample_problem(rng: random.Random, spec: ToySpec) -> ToyProblem:
    """A uniformly random length in [min_ops, max_ops], start in [0, max_value], and operations
    drawn uniformly among those that keep the running value in [0, max_value]."""
    value = rng.randint(0, spec.max_value)
    start, deltas = value, []
    for _ in range(rng.randint(spec.min_ops, spec.max_ops)):
        choices = [d for d in range(1, spec.max_operand + 1) if value + d <= spec.max_value]
        choices += [-d for d in range(1, spec.max_operand + 1) if value - d >= 0]
        delta = rng.choice(choices)
        deltas.append(delta)
        value += delta
    return ToyProblem(start, tuple(deltas))


def generate(split: str, size: int, *, seed: int = 0, spec: ToySpec = ToySpec()) -> list[ToyRow]:
    """``size`` distinct problems of ``split`` with their solutions, deterministic in (seed, split,
    spec).

    Raises ``ValueError`` if the spec's problem space cannot supply ``size`` distinct problems.
    """
    if split not in SPLITS:
        raise ValueError(f"split={split!r}: must be one of {SPLITS}")
    if not isinstance(size, int) or size < 0:
        raise ValueError(f"size={size!r}: must be an integer >= 0")
    # A string seed is hashed with SHA-512 by random.Random: stable across Python versions and runs.
    rng = random.Random(f"rlreward-toy/seed={seed}/split={split}")
    want_test = split == "test"
    rows, seen = [], set()
    max_draws = 100 * size + 10_000
    for _ in range(max_draws):
        if len(rows) == size:
            break
        problem = sample_problem(rng, spec)
        # The solution's randomness is drawn for every candidate, so rejections never shift it.
        repeated = [rng.random() < spec.redundant_step_prob for _ in problem.deltas]
        if is_test_problem(problem) != want_test or problem.question in seen:
            continue
        seen.add(problem.question)
        rows.append(ToyRow(f"toy/{split}/{len(rows)}", problem, problem.solution(repeated)))
    if len(rows) < size:
        raise ValueError(
            f"split={split!r} size={size}: found only {len(rows)} distinct problems in "
            f"{max_draws} draws; the spec {spec} has too few problems for this size"
        )
    return rows
