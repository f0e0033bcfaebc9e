"""The embedded default's PPO runs in worker processes, each pinned to one CPU core.

Why processes: the PPO runs of the default are independent, so on a machine with more cores
they scale out one run per core (``config.workers``). On the 2-core machine the default is sized
for they do not buy throughput: two pinned workers ran a full-size toy PPO run each in 4.3 min
side by side (30 iterations at about 5.5 s, 30-40-token responses, with the evaluation), 2.2 min
per run, against 1.9 min per run for the previous default's runs one after another in one
process on both cores (longer responses); with one verifier per worker and one PPO epoch, a run now
takes 1.3-1.6 min per worker (two fresh-clone runs: 21 runs in 13.5 and 17.2 min on two workers).
Every (variant, seed) run with its greedy evaluation
is one job; jobs are independent (each writes only its own ``ppo/<variant>/seed<k>/`` and
``eval/<variant>_seed<k>.json``) and resume from their own checkpoints, so an interrupted command
picks up where its jobs stopped.

Why pinned, even with one worker: XLA:CPU sizes its thread pool by the CPUs the process may run
on, and how a computation is split over threads can change its float rounding. A job's process
may use exactly one core, so a run's numbers do not depend on ``config.workers``, on which worker
ran it, or on the machine's core count: the same command on the same machine gives the same table.
Measured: the same two full-size runs in unpinned processes (two threads each) ended with greedy
accuracies 0.0117 and 0.0234 where the pinned ones had 0.0117 and 0.0176; unpinned they were 7%
faster (4.05 vs 4.33 min side by side).

Processes are started with ``spawn`` (a fork of a process that has started JAX's runtime is not
safe) and import the project afresh; the compiled programs are shared through the workdir's
compilation cache.
"""

from __future__ import annotations

import atexit
import concurrent.futures
import multiprocessing
import os
from collections.abc import Callable, Sequence
from typing import Any

from rewards.verify import Verifier

Job = tuple[str, int]  # (variant, seed)


def _pin(cores) -> None:
    """Worker initializer: take the next core off the queue and run on it alone (before this
    process starts JAX's CPU runtime, which reads the affinity to size its thread pool)."""
    os.sched_setaffinity(0, {cores.get()})


def available_cores() -> list[int]:
    return sorted(os.sched_getaffinity(0))


def run_jobs(
    job_fn: Callable[..., dict[str, Any]],
    args: tuple,
    jobs: Sequence[Job],
    workers: int,
    on_done: Callable[[Job, dict[str, Any]], None] = lambda job, result: None,
) -> dict[Job, dict[str, Any]]:
    """``job_fn(*args, variant, seed)`` of every job in the workers, keyed by job. ``job_fn`` must
    be a module-level function (it is pickled by name). ``on_done`` is called in the caller's
    process as each finishes (in completion order; the returned dict does not depend on it). When
    a job fails, the jobs not yet started are cancelled, those running finish (their checkpoints
    stay for a re-run), and its error is raised here (its traceback is the worker's)."""
    if not isinstance(workers, int) or workers < 1:
        raise ValueError(f"config.workers={workers!r}: must be an int >= 1")
    cores = available_cores()
    n = min(workers, len(jobs), len(cores))
    ctx = multiprocessing.get_context("spawn")
    queue = ctx.Queue()
    for i in range(n):
        queue.put(cores[i])
    results: dict[Job, dict[str, Any]] = {}
    with concurrent.futures.ProcessPoolExecutor(
        max_workers=n, mp_context=ctx, initializer=_pin, initargs=(queue,)
    ) as pool:
        futures = {
            pool.submit(job_fn, *args, variant, seed): (variant, seed) for variant, seed in jobs
        }
        try:
            for future in concurrent.futures.as_completed(futures):
                job = futures[future]
                results[job] = future.result()
                on_done(job, results[job])
        except BaseException:
            for future in futures:
                future.cancel()
            raise
    return results


_verifier = None


def process_verifier():
    """The answer verifier shared by every stage and job this process runs, started on first use
    and closed at exit. Its worker processes import SymPy and math-verify: measured 14 s before the
    first batch could be checked, in a job's process on one core busy compiling, once for its
    training and again for its evaluation; shared, a worker pays that once for all its jobs."""
    global _verifier
    if _verifier is None:
        _verifier = Verifier()
        atexit.register(_verifier.close)
    return _verifier
