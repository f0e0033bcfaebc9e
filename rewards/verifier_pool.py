"""``Verifier``: a pool of worker processes that grade answers under a hard per-answer timeout.

Each worker runs ``rewards.grading`` on one check at a time, with its own SIGALRM deadline for slow
Python-level comparisons; a worker that misses that deadline by ``KILL_GRACE_S`` (stuck in C code,
where no signal can interrupt it) is killed and replaced, so it cannot wedge later batches. Workers
are capped in address space so a runaway SymPy expansion fails inside them, not on the host.

A worker that dies (killed, segfault, out of memory) is replaced too, and the answer it was
grading scores 0 and counts as a crash: a batch goes on whatever happens to its workers, and
``BatchResult`` says how many answers each kind of failure cost, so that a caller can tell a
verifier that failed on every answer (``all_failed``) from a policy that answered nothing right.
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
import time
from collections.abc import Sequence

import numpy as np

from rewards import _normalize
from rewards.grading import (
    CORRECT,
    DEFAULT_TIMEOUT_S,
    ERROR,
    TIMEOUT,
    WRONG,
    answers_equal,
    final_answers,
    grade_answers,
    require_str,
)

try:  # POSIX only; without it a worker runs uncapped (see _cap_address_space).
    import resource
except ImportError:
    resource = None

CRASH = "crash"  # an outcome: the worker died while grading the answer
# A worker that has not answered this long after its own SIGALRM deadline is stuck in C code: kill
# it.
KILL_GRACE_S = 1.0
# A spawned worker imports SymPy and math-verify; on a loaded machine that can take a while.
WORKER_START_TIMEOUT_S = 120.0
# Address space a worker may add to its post-import size. SymPy expanding ``(x+1)^{99999}`` takes
# ~0.6 GB within a 5 s deadline and keeps growing; past the cap it gets a MemoryError instead of
# pushing the host (and the trainer beside it) out of memory.
WORKER_MEMORY_HEADROOM_BYTES = 2 << 30

logger = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class BatchResult:
    """Verdicts of one batch, in input order. Timeouts, crashes and errors count as wrong.

    ``num_checked``: the answers sent to the workers (a response without a final answer, or with
    one too long to compare symbolically, is decided in the parent and cannot fail);
    ``num_timeouts`` / ``num_crashes`` / ``num_errors``: those of them whose worker overran its
    deadline / died / raised.
    """

    correct: list[bool]
    num_timeouts: int
    num_errors: int
    num_crashes: int = 0
    num_checked: int = 0

    @property
    def rewards(self) -> np.ndarray:
        """The success rewards, 1.0 for correct and 0.0 otherwise, float32 ``[B]``."""
        return np.asarray(self.correct, dtype=np.float32)

    @property
    def num_failed(self) -> int:
        return self.num_timeouts + self.num_crashes + self.num_errors

    @property
    def all_failed(self) -> bool:
        """The workers failed on every answer they were given (and were given at least one)."""
        return self.num_checked > 0 and self.num_failed == self.num_checked


class Verifier:
    """A reusable pool of worker processes that grade answers under a hard per-answer timeout.

    Workers are started with ``spawn``: a fresh interpreter, never a ``fork`` of a parent that may
    hold JAX/XLA threads (forking those can deadlock the child). Each worker serves one check at a
    time over its own pipe, so the parent knows exactly which worker is stuck on which answer: a
    worker that misses its deadline by ``KILL_GRACE_S`` is killed and replaced, the answer scores 0
    and counts as a timeout, and the rest of the batch goes on on the other workers; a worker that
    dies mid-check is replaced the same way and its answer counts as a crash (one found dead while
    idle is replaced before it is given an answer). Inside a worker, a SIGALRM deadline ends slow
    Python-level checks without the cost of a restart.

    As with any ``spawn`` user, a script that creates one must guard its entry point with
    ``if __name__ == "__main__":``. Use as a context manager or call ``close()``.
    """

    def __init__(
        self, num_workers: int | None = None, *, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        if num_workers is None:
            num_workers = available_cpus()
        if not isinstance(num_workers, int) or num_workers < 1:
            raise ValueError(f"num_workers must be a positive int, got {num_workers!r}")
        check_timeout(timeout_s)
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
        check_batch_args(responses, answers)
        timeout_s = self._timeout_s if timeout_s is None else check_timeout(timeout_s)
        outcomes: list[str | None] = [None] * len(responses)
        answer_pairs = [final_answers(r, a) for r, a in zip(responses, answers, strict=True)]
        pending = collections.deque()
        for index, pair in enumerate(answer_pairs):
            if pair is None:
                outcomes[index] = WRONG
            elif max(map(len, pair)) > _normalize.MAX_ANSWER_CHARS:
                outcomes[index] = CORRECT if answers_equal(*pair) else WRONG
            else:
                pending.append(index)
        num_checked = len(pending)
        while pending or any(worker.task is not None for worker in self._workers):
            for worker in self._workers:
                if worker.ready and worker.task is None and not worker.failed and pending:
                    index = pending.popleft()
                    if not worker.assign(
                        index,
                        (index, *answer_pairs[index], timeout_s),
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
            correct=[outcome == CORRECT for outcome in outcomes],
            num_timeouts=outcomes.count(TIMEOUT),
            num_errors=outcomes.count(ERROR),
            num_crashes=outcomes.count(CRASH),
            num_checked=num_checked,
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
            outcomes[worker.task] = CRASH if dead else TIMEOUT
            logger.warning(
                "verifier worker %s %s on answer %d (it scores 0); replacing it",
                worker.process.pid,
                f"died (exit code {worker.process.exitcode})" if dead else "timed out",
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
        if not self.process.is_alive():  # died while idle: no answer of ours was lost
            self.failed = True
            return False
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

    Ctrl-C reaches the whole process group; the parent handles it, so workers ignore SIGINT. A
    parent that dies (SIGKILL) closes the pipe: the worker then exits quietly instead of printing a
    traceback per worker.
    """
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    grade_answers("\\sqrt{2}/2", "\\frac{\\sqrt{2}}{2}", None)
    _cap_address_space(WORKER_MEMORY_HEADROOM_BYTES)
    try:
        conn.send("ready")
    except OSError:  # the parent is gone (broken pipe)
        return
    while True:
        try:
            message = conn.recv()
        except (EOFError, OSError):  # the parent is gone (OSError: connection reset)
            return
        if message is None:
            return
        index, predicted, reference, timeout_s = message
        try:
            outcome = grade_answers(predicted, reference, timeout_s)
        except Exception:
            logger.exception("verifier check %d failed", index)
            outcome = ERROR
        try:
            conn.send((index, outcome))
        except OSError:  # the parent is gone (broken pipe)
            return


def _cap_address_space(headroom_bytes: int) -> None:
    """Limits this process's address space to its current size plus ``headroom_bytes`` (Linux)."""
    if resource is None:
        logger.debug("cannot cap the verifier worker's memory: no resource module")
        return
    try:
        with open("/proc/self/statm") as f:
            current = int(f.read().split()[0]) * os.sysconf("SC_PAGE_SIZE")
        _, hard = resource.getrlimit(resource.RLIMIT_AS)
        soft = current + headroom_bytes
        if hard != resource.RLIM_INFINITY:
            soft = min(soft, hard)
        resource.setrlimit(resource.RLIMIT_AS, (soft, hard))
    except (OSError, ValueError):
        logger.debug("cannot cap the verifier worker's memory", exc_info=True)


def check_timeout(timeout_s: float) -> float:
    if not isinstance(timeout_s, (int, float)) or not timeout_s > 0:
        raise ValueError(f"timeout_s must be a positive number of seconds, got {timeout_s!r}")
    return float(timeout_s)


def check_batch_args(responses: Sequence[str], answers: Sequence[str]) -> None:
    if len(responses) != len(answers):
        raise ValueError(
            f"responses and answers differ in length: {len(responses)} != {len(answers)}"
        )
    for name, values in (("responses", responses), ("answers", answers)):
        for i, value in enumerate(values):
            require_str(f"{name}[{i}]", value)


def available_cpus() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
