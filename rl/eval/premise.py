"""The seed paper's premise, measured before any PPO: are the learned reward models *strong at
inference time*?

Gao et al. 2024 argue that ORMs and PRMs which do well at inference time (best-of-N reranking) may
still not help, or hurt, as RL training rewards. A reproduction has to show the first half before
the second means anything, so this measures, on held-out problems and N sampled solutions of the
initial policy: greedy accuracy, pass@N (any of the N correct: the ceiling of reranking), maj@N
(majority vote over the extracted answers: the reward-free baseline a reward model must beat), and
best-of-N picked by the ORM and by the PRM under each step aggregation (min, product, last).

Best-of-N picks among the samples that state an answer, the candidates maj@N votes over
(``rl.eval.metrics``): a response without one cannot be right, yet a reward model may prefer it (a
PRM's min has no weak answer line to count in a truncated response; an ORM reads its last token
out of distribution). Each selector also reports ``any_response_accuracy``, its pick among all N,
and the summary the fraction of samples with an answer, so the difference stays visible.

The check is decided on one aggregation fixed in advance (``min``, the usual choice since Lightman
et al. 2023; choosing the best of three after looking would inflate it): the premise holds when the
PRM's best-of-N accuracy exceeds maj@N by more than the standard error of that difference. The
standard error is the paired one over problems: both picks are made on the same N samples, so the
per-problem difference d_e = [PRM pick correct] - [majority correct] has standard error
std(d) / sqrt(E).

Letters: E problems, N samples per problem, M = E·N response rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np

from rewards.verify import Verifier, extract_answer
from rl.data.example import Example
from rl.eval.generation import Generations, generate
from rl.eval.metrics import (
    PRM_AGGREGATIONS,
    aggregate_prm,
    answered,
    best_of_index,
    majority_vote,
)
from rl.eval.problems import check_answers, encode
from rl.eval.reward_scoring import RewardScorer, reward_scores
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.tokenizer import stop_token_ids

# The aggregation the check is decided on, fixed before measuring (see the module docstring).
CHECK_AGGREGATION = "min"


def _paired(picked_E: np.ndarray, baseline_E: np.ndarray) -> dict[str, float]:
    """Accuracy of a pick, its margin over the baseline and the paired standard error."""
    d = picked_E.astype(np.float64) - baseline_E.astype(np.float64)
    e = d.size
    se = float(d.std(ddof=1) / math.sqrt(e)) if e > 1 else float("nan")
    return {"accuracy": float(picked_E.mean()), "margin": float(d.mean()), "margin_se": se}


def premise_summary(
    correct_ExN: np.ndarray,
    answers_ExN: Sequence[Sequence[str | None]],
    greedy_correct_E: np.ndarray,
    orm_ExN: np.ndarray | None,
    prm_steps_ExN: Sequence[Sequence[Sequence[float]]] | None,
) -> dict[str, Any]:
    """The premise figures from verified samples and reward-model scores (pure; no model).

    ``prm_steps_ExN[e][i]``: the step scores of problem e's sample i (empty: no complete step,
    ranked below any scored one). Candidates are the samples with an answer in ``answers_ExN``.
    Margins and their standard errors are against maj@N, paired over problems.
    """
    correct_ExN = np.asarray(correct_ExN, bool)
    e, n = correct_ExN.shape
    majority = []
    for answers, correct in zip(answers_ExN, correct_ExN, strict=True):
        winner = majority_vote(answers)
        majority.append(winner is not None and bool(correct[winner]))
    majority_E = np.asarray(majority, bool)
    out: dict[str, Any] = {
        "problems": e,
        "samples": n,
        "greedy_accuracy": float(np.mean(greedy_correct_E)),
        "mean_sample_accuracy": float(correct_ExN.mean()),
        "pass@n": float(correct_ExN.any(axis=1).mean()),
        "maj@n": float(majority_E.mean()),
        "best_of_n": {},
    }

    stated_ExN = np.asarray([answered(row) for row in answers_ExN], bool).reshape(e, n)
    out["answered_fraction"] = float(stated_ExN.mean())

    def pick(scores_ExN: np.ndarray, among: np.ndarray | None) -> np.ndarray:
        among = np.ones_like(stated_ExN) if among is None else among
        rows = zip(scores_ExN, correct_ExN, among, strict=True)
        return np.asarray([c[best_of_index(s, a)] for s, c, a in rows], bool)

    def selector(scores_ExN: np.ndarray) -> dict[str, float]:
        figures = _paired(pick(scores_ExN, stated_ExN), majority_E)
        figures["any_response_accuracy"] = float(pick(scores_ExN, None).mean())
        return figures

    if orm_ExN is not None:
        out["best_of_n"]["orm"] = selector(np.asarray(orm_ExN, np.float64))
    if prm_steps_ExN is not None:
        for how in PRM_AGGREGATIONS:
            scores = np.asarray([[aggregate_prm(s, how) for s in row] for row in prm_steps_ExN])
            out["best_of_n"][f"prm_{how}"] = selector(scores)
        decided = out["best_of_n"][f"prm_{CHECK_AGGREGATION}"]
        out["check"] = {
            "statement": (
                f"PRM best-of-{n} ({CHECK_AGGREGATION} aggregation) beats maj@{n} by more than "
                "the paired standard error of the difference"
            ),
            "margin": decided["margin"],
            "margin_se": decided["margin_se"],
            "holds": bool(decided["margin"] > decided["margin_se"]),
        }
    return out


@dataclasses.dataclass
class PremiseSamples:
    """What ``premise_summary`` is computed from, with the sampled responses themselves (for
    analyses beyond the summary, e.g. ``bench/premise_analysis.py``)."""

    gens: Generations  # the N samples per problem, rows problem-major
    correct_ExN: np.ndarray
    answers_ExN: list[list[str | None]]
    greedy_correct_E: np.ndarray
    orm_ExN: np.ndarray | None
    prm_steps_ExN: list[list[Any]] | None

    def summary(self) -> dict[str, Any]:
        return premise_summary(
            self.correct_ExN,
            self.answers_ExN,
            self.greedy_correct_E,
            self.orm_ExN,
            self.prm_steps_ExN,
        )


def premise_samples(
    policy: Any,
    params: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    dataset: str,
    samples: int,
    orm: Any = None,
    prm: Any = None,
    separator: str,
    max_new_tokens: int,
    batch_size: int,
    temperature: float = 1.0,
    seed: int = 0,
    verifier: Verifier | None = None,
) -> PremiseSamples:
    """Greedy and N sampled responses of the policy on ``examples``, verified, scored by the ORM
    and the PRM (the project's reward models, in the policy's tokenizer). ``batch_size`` prompts
    per sampler call (one compiled program)."""
    examples = list(examples)
    prompts = encode(examples, tokenizer, dataset)
    common = dict(
        max_new_tokens=max_new_tokens,
        eos_ids=stop_token_ids(tokenizer),
        pad_id=tokenizer.pad_token_id or 0,
    )
    key = jax.random.key(seed)
    own_verifier = verifier is None
    verifier = verifier or Verifier(num_workers=2)
    try:
        greedy = generate(
            Sampler(policy, SamplerConfig(temperature=0.0, **common)),
            params,
            prompts.input_ids,
            prompts.attention_mask,
            tokenizer,
            batch_size=batch_size,
            key=jax.random.fold_in(key, 0),
        )
        answers_E = [ex.answer for ex in examples]
        greedy_correct = check_answers(greedy.texts, answers_E, lambda: verifier)
        sampler = Sampler(
            policy,
            SamplerConfig(temperature=temperature, samples_per_prompt=samples, **common),
        )
        gens = generate(
            sampler,
            params,
            prompts.input_ids,
            prompts.attention_mask,
            tokenizer,
            batch_size=batch_size,
            key=jax.random.fold_in(key, 1),
        )
        answers_M = [a for a in answers_E for _ in range(samples)]
        correct = check_answers(gens.texts, answers_M, lambda: verifier)
    finally:
        if own_verifier:
            verifier.close()
    e = len(examples)
    rows = batch_size * samples

    def scored(model, kind):
        if model is None:
            return None
        scorer = RewardScorer(model, chunk_rows=rows)
        score, _, steps = reward_scores(
            scorer, kind, gens, prompts, tokenizer, separator=separator, aggregation="min"
        )
        return score if kind == "orm" else steps

    orm_M, prm_M = scored(orm, "orm"), scored(prm, "prm")
    by_problem = lambda xs: [xs[i * samples : (i + 1) * samples] for i in range(e)]  # noqa: E731
    return PremiseSamples(
        gens,
        correct.reshape(e, samples),
        by_problem([extract_answer(t) for t in gens.texts]),
        greedy_correct,
        None if orm_M is None else np.asarray(orm_M, np.float64).reshape(e, samples),
        None if prm_M is None else by_problem(prm_M),
    )
