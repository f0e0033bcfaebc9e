"""One answer check in the calling process: extract, normalize, compare, under a SIGALRM deadline.

A check goes through three stages, cheapest first, and stops at the first that can decide:

1. ``_normalize.extract`` (the rules: ``rewards.verify.extract_answer``) finds the final answer:
   the last ``\\boxed``/``\\fbox``, else GSM8K's ``#### x``, else "the answer is x". No answer, no
   reward.
2. ``rewards._normalize`` canonicalizes both answers (percent, degrees, units, thousands separators,
   ``\\dfrac``, ``x = 5``, ``(A)``, text case; the policy is documented there) and decides equal
   strings, pairs of plain numbers (exactly, or to 6 decimals when one is a decimal) and pairs of
   plain-text answers.
3. Everything else goes to math-verify (``math_verify.parse`` on the LaTeX, ``math_verify.verify``),
   which handles fractions vs decimals, sqrt/pi expressions, intervals, tuples, sets and equations.

Safety. Model text is never evaluated as Python: stage 3 uses only math-verify's ANTLR LaTeX parser
(``sympy.sympify``, which calls ``eval``, is never reached with model text). Answers longer than
``_normalize.MAX_ANSWER_CHARS`` (1000) and answers that would make SymPy build astronomically large
integers (power towers such as ``9^{9^{9^{9}}}``, huge factorials, deep nesting, unevaluated sums;
see ``_normalize.symbolic_hazard``) are compared only as normalized strings, because Python
big-integer arithmetic runs in C where no signal can interrupt it.

Deadline. ``grade`` arms a ``SIGALRM`` deadline around the comparison on the main thread. No signal
reaches other threads, so there the pre-screens are its only bound: the known pathological inputs
are refused, but a legitimately heavy symbolic comparison can still take tens of seconds.
math-verify's own timeouts are disabled because they also use ``signal.alarm`` (they raise off the
main thread and would cancel our deadline). While armed, the deadline re-fires every 50 ms and
owns ``sys.unraisablehook``: an alarm lost in a finalizer is not reported, and the caller's hook
runs with alarms held off. The hard guarantee is ``rewards.verifier_pool``'s: it
runs these same functions in worker processes it can kill.

Outcomes are strings (``CORRECT``, ``WRONG``, ``TIMEOUT``, ``ERROR``) so worker processes can send
them over a pipe; ``rewards.verify`` is the public interface over both modules.
"""

from __future__ import annotations

import contextlib
import logging
import signal
import sys
import threading
from collections.abc import Iterator

import math_verify

from rewards import _normalize

DEFAULT_TIMEOUT_S = 5.0

CORRECT, WRONG, TIMEOUT, ERROR = "correct", "wrong", "timeout", "error"
REARM_S = 0.05  # the deadline fires again this often until its block has exited

logger = logging.getLogger(__name__)


class _MathVerifyTimeoutNotice(logging.Filter):
    """Drops math-verify's one-off "timeout is disabled" warning: this module provides the
    timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_MathVerifyTimeoutNotice())


class _DeadlineExceeded(BaseException):
    """Raised by SIGALRM inside a check. A BaseException, so the ``except Exception`` handlers in
    math-verify and SymPy cannot swallow it."""


@contextlib.contextmanager
def _deadline(timeout_s: float | None) -> Iterator[None]:
    """Raises ``_DeadlineExceeded`` in the block after ``timeout_s`` seconds, where signals allow.

    Only the main thread can receive signals; elsewhere, and when the caller already runs its own
    interval timer (which we must not clobber), the block runs without a deadline.
    """
    usable = (
        timeout_s is not None
        and hasattr(signal, "SIGALRM")
        and threading.current_thread() is threading.main_thread()
        and signal.getitimer(signal.ITIMER_REAL) == (0.0, 0.0)
    )
    if not usable:
        yield
        return

    reporting = False  # True while the previous unraisable hook runs: alarms wait for the re-arm

    def _raise(signum: int, frame: object) -> None:
        if not reporting:
            raise _DeadlineExceeded

    def _report(unraisable: sys.UnraisableHookArgs) -> None:
        # A deadline that landed in a finalizer is dropped here silently: the re-armed alarm
        # raises it again where it propagates. Anything else goes to the previous hook with the
        # alarm held off, so it cannot land in that hook either (it did in pytest's, which then
        # failed the test with "Failed to process unraisable exception").
        nonlocal reporting
        if isinstance(unraisable.exc_value, _DeadlineExceeded):
            return
        reporting = True
        try:
            previous_hook(unraisable)
        finally:
            reporting = False

    previous = signal.signal(signal.SIGALRM, _raise)
    previous_hook, sys.unraisablehook = sys.unraisablehook, _report
    # Then every 50 ms until the block exits: an exception raised while the interpreter runs a
    # garbage-collector callback or a finalizer is reported and dropped, not propagated (seen
    # with hypothesis's gc timing hook installed), so one alarm alone can be lost.
    signal.setitimer(signal.ITIMER_REAL, timeout_s, REARM_S)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
        finally:
            signal.signal(signal.SIGALRM, previous)
            sys.unraisablehook = previous_hook


def grade(response: str, answer: str, timeout_s: float | None) -> str:
    """The outcome of one check: correct, wrong or timeout."""
    pair = final_answers(response, answer)
    return WRONG if pair is None else grade_answers(*pair, timeout_s)


def final_answers(response: str, answer: str) -> tuple[str, str] | None:
    """The response's final answer and the reference's (extracted if it has a box or ``####``)."""
    predicted = _normalize.extract(response)
    if predicted is None:
        return None
    reference = answer
    if "\\boxed" in answer or "\\fbox" in answer or "####" in answer:
        reference = _normalize.extract(answer) or answer
    return predicted, reference


def grade_answers(predicted: str, reference: str, timeout_s: float | None) -> str:
    try:
        with _deadline(timeout_s):
            return CORRECT if answers_equal(predicted, reference) else WRONG
    except _DeadlineExceeded:
        return TIMEOUT


def answers_equal(predicted: str, reference: str) -> bool:
    """Stages 2 and 3 of the module docstring on two extracted answers."""
    predicted, reference = _normalize.normalize(predicted), _normalize.normalize(reference)
    if "=" not in reference:
        predicted = _normalize.drop_assignment(predicted)
    if "=" not in predicted:
        reference = _normalize.drop_assignment(reference)
    if _normalize.key(predicted) == _normalize.key(reference):
        return True
    predicted_number, reference_number = (
        _normalize.as_number(predicted),
        _normalize.as_number(reference),
    )
    if predicted_number is not None and reference_number is not None:
        return _normalize.numbers_equal(predicted_number, reference_number)
    if _normalize.is_plain_text(predicted) and _normalize.is_plain_text(reference):
        return False
    if _normalize.symbolic_hazard(predicted) or _normalize.symbolic_hazard(reference):
        return False
    return _symbolically_equal(predicted, reference)


def _symbolically_equal(predicted: str, reference: str) -> bool:
    """math-verify on two pre-screened LaTeX answers; parser failures count as not equal."""
    config = [math_verify.LatexExtractionConfig(normalization_config=_LATEX_NORMALIZATION)]
    try:
        gold = math_verify.parse(f"${reference}$", extraction_config=config, parsing_timeout=None)
        target = math_verify.parse(f"${predicted}$", extraction_config=config, parsing_timeout=None)
        return bool(gold and target and math_verify.verify(gold, target, timeout_seconds=None))
    except Exception:
        logger.debug("math-verify failed", exc_info=True)
        return False


# math-verify's default LaTeX normalization minus ``units``: that rule deletes any trailing
# ``\text{..}``/``\mathbf{..}`` and one-letter "units", so ``5t`` would equal ``5`` and
# ``2\mathbf{i}+3\mathbf{j}`` would equal ``2``. Units are stripped, more narrowly, by
# ``_normalize``.
_LATEX_NORMALIZATION = math_verify.LatexNormalizationConfig(
    basic_latex=True, units=False, malformed_operators=True, nits=True, boxed="all", equations=False
)


def require_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r:.80}")
