"""The verifier's process pool: it agrees with the in-process check, refuses hostile inputs within
its deadline, and replaces workers that time out, get stuck or die."""

from __future__ import annotations

import os
import signal
import threading
import time

import numpy as np

from rewards.verifier_pool import KILL_GRACE_S, Verifier
from tests.rewards.verify_cases import (
    DIFFERENT,
    EQUAL,
    HOSTILE,
    POOL_TIMEOUT_S,
    SLACK_S,
    SLOW_SYMBOLIC,
)


def test_batch_agrees_with_is_correct(verifier):
    cases = EQUAL + DIFFERENT
    result = verifier.check_batch([r for r, _ in cases], [a for _, a in cases])
    assert result.correct == [True] * len(EQUAL) + [False] * len(DIFFERENT)
    assert (result.num_timeouts, result.num_errors) == (0, 0)
    assert result.rewards.dtype == np.float32
    np.testing.assert_array_equal(result.rewards, np.asarray(result.correct, np.float32))


def test_hostile_inputs_in_pool(verifier):
    responses, answers = zip(*HOSTILE.values(), strict=True)
    start = time.monotonic()
    result = verifier.check_batch(list(responses), list(answers))
    assert time.monotonic() - start < POOL_TIMEOUT_S + KILL_GRACE_S + SLACK_S
    assert result.correct == [False] * len(HOSTILE)
    assert result.num_errors == 0


def test_slow_check_times_out_and_pool_recovers(verifier):
    start = time.monotonic()
    result = verifier.check_batch(
        [SLOW_SYMBOLIC[0], "\\boxed{4}", "\\boxed{5}"], [SLOW_SYMBOLIC[1], "4", "4"], timeout_s=1.0
    )
    assert time.monotonic() - start < 1.0 + KILL_GRACE_S + SLACK_S
    assert result.correct == [False, True, False]
    assert (result.num_timeouts, result.num_errors) == (1, 0)
    again = verifier.check_batch(["\\boxed{\\frac{1}{2}}", "#### 7"], ["0.5", "8"])
    assert again.correct == [True, False]
    assert again.num_timeouts == 0


def test_stuck_and_dead_workers_are_replaced():
    """A worker that stops answering (SIGSTOP: no SIGALRM can help) is killed at its deadline; one
    that dies mid-check counts as a crash; both are replaced and later batches are graded."""
    with Verifier(num_workers=1, timeout_s=1.0) as pool:
        assert pool.check_batch(["\\boxed{1}"], ["1"]).correct == [True]
        stuck_pid = pool.worker_pids[0]
        os.kill(stuck_pid, signal.SIGSTOP)
        result = pool.check_batch(["\\boxed{1}", "\\boxed{2}"], ["1", "2"])
        assert result.correct == [False, True]
        assert (result.num_timeouts, result.num_errors) == (1, 0)
        assert stuck_pid not in pool.worker_pids

        dying_pid = pool.worker_pids[0]
        os.kill(dying_pid, signal.SIGSTOP)
        threading.Timer(0.3, os.kill, (dying_pid, signal.SIGKILL)).start()
        result = pool.check_batch(["\\boxed{3}", "\\boxed{4}"], ["3", "4"], timeout_s=30.0)
        assert result.correct == [False, True]
        assert (result.num_timeouts, result.num_errors, result.num_crashes) == (0, 0, 1)
        assert (result.num_checked, result.num_failed, result.all_failed) == (2, 1, False)
        assert pool.check_batch(["\\boxed{5}"], ["5"]).correct == [True]
