"""An iteration's verified rollout: one batch of prompts, or, under PRIME's prompt filter
(``data.accuracy_band``), the in-band prompts of up to ``data.filter_rounds`` batches.

``sample`` rolls out, decodes and verifies one batch of prompts (``Sampled``); ``collect`` asks for
more through ``refill`` (the run's data iterator) while the band is short; selection is
``rl.data.accuracy_band.select``. Round r of iteration i samples with ``fold_in(key_i, r)`` (round
0 with ``key_i`` itself, so a run without the filter samples what it always did), and each round
advances the data iterator, whose position is checkpointed: a resumed run draws the same rounds.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import Any, NamedTuple

import jax
import numpy as np

from rewards.verifier_pool import BatchResult
from rl.config import DataConfig
from rl.data import accuracy_band


class Sampled(NamedTuple):
    """Prompts, their N samples each (rows p*N .. p*N+N-1 belong to prompt p), and the verdicts."""

    examples: list[Any]
    ids: np.ndarray  # [P, Lp] prompt tokens (left-padded)
    mask: np.ndarray  # [P, Lp]
    tokens: np.ndarray  # [P*N, R] response tokens
    response: np.ndarray  # [P*N, R] bool
    logp: np.ndarray  # [P*N, R] float32: each token's log-prob under softmax(logits / T) (T = 0: 1)
    finish_reason: np.ndarray  # [P*N] rl.rollout.sampling_program.FinishReason
    texts: list[str]  # [P*N] decoded responses
    correct: np.ndarray  # [P*N] float32: the verifier's verdict (or the trainer's success_fn)
    verdict: BatchResult | None  # the verifier's counts over every round (None: a success_fn)
    seconds: dict[str, float]  # "rollout", "verify": wall time, summed over rounds


def behaviour_logp(out: Any, temperature: float) -> np.ndarray:
    """The sampler output's log-probs under the distribution PPO trains
    (``rl.algo.update.training_temperature``): the sampled one at T > 0 (unfiltered, as the config
    checks for ``rollout.old_logp="sampler"``), the model's own for greedy rollouts."""
    return np.asarray(out.sample_logp if temperature > 0 else out.logp, np.float32)


def take(s: Sampled, prompts: np.ndarray, n: int) -> Sampled:
    """The given prompts of ``s`` (indices into its P prompts) with their rows, in that order."""
    rows = (np.asarray(prompts)[:, None] * n + np.arange(n)[None, :]).reshape(-1)
    return s._replace(
        examples=[s.examples[p] for p in prompts],
        ids=s.ids[prompts],
        mask=s.mask[prompts],
        tokens=s.tokens[rows],
        response=s.response[rows],
        logp=s.logp[rows],
        finish_reason=s.finish_reason[rows],
        texts=[s.texts[r] for r in rows],
        correct=s.correct[rows],
    )


def _merged(verdicts: list[BatchResult | None]) -> BatchResult | None:
    """The rounds' verdicts as one batch's: what ``rl.runtime.verifier_watch`` counts per
    iteration (every answer graded, kept or not)."""
    if any(v is None for v in verdicts):
        return None
    return BatchResult(
        correct=[c for v in verdicts for c in v.correct],
        num_timeouts=sum(v.num_timeouts for v in verdicts),
        num_errors=sum(v.num_errors for v in verdicts),
        num_crashes=sum(v.num_crashes for v in verdicts),
        num_checked=sum(v.num_checked for v in verdicts),
    )


def concat(parts: list[Sampled]) -> Sampled:
    """Rounds joined prompt-wise (every round has the same prompt and response widths)."""
    cat = lambda name: np.concatenate([getattr(p, name) for p in parts])  # noqa: E731
    seconds: dict[str, float] = {}
    for p in parts:
        for k, v in p.seconds.items():
            seconds[k] = seconds.get(k, 0.0) + v
    return Sampled(
        examples=[e for p in parts for e in p.examples],
        ids=cat("ids"),
        mask=cat("mask"),
        tokens=cat("tokens"),
        response=cat("response"),
        logp=cat("logp"),
        finish_reason=cat("finish_reason"),
        texts=[t for p in parts for t in p.texts],
        correct=cat("correct"),
        verdict=_merged([p.verdict for p in parts]),
        seconds=seconds,
    )


class PromptFilter:
    """``collect(examples, key, refill) -> (Sampled, metrics)``; without a band, one batch as
    sampled and no metrics.

    ``rollout(examples, key) -> (ids, mask, sampler output on the host)`` is the trainer's;
    outcomes come from ``success_fn(texts, answers, tokens, response_mask)`` when given, else from
    the ``verifier``."""

    def __init__(
        self,
        data: DataConfig,
        rollout: Callable[[list[Any], jax.Array], tuple[Any, Any, Any]],
        tokenizer: Any,
        verifier: Any,
        success_fn: Callable[..., np.ndarray] | None = None,
        temperature: float = 1.0,
    ):
        self.band = tuple(data.accuracy_band) or None
        self.rounds = data.filter_rounds
        self.n = data.samples_per_prompt
        self._rollout, self._tokenizer = rollout, tokenizer
        self._verifier, self._success_fn = verifier, success_fn
        self._temperature = temperature

    def sample(self, examples: list[Any], key: jax.Array) -> Sampled:
        """One batch of prompts rolled out, decoded and verified."""
        t0 = time.perf_counter()
        ids, mask, out = self._rollout(examples, key)
        tokens = np.asarray(out.tokens)
        response = np.asarray(out.response_mask, bool)
        t1 = time.perf_counter()
        texts = self._tokenizer.batch_decode(
            [row[m] for row, m in zip(tokens, response, strict=True)], skip_special_tokens=True
        )
        answers = [e.answer for e in examples for _ in range(self.n)]
        verdict = None
        if self._success_fn is not None:
            correct = np.asarray(self._success_fn(texts, answers, tokens, response), np.float32)
        else:
            verdict = self._verifier.check_batch(texts, answers)
            correct = np.asarray(verdict.rewards, np.float32)
        finish = np.asarray(out.finish_reason)
        logp = behaviour_logp(out, self._temperature)
        seconds = {"rollout": t1 - t0, "verify": time.perf_counter() - t1}
        return Sampled(
            examples, ids, mask, tokens, response, logp, finish, texts, correct, verdict, seconds
        )

    def collect(
        self,
        examples: list[Any],
        key: jax.Array,
        refill: Callable[[], list[Any]] | None = None,
    ) -> tuple[Sampled, dict[str, float]]:
        """The iteration's batch from ``examples``; ``refill()`` draws the next batch of prompts
        when more are needed (None: no refills, the first batch only)."""
        first = self.sample(examples, key)
        if self.band is None:
            return first, {}
        needed = len(examples)
        parts = [first]
        found = int(self._in_band(first).sum())
        while found < needed and len(parts) < self.rounds and refill is not None:
            part = self.sample(refill(), jax.random.fold_in(key, len(parts)))
            parts.append(part)
            found += int(self._in_band(part).sum())
        pooled = concat(parts)
        accuracy = accuracy_band.prompt_accuracy(pooled.correct, self.n)
        chosen = accuracy_band.select(accuracy, self.band, needed)
        kept = take(pooled, chosen, self.n)
        kept_in_band = int(accuracy_band.in_band(accuracy[chosen], self.band).sum())
        metrics = {
            "filter/rounds": float(len(parts)),
            "filter/in_band_fraction": found / len(accuracy),  # of all prompts sampled
            "filter/out_of_band": float(needed - kept_in_band),  # prompts filling the batch
            "filter/sampled_accuracy": float(np.mean(pooled.correct)),
        }
        return kept, metrics

    def _in_band(self, s: Sampled) -> np.ndarray:
        return accuracy_band.in_band(accuracy_band.prompt_accuracy(s.correct, self.n), self.band)
