"""The verifier's failures as metrics, and the stop: with a real pool, batches on which every
checked answer timed out count towards train.max_failed_verifier_batches; a batch with a verdict
resets the count, a batch that stated no answer leaves it alone. (A worker killed mid-batch:
tests/rl/test_faults.py.)"""

import pytest

from rewards.verifier_pool import Verifier
from rl.runtime.verifier_watch import METRICS, VerifierFailure, VerifierWatch
from tests.rewards.verify_cases import SLOW_SYMBOLIC

SLOW = ([SLOW_SYMBOLIC[0]] * 2, [SLOW_SYMBOLIC[1]] * 2)  # SymPy takes seconds: times out
GOOD = (["\\boxed{4}", "\\boxed{5}"], ["4", "4"])
NO_ANSWER = (["no final answer", "none here either"], ["4", "4"])


@pytest.fixture(scope="module")
def pool():
    with Verifier(num_workers=1, timeout_s=0.2) as verifier:
        yield verifier


def test_without_a_verifier_the_counts_are_zero():
    assert VerifierWatch(1).observe(None, 1) == dict.fromkeys(METRICS, 0)


def test_wholly_failed_batches_in_a_row_stop_the_run(pool):
    watch = VerifierWatch(max_failed_batches=2)
    failed = pool.check_batch(*SLOW)
    assert failed.all_failed and (failed.num_checked, failed.num_timeouts) == (2, 2)
    assert watch.observe(failed, 1) == {
        "rollout/verifier_timeouts": 2,
        "rollout/verifier_crashes": 0,
        "rollout/verifier_errors": 0,
    }
    good = pool.check_batch(*GOOD)
    assert not good.all_failed
    watch.observe(good, 2)  # a verdict: the verifier works again
    assert watch.failed_in_a_row == 0
    watch.observe(pool.check_batch(*SLOW), 3)
    silent = pool.check_batch(*NO_ANSWER)
    assert silent.num_checked == 0 and not silent.all_failed
    watch.observe(silent, 4)  # nothing was asked of the verifier: no evidence either way
    assert watch.failed_in_a_row == 1
    with pytest.raises(VerifierFailure) as failure:
        watch.observe(pool.check_batch(*SLOW), 5)
    message = str(failure.value)
    assert "failed on every answer of 2 consecutive batches (iterations 3..5" in message
    assert "2 answers, 2 timed out, 0 crashed their worker, 0 raised" in message
    assert "train.max_failed_verifier_batches=2" in message
