"""Success reward: is a model's final answer mathematically equal to the reference answer?

Grading is a host-side text layer (STYLE.md §10): it turns responses into one bool per response,
which the PPO loop places on the last response token as the success reward.

A check goes through three stages, cheapest first, and stops at the first that can decide:

1. ``extract_answer`` finds the final answer: the last ``\\boxed``/``\\fbox``, else GSM8K's
   ``#### x``, else "the answer is x". No answer, no reward.
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

Timeouts. ``is_correct`` runs in the calling process. On the main thread it arms a ``SIGALRM``
deadline (``DEFAULT_TIMEOUT_S``) around the check. No signal reaches other threads, so there the
pre-screens are its only bound: the known pathological inputs are refused, but a legitimately heavy
symbolic comparison can still take tens of seconds. math-verify's own timeouts are disabled because
they also use ``signal.alarm`` (they raise off the main thread and would cancel our deadline).
``Verifier`` / ``is_correct_batch`` give the hard guarantee: comparisons run in spawned worker
processes, and a worker that misses its deadline is killed and replaced, so it cannot wedge later
batches.
"""

from __future__ import annotations

import collections
import contextlib
import dataclasses
import logging
import multiprocessing
import multiprocessing.connection
import os
import signal
import threading
import time
from collections.abc import Iterator, Sequence

import math_verify
import numpy as np

from rewards import _normalize

DEFAULT_TIMEOUT_S = 5.0
# A worker that has not answered this long after its own SIGALRM deadline is stuck in C code: kill
# it.
KILL_GRACE_S = 1.0
# A spawned worker imports SymPy and math-verify; on a loaded machine that can take a while.
WORKER_START_TIMEOUT_S = 120.0
# Address space a worker may add to its post-import size. SymPy expanding ``(x+1)^{99999}`` takes
# ~0.6 GB within a 5 s deadline and keeps growing; past the cap it gets a MemoryError instead of
# pushing the host (and the trainer beside it) out of memory.
WORKER_MEMORY_HEADROOM_BYTES = 2 << 30

_CORRECT, _WRONG, _TIMEOUT, _ERROR = "correct", "wrong", "timeout", "error"

logger = logging.getLogger(__name__)


class _MathVerifyTimeoutNotice(logging.Filter):
    """Drops math-verify's one-off "timeout is disabled" warning: this module provides the
    timeout."""

    def filter(self, record: logging.LogRecord) -> bool:
        return not record.getMessage().startswith("Timeout is disabled")


for _name in ("math_verify.parser", "math_verify.grader"):
    logging.getLogger(_name).addFilter(_MathVerifyTimeoutNotice())


def extract_answer(text: str) -> str | None:
    """The final answer of a model response or reference solution, or None when it states none.

    Priority: the content of the LAST ``\\boxed{...}`` / ``\\fbox{...}`` (braces matched by a scan,
    so nested and escaped braces work; ``\\boxed x`` without braces takes the next token); if that
    last box is unterminated or empty the answer is None (a truncated response gets no credit for an
    earlier, possibly retracted box). Without a box: the line after the last GSM8K ``####``. Else
    the sentence after the last "answer is" (case-insensitive, so also "The final answer is x"),
    without its final period and ``$`` signs.
    """
    _require_str("text", text)
    return _normalize.extract(text)


def is_correct(response: str, answer: str) -> bool:
    """True when the final answer extracted from ``response`` equals the reference ``answer``.

    ``answer`` is a bare answer ("18", "\\frac{1}{2}"); one containing ``\\boxed`` or ``####`` is
    extracted first. A response without an extractable answer is wrong. Never raises on any pair of
    strings, never runs model text as code; see the module docstring for timeouts.
    """
    _require_str("response", response)
    _require_str("answer", answer)
    return _grade(response, answer, DEFAULT_TIMEOUT_S) == _CORRECT


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Verdicts of one batch, in input order. Timeouts and errors count as wrong."""

    correct: list[bool]
    num_timeouts: int
    num_errors: int

    @property
    def rewards(self) -> np.ndarray:
        """The success rewards, 1.0 for correct and 0.0 otherwise, float32 ``[B]``."""
        return np.asarray(self.correct, dtype=np.float32)


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
    _check_batch_args(responses, answers)
    if not responses:
        return BatchResult(correct=[], num_timeouts=0, num_errors=0)
    if num_workers is None:
        num_workers = min(len(responses), _available_cpus())
    with Verifier(num_workers, timeout_s=timeout_s) as verifier:
        return verifier.check_batch(responses, answers)


class Verifier:
    """A reusable pool of worker processes that grade answers under a hard per-answer timeout.

    Workers are started with ``spawn``: a fresh interpreter, never a ``fork`` of a parent that may
    hold JAX/XLA threads (forking those can deadlock the child). Each worker serves one check at a
    time over its own pipe, so the parent knows exactly which worker is stuck on which answer: a
    worker that misses its deadline by ``KILL_GRACE_S`` is killed and replaced, the answer scores 0
    and counts as a timeout, and the rest of the batch goes on on the other workers. Inside a
    worker, a SIGALRM deadline ends slow Python-level checks without the cost of a restart.

    As with any ``spawn`` user, a script that creates one must guard its entry point with
    ``if __name__ == "__main__":``. Use as a context manager or call ``close()``.
    """

    def __init__(
        self, num_workers: int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if num_workers is None:
            num_workers = _available_cpus()
        if not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        _check_timeout(timeout_s)
        self._timeout_s = float(timeout_s)
        self._context = multiprocessing.get_context("spawn")
        self._workers = [self._start_worker() for _ in range(num_workers)]
        self._closed = False

    @property
    def worker_pids(self) -> list[int]:
        """Process ids of the current workers (they change when a stuck worker is replaced)."""
        return [worker.process.pid for worker in self._workers]

    def check_batch(
        self, responses: Sequence[str], answers: Sequence[str], *, timeout_s: float | None = None
    ) -> BatchResult:
        """``is_correct(responses[i], answers[i])`` for every i, with at most ``timeout_s`` per
        check.

        Answers are extracted here, in linear-time string scans, so workers receive only the two
        final answers: messages stay far below a pipe's buffer and a send never blocks. Pairs with
        an answer over ``MAX_ANSWER_CHARS`` are string comparisons only and are decided here too.
        """
        if self._closed:
            raise RuntimeError("check_batch called on a closed Verifier")
        _check_batch_args(responses, answers)
        timeout_s = self._timeout_s if timeout_s is None else _check_timeout(timeout_s)
        outcomes: list[str | None] = [None] * len(responses)
        final_answers = [_final_answers(r, a) for r, a in zip(responses, answers)]
        pending = collections.deque()
        for index, pair in enumerate(final_answers):
            if pair is None:
                outcomes[index] = _WRONG
            elif max(map(len, pair)) > _normalize.MAX_ANSWER_CHARS:
                outcomes[index] = _CORRECT if _answers_equal(*pair) else _WRONG
            else:
                pending.append(index)
        while pending or any(worker.task is not None for worker in self._workers):
            for worker in self._workers:
                if worker.ready and worker.task is None and not worker.failed and pending:
                    index = pending.popleft()
                    if not worker.assign(
                        index,
                        (index, *final_answers[index], timeout_s),
                        deadline=time.monotonic() + timeout_s + KILL_GRACE_S,
                    ):
                        pending.appendleft(index)
            multiprocessing.connection.wait(
                [w.conn for w in self._workers], timeout=self._seconds_to_next_deadline()
            )
            for slot, worker in enumerate(self._workers):
                replacement = self._poll(worker, outcomes)
                if replacement is not None:
                    self._workers[slot] = replacement
        return BatchResult(
            correct=[outcome == _CORRECT for outcome in outcomes],
            num_timeouts=outcomes.count(_TIMEOUT),
            num_errors=outcomes.count(_ERROR),
        )

    def close(self) -> None:
        """Stops the workers; idempotent."""
        if self._closed:
            return
        self._closed = True
        for worker in self._workers:
            worker.stop()

    def __enter__(self) -> Verifier:
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def _start_worker(self) -> _Worker:
        parent_conn, child_conn = self._context.Pipe(duplex=True)
        process = self._context.Process(
            target=_worker_main, args=(child_conn,), name="rewards.verify worker", daemon=True
        )
        process.start()
        child_conn.close()
        return _Worker(process=process, conn=parent_conn, started=time.monotonic())

    def _seconds_to_next_deadline(self) -> float:
        now = time.monotonic()
        deadlines = [
            w.deadline if w.ready else w.started + WORKER_START_TIMEOUT_S
            for w in self._workers
            if w.task is not None or not w.ready
        ]
        return max(0.0, min(deadlines) - now) if deadlines else 0.0

    def _poll(self, worker: _Worker, outcomes: list[str | None]) -> _Worker | None:
        """Takes a worker's message, if any, and replaces the worker if it died or overran.

        Returns the replacement, or None when the worker stays. A worker that dies before it is
        ready means the environment is broken (e.g. an import fails), so that raises instead.
        """
        message = worker.receive()
        if message == "ready":
            worker.ready = True
        elif message is not None:
            index, outcome = message
            outcomes[index] = outcome
            worker.task = None
        dead = worker.failed or not worker.process.is_alive()
        overdue = worker.overdue()
        if not dead and not overdue:
            return None
        if not worker.ready:
            worker.kill()
            raise RuntimeError(
                f"a verifier worker failed to start within {WORKER_START_TIMEOUT_S} s "
                f"(exit code {worker.process.exitcode})"
            )
        if worker.task is not None:
            outcomes[worker.task] = _ERROR if dead else _TIMEOUT
            logger.warning(
                "verifier worker %s %s on answer %d; replacing it",
                worker.process.pid,
                "died" if dead else "timed out",
                worker.task,
            )
        worker.kill()
        return self._start_worker()


@dataclasses.dataclass
class _Worker:
    """Parent-side handle of one worker process and the check it is running."""

    process: multiprocessing.process.BaseProcess
    conn: multiprocessing.connection.Connection
    started: float
    ready: bool = False
    failed: bool = False
    task: int | None = None
    deadline: float = 0.0

    def assign(self, index: int, message: tuple[int, str, str, float], deadline: float) -> bool:
        """Sends a check; False (and the worker marked failed) when the worker is gone."""
        try:
            self.conn.send(message)
        except OSError:
            self.failed = True
            return False
        self.task, self.deadline = index, deadline
        return True

    def receive(self) -> object | None:
        """The worker's next message, or None when it has none (or is gone: then marked failed)."""
        try:
            return self.conn.recv() if self.conn.poll() else None
        except (EOFError, OSError):
            self.failed = True
            return None

    def overdue(self) -> bool:
        now = time.monotonic()
        if not self.ready:
            return now > self.started + WORKER_START_TIMEOUT_S
        return self.task is not None and now > self.deadline

    def kill(self) -> None:
        self.process.kill()
        self.process.join(timeout=5.0)
        self.conn.close()

    def stop(self) -> None:
        with contextlib.suppress(OSError):
            self.conn.send(None)
        self.process.join(timeout=1.0)
        if self.process.is_alive():
            self.process.kill()
            self.process.join(timeout=5.0)
        self.conn.close()


def _worker_main(conn: multiprocessing.connection.Connection) -> None:
    """Worker loop: warm up the parser, report ready, then grade one check per message until None.

    Ctrl-C reaches the whole process group; the parent handles it, so workers ignore SIGINT.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    _grade_answers("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", None)
    _cap_address_space(WORKER_MEMORY_HEADROOM_BYTES)
    conn.send("ready")
    while True:
        try:
            message = conn.recv()
        except EOFError:
            return
        if message is None:
            return
        index, predicted, reference, timeout_s = message
        try:
            outcome = _grade_answers(predicted, reference, timeout_s)
        except Exception:
            logger.exception("verifier check %d failed", index)
            outcome = _ERROR
        conn.send((index, outcome))


def _cap_address_space(headroom_bytes: int) -> None:
    """Limits this process's address space to its current size plus ``headroom_bytes`` (Linux)."""
    try:
        import resource

        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = current + headroom_bytes
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (ImportError, OSError, ValueError):
        logger.debug("cannot cap the verifier worker's memory", exc_info=True)


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

    def _raise(signum: int, frame: object) -> None:
        raise _DeadlineExceeded

    previous = signal.signal(signal.SIGALRM, _raise)
    signal.setitimer(signal.ITIMER_REAL, timeout_s)
    try:
        yield
    finally:
        try:
            signal.setitimer(signal.ITIMER_REAL, 0.0)
        finally:
            signal.signal(signal.SIGALRM, previous)


def _grade(response: str, answer: str, timeout_s: float | None) -> str:
    """The outcome of one check: correct, wrong or timeout."""
    pair = _final_answers(response, answer)
    return _WRONG if pair is None else _grade_answers(*pair, timeout_s)


def _final_answers(response: str, answer: str) -> tuple[str, str] | None:
    """The response's final answer and the reference's (extracted if it has a box or ``####``)."""
    predicted = _normalize.extract(response)
    if predicted is None:
        return None
    reference = answer
    if "\\boxed" in answer or "\\fbox" in answer or "####" in answer:
        reference = _normalize.extract(answer) or answer
    return predicted, reference


def _grade_answers(predicted: str, reference: str, timeout_s: float | None) -> str:
    try:
        with _deadline(timeout_s):
            return _CORRECT if _answers_equal(predicted, reference) else _WRONG
    except _DeadlineExceeded:
        return _TIMEOUT


def _answers_equal(predicted: str, reference: str) -> bool:
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


def _require_str(name: str, value: object) -> None:
    if not isinstance(value, str):
        raise TypeError(f"{name} must be a str, got {type(value).__name__}: {value!r:.80}")


def _check_timeout(timeout_s: float) -> float:
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def _check_batch_args(responses: Sequence[str], answers: Sequence[str]) -> None:
    if len(responses) != len(answers):
        raise ValueError(
            f"responses and answers differ in length: {len(responses)} != {len(answers)}"
        )
    for name, values in (("responses", responses), ("answers", answers)):
        for i, value in enumerate(values):
            _require_str(f"{name}[{i}]", value)


def _available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
