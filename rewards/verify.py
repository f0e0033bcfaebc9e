"""Success reward: is a model's final answer mathematically equal to the reference answer?

Grading is a host-side text layer: it turns responses into one bool per response, which the PPO
loop places on the last response token as the success reward. This module is its public interface:

    is_correct(response, answer)            # one check, in this process
    extract_answer(text)                    # the final answer a check compares, or None
    with Verifier(num_workers=4) as v:      # a pool with a hard per-answer timeout
        v.check_batch(responses, answers).rewards
    is_correct_batch(responses, answers)    # the same through a temporary pool

How a check decides (extraction, normalization, math-verify) and why model text is never run as
code: ``rewards.grading``. The worker processes and their timeouts: ``rewards.verifier_pool``.

Timeouts. ``is_correct`` runs in the calling process. On the main thread it arms a ``SIGALRM``
deadline (``DEFAULT_TIMEOUT_S``) around the check; on other threads the pre-screens of
``rewards.grading`` are its only bound. ``Verifier`` / ``is_correct_batch`` give the hard guarantee:
comparisons run in spawned worker processes, and a worker that misses its deadline is killed and
replaced, so it cannot wedge later batches.
"""

from __future__ import annotations

from collections.abc import Sequence

from rewards import _normalize
from rewards.grading import CORRECT, DEFAULT_TIMEOUT_S, grade, require_str
from rewards.verifier_pool import (
    KILL_GRACE_S,
    WORKER_MEMORY_HEADROOM_BYTES,
    WORKER_START_TIMEOUT_S,
    BatchResult,
    Verifier,
    available_cpus,
    check_batch_args,
)

__all__ = [
    "DEFAULT_TIMEOUT_S",
    "KILL_GRACE_S",
    "WORKER_MEMORY_HEADROOM_BYTES",
    "WORKER_START_TIMEOUT_S",
    "BatchResult",
    "Verifier",
    "extract_answer",
    "is_correct",
    "is_correct_batch",
]


def extract_answer(text: str) -> str | None:
    """The final answer of a model response or reference solution, or None when it states none.

    Priority: the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched by a scan,
    so nested and escaped braces work; ``\\boxed x`` without braces takes the next token); if that
    last box is unterminated or empty the answer is None (a truncated response gets no credit for an
    earlier, possibly retracted box). Without a box: the line after the last GSM8K ``####``. Else
    the sentence after the last "answer is" (case-insensitive, so also "The final answer is x"),
    without its final period and ``$`` signs.
    """
    require_str("text", text)
    return _normalize.extract(text)


def is_correct(response: str, answer: str) -> bool:
    """True when the final answer extracted from ``response`` equals the reference ``answer``.

    ``answer`` is a bare answer ("18", "\\frac{1}{2}"); one containing ``\\boxed`` or ``####`` is
    extracted first. A response without an extractable answer is wrong. Never raises on any pair of
    strings, never runs model text as code; see the module docstring for timeouts.
    """
    require_str("response", response)
    require_str("answer", answer)
    return grade(response, answer, DEFAULT_TIMEOUT_S) == CORRECT


def is_correct_batch(
    responses: Sequence[str],
    answers: Sequence[str],
    *,
    timeout_s: float = DEFAULT_TIMEOUT_S,
    num_workers: int | None = None,
) -> BatchResult:
    """``is_correct`` over a batch in a temporary process pool with a hard per-answer timeout.

    Pays process start-up (about a second per worker); loops should hold a ``Verifier`` instead.
    """
    check_batch_args(responses, answers)
    if not responses:
        return BatchResult(correct=[], num_timeouts=0, num_errors=0, num_crashes=0, num_checked=0)
    if num_workers is None:
        num_workers = min(len(responses), available_cpus())
    with Verifier(num_workers, timeout_s=timeout_s) as verifier:
        return verifier.check_batch(responses, answers)
