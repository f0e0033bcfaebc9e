"""Worker processes of the embedded default's PPO stage: each pinned to one core, results keyed by
job whatever the completion order, a failing job's error raised in the caller."""

import os

import pytest

from rl.experiments import workers


def affinity_job(tag: str, variant: str, seed: int) -> dict:
    """A job as ``run_jobs`` calls it: the caller's args, then (variant, seed)."""
    if variant == "fails":
        raise RuntimeError(f"job {variant}/{seed} failed")
    cores = sorted(os.sched_getaffinity(0))
    return {"tag": tag, "job": [variant, seed], "cores": cores, "pid": os.getpid()}


def test_every_job_runs_in_a_process_pinned_to_one_core():
    done = []
    jobs = [("a", 0), ("a", 1), ("b", 0)]
    results = workers.run_jobs(affinity_job, ("x",), jobs, 2, lambda job, r: done.append(job))
    assert set(results) == set(jobs) and sorted(done) == sorted(jobs)
    cores = set(workers.available_cores())
    for job, r in results.items():
        assert r["tag"] == "x" and tuple(r["job"]) == job
        assert len(r["cores"]) == 1 and set(r["cores"]) <= cores
    # Each worker process has its own core (however the jobs were shared out between them).
    core_of = {r["pid"]: r["cores"][0] for r in results.values()}
    assert len(set(core_of.values())) == len(core_of) <= 2


def verifier_job(variant: str, seed: int) -> dict:
    verifier = workers.process_verifier()
    assert workers.process_verifier() is verifier
    verdict = verifier.check_batch([r"so \\boxed{12}", r"so \\boxed{13}"], ["12", "12"])
    return {"verifier_pids": verifier.worker_pids, "correct": verdict.correct}


def test_the_jobs_of_a_worker_share_one_running_verifier():
    results = workers.run_jobs(verifier_job, (), [("a", 0), ("a", 1), ("a", 2)], 1)
    assert all(r["correct"] == [True, False] for r in results.values())
    pids = {tuple(r["verifier_pids"]) for r in results.values()}
    assert len(pids) == 1, pids  # started once, by the first job


def test_a_failing_job_raises_in_the_caller():
    with pytest.raises(RuntimeError, match="job fails/3 failed"):
        workers.run_jobs(affinity_job, ("x",), [("ok", 0), ("fails", 3)], 1)


@pytest.mark.parametrize("bad", [0, -1, 1.5, "2"])
def test_the_worker_count_is_validated(bad):
    with pytest.raises(ValueError, match=f"config.workers={bad!r}"):
        workers.run_jobs(affinity_job, ("x",), [("a", 0)], bad)
