"""What the verifier's failures cost each iteration, and when they stop the run.

The verifier pool (``rewards.verifier_pool``) survives its workers: one that hangs or dies is
replaced and the answer it held scores 0, so a batch always gets rewards. That is right for a
stray pathological answer and wrong for a verifier that no longer works at all (an environment
broken after start-up, a worker that dies on every check): every success reward would be 0 and
PPO would train on that for ever. ``VerifierWatch`` turns each batch's counts into the
``rollout/verifier_*`` metrics and stops the run once ``train.max_failed_verifier_batches``
consecutive batches failed on every answer the workers were given (on any host: every host grades
the batch itself, and all stop together). A batch whose responses state
no final answer at all sends nothing to the workers and counts as no failure: it is the policy's
doing, not the verifier's.
"""

from __future__ import annotations

from rewards.verifier_pool import BatchResult
from rl.runtime import distributed

METRICS = ("rollout/verifier_timeouts", "rollout/verifier_crashes", "rollout/verifier_errors")


class VerifierFailure(RuntimeError):
    """The verifier failed on every answer of too many consecutive batches."""


class VerifierWatch:
    def __init__(self, max_failed_batches: int):
        self.max_failed_batches = max_failed_batches
        self.failed_in_a_row = 0
        self._first_failed_step = 0

    def observe(self, result: BatchResult | None, step: int) -> dict[str, int]:
        """The batch's ``rollout/verifier_*`` counts (zeros when no verifier graded it, e.g. a
        custom success function); raises ``VerifierFailure`` on the ``max_failed_batches``-th
        consecutive batch that failed on every checked answer. ``step``: the iteration, for the
        message."""
        if result is None:
            return dict.fromkeys(METRICS, 0)
        if result.all_failed:
            if not self.failed_in_a_row:
                self._first_failed_step = step
            self.failed_in_a_row += 1
        elif result.num_checked:
            self.failed_in_a_row = 0
        # Each host grades the batch itself; all must stop together (one small collective).
        if distributed.any_process(self.failed_in_a_row >= self.max_failed_batches):
            raise VerifierFailure(
                f"the answer verifier failed on every answer of {self.failed_in_a_row} "
                f"consecutive batches (iterations {self._first_failed_step}..{step}; the last: "
                f"{result.num_checked} answers, {result.num_timeouts} timed out, "
                f"{result.num_crashes} crashed their worker, {result.num_errors} raised), so "
                f"every success reward was 0; stopping before training on it "
                f"(train.max_failed_verifier_batches={self.max_failed_batches}). The workers' "
                f"warnings above say what happened to them."
            )
        counts = (result.num_timeouts, result.num_crashes, result.num_errors)
        return dict(zip(METRICS, counts, strict=True))
