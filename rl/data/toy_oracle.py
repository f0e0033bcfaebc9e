"""Exact ground truth for partial toy solutions: is a prefix on track, and how likely is it to
succeed.

Why: an automatic step labeller (Math-Shepherd style) estimates, by sampling completions, the chance
that a solution prefix still ends in the right answer. Testing one needs a task whose true chances
are known. The toy task provides them for a simple, fully specified solver:

The **slipping solver** continues a prefix one operation at a time. Each remaining step it writes
``a±d=r`` from the last value it wrote, with ``r`` correct except, with probability ``slip_prob``
independently per step, one too large; then it writes ``\\boxed{}`` of its last value. Slips only
ever add, so a prefix whose written value is ``o`` off the true running value (``o <= 0``) succeeds
iff exactly ``-o`` of the ``n`` remaining steps slip:

    P(success | prefix) = C(n, -o) * p^(-o) * (1 - p)^(n + o)      (0 when o > 0 or -o > n)

and a prefix that already boxed an answer succeeds iff that answer is right. ``complete`` samples
the solver, so a labeller's Monte-Carlo estimate can be compared with ``success_probability``.

Prefixes are lists of lines (the task's steps). A line may be: the next operation of the chain
applied to the last written value (its result possibly wrong), an identical re-statement of the
previous line, or the final ``\\boxed{n}``. Anything else "derails" the prefix: ``on_track`` is then
False and the solver (hence ``success_probability`` / ``complete``) is undefined, which raises
``ValueError``.
"""

from __future__ import annotations

import dataclasses
import math
import random
from collections.abc import Sequence

from rl.data import toy


@dataclasses.dataclass(frozen=True)
class PrefixState:
    """Where a prefix stands on the problem's chain.

    steps_done: operations of the chain written so far; value: the last value written;
    boxed: the boxed answer if the prefix has ended; derailed_at: index of the first line that is
    not a chain step, repeat or final box (None if there is none).
    """

    steps_done: int
    value: int
    boxed: int | None = None
    derailed_at: int | None = None


def follow(problem: toy.ToyProblem, lines: Sequence[str]) -> PrefixState:
    """Reads ``lines`` against the problem's chain (see the module docstring for what a line may
    be)."""
    steps_done, value = 0, problem.start
    for i, line in enumerate(lines):
        boxed = toy.boxed_value(line)
        if boxed is not None and i == len(lines) - 1:
            return PrefixState(steps_done, value, boxed=boxed)
        if i > 0 and line == lines[i - 1] and toy.parse_step(line) is not None:
            continue
        step = toy.parse_step(line)
        if (
            step is None
            or steps_done == len(problem.deltas)
            or step.left != value
            or step.delta != problem.deltas[steps_done]
        ):
            return PrefixState(steps_done, value, derailed_at=i)
        steps_done, value = steps_done + 1, step.result
    return PrefixState(steps_done, value)


def on_track(problem: toy.ToyProblem, lines: Sequence[str]) -> bool:
    """True iff every line follows the chain with correct arithmetic (repeats allowed), and a boxed
    answer, if present, is the right one: a prefix from which a correct solver still succeeds."""
    state = follow(problem, lines)
    if state.derailed_at is not None or state.value != problem.values[state.steps_done]:
        return False
    return state.boxed is None or state.boxed == problem.answer


def success_probability(problem: toy.ToyProblem, lines: Sequence[str], slip_prob: float) -> float:
    """Exact probability that the slipping solver, continuing ``lines``, boxes the right answer."""
    _check_prob(slip_prob)
    state = _followed(problem, lines)
    if state.boxed is not None:
        return float(state.boxed == problem.answer)
    slips_needed = problem.values[state.steps_done] - state.value
    remaining = len(problem.deltas) - state.steps_done
    if not 0 <= slips_needed <= remaining:
        return 0.0
    return (
        math.comb(remaining, slips_needed)
        * slip_prob**slips_needed
        * (1.0 - slip_prob) ** (remaining - slips_needed)
    )


def complete(
    problem: toy.ToyProblem, lines: Sequence[str], slip_prob: float, rng: random.Random
) -> list[str]:
    """The slipping solver's continuation of ``lines`` (the new lines only, ending with the box)."""
    _check_prob(slip_prob)
    state = _followed(problem, lines)
    if state.boxed is not None:
        return []
    value, new_lines = state.value, []
    for delta in problem.deltas[state.steps_done :]:
        result = value + delta + (1 if rng.random() < slip_prob else 0)
        new_lines.append(toy.format_step(value, delta, result))
        value = result
    new_lines.append(toy.boxed(value))
    return new_lines


def _followed(problem: toy.ToyProblem, lines: Sequence[str]) -> PrefixState:
    state = follow(problem, lines)
    if state.derailed_at is not None:
        i = state.derailed_at
        raise ValueError(
            f"line {i} {lines[i]!r} of the prefix does not follow the chain of "
            f"{problem.question!r}; the slipping solver is undefined there"
        )
    return state


def _check_prob(slip_prob: float) -> None:
    if not 0.0 <= slip_prob <= 1.0:
        raise ValueError(f"slip_prob={slip_prob!r}: must be in [0, 1]")
