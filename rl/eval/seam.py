"""SEAM data selection: score each RL prompt by how differently the policy and the reward rank the
policy's own responses, and keep the prompts where they agree (Lu et al. 2024, "It Takes Two",
arXiv 2406.07971).

The paper measures, per data sample, the discrepancy between the policy model's judgement (its
log-likelihood) and the reward model's (its score) over a gold answer and retrieved worse answers,
and shows that RL on the samples where they agree (SEAM-filtered data) trains better. Its exact
formula is not reproduced here. This module defines its own, for RL with N sampled responses:

For a prompt x with responses y_1..y_N sampled from the policy (identical responses merged: they are
one response, and a pair of them carries no ranking),
  ℓ_i = (1/|y_i|) Σ_t log π(y_i,t | x, y_i,<t)   the policy's length-normalized log-likelihood
        (untempered; ``length_normalize=False``: the plain sum, as the paper's code uses),
  r_i = the reward: the verifier's outcome (0/1), an ORM's score, or a PRM's aggregated step scores,
and over the pairs i < j that BOTH rank (ℓ_i ≠ ℓ_j and r_i ≠ r_j), with C pairs ordered the same
way and D pairs ordered oppositely,

    SEAM(x) = D / (C + D) = (1 − γ) / 2   (γ: Goodman–Kruskal's gamma)  ∈ [0, 1].

0: the policy finds its better-rewarded responses more likely, pair for pair; 1: exactly reversed.
Undefined (NaN) when no pair is ranked by both: N < 2, all rewards equal (e.g. every sample right,
or every sample wrong), or all likelihoods equal. With the verifier's 0/1 outcome it is the chance
that the policy finds a random wrong response more likely than a random right one, i.e.
1 − AUROC of the likelihood as a correctness detector. Why pairs and not a rank correlation by
default: pairs tied in reward (two right answers) express no preference of the reward, and with a
binary reward most pairs are such ties; Spearman's ρ would count them through average ranks.
``method="spearman"`` gives (1 − ρ)/2 with average ranks for ties, NaN when either side is constant.

Filtering (``filter_prompts``): keep the lowest-SEAM fraction of prompts (``mode="low"``, the
paper's selection as we read it: prompts where the reward model judges the policy's outputs as the
policy does) or the highest (``mode="high"``), or all prompts below / above a threshold. Prompts
with an undefined SEAM are ranked as ``undefined_as`` (default 0.5: no evidence either way), or
dropped with ``undefined_as=None``.

Letters: E prompts, N samples per prompt.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from models.prm import ProcessRewardModel
from rewards.verify import Verifier
from rl.data.example import Example
from rl.eval.generation import Generations, generate
from rl.eval.problems import check_answers, default_step_separator, encode
from rl.eval.reward_scoring import RewardScorer, reward_scores
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.tokenizer import stop_token_ids

METHODS = ("pairs", "spearman")
REWARDS = ("verifier", "orm", "prm")
MODES = ("low", "high")


def _average_ranks(x: np.ndarray) -> np.ndarray:
    """Ranks 1..n, ties sharing the mean of their positions."""
    order = np.argsort(x, kind="stable")
    ranks = np.empty(len(x), np.float64)
    sorted_x = x[order]
    start = 0
    for end in range(1, len(x) + 1):
        if end == len(x) or sorted_x[end] != sorted_x[start]:
            ranks[order[start:end]] = (start + end + 1) / 2.0  # mean of positions start+1..end
            start = end
    return ranks


def rank_disagreement(
    policy_N: Sequence[float], reward_N: Sequence[float], *, method: str = "pairs"
) -> float:
    """SEAM of one prompt from its responses' policy scores and rewards (module docstring)."""
    if method not in METHODS:
        raise ValueError(f"method={method!r}: must be one of {METHODS}")
    p, r = np.asarray(policy_N, np.float64), np.asarray(reward_N, np.float64)
    if p.shape != r.shape or p.ndim != 1:
        raise ValueError(
            f"policy and reward scores must be two [N] arrays, got {p.shape}, {r.shape}"
        )
    if not (np.all(np.isfinite(p)) and np.all(np.isfinite(r))):
        raise ValueError("policy and reward scores must be finite")
    if method == "pairs":
        i, j = np.triu_indices(len(p), k=1)
        agree = np.sign(p[i] - p[j]) * np.sign(r[i] - r[j])
        concordant, discordant = int(np.sum(agree > 0)), int(np.sum(agree < 0))
        if concordant + discordant == 0:
            return float("nan")
        return discordant / (concordant + discordant)
    if len(p) < 2 or np.ptp(p) == 0 or np.ptp(r) == 0:
        return float("nan")
    rho = np.corrcoef(_average_ranks(p), _average_ranks(r))[0, 1]
    return float(np.clip((1.0 - rho) / 2.0, 0.0, 1.0))


def seam_scores(
    policy_ExN: np.ndarray,
    reward_ExN: np.ndarray,
    valid_ExN: np.ndarray | None = None,
    *,
    method: str = "pairs",
) -> np.ndarray:
    """[E] SEAM per prompt over its valid responses (`valid_ExN`: e.g. duplicates removed)."""
    policy_ExN, reward_ExN = np.asarray(policy_ExN), np.asarray(reward_ExN)
    if valid_ExN is None:
        valid_ExN = np.ones(policy_ExN.shape, bool)
    return np.asarray(
        [
            rank_disagreement(p[v], r[v], method=method)
            for p, r, v in zip(policy_ExN, reward_ExN, np.asarray(valid_ExN, bool), strict=True)
        ]
    )


@dataclasses.dataclass
class SeamResult:
    """Per prompt: `scores` [E] (NaN: undefined); per response [E, N]: the policy's (normalized)
    log-likelihood, the reward, whether the response is the first of its identical copies, and its
    correctness per the verifier (None when the verifier was not run); the responses themselves
    (`generations`: tokens, masks, texts; rows e·N + n)."""

    scores: np.ndarray
    loglik: np.ndarray
    rewards: np.ndarray
    distinct: np.ndarray
    correct: np.ndarray | None
    generations: Generations

    @property
    def defined(self) -> np.ndarray:
        return ~np.isnan(self.scores)


def _first_copies(tokens_MxR: np.ndarray, n: int) -> np.ndarray:
    keep = np.zeros(tokens_MxR.shape[0], bool)
    for start in range(0, tokens_MxR.shape[0], n):
        seen = set()
        for row in range(start, start + n):
            key = tokens_MxR[row].tobytes()
            keep[row] = key not in seen
            seen.add(key)
    return keep


def score_prompts(
    policy: Any,
    params: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    dataset: str,
    samples: int = 8,
    max_new_tokens: int = 512,
    temperature: float = 1.0,
    top_p: float = 1.0,
    batch_size: int = 16,
    max_prompt_len: int | None = None,
    seed: int = 0,
    mesh=None,
    rules=None,
    progress: bool = False,
    **scoring: Any,
) -> SeamResult:
    """SEAM of every example: `samples` responses per prompt from the policy's sampler (the one
    PPO uses; `policy` a CausalLM or its graphdef, `params` its state), then `score_generations`
    with `scoring` (reward, reward_model, prm_aggregation, length_normalize, method, ...)."""
    if not isinstance(samples, int) or samples < 2:
        raise ValueError(f"samples={samples!r}: SEAM ranks responses, it needs at least 2")
    _check_reward(scoring.get("reward", "verifier"), scoring.get("reward_model"))
    examples = list(examples)
    graphdef = policy if isinstance(policy, nnx.GraphDef) else nnx.graphdef(policy)
    sampler = Sampler(
        graphdef,
        SamplerConfig(
            max_new_tokens=max_new_tokens,
            temperature=temperature,
            top_p=top_p,
            eos_ids=stop_token_ids(tokenizer),
            samples_per_prompt=samples,
            pad_id=tokenizer.pad_token_id or 0,
        ),
        mesh=mesh,
        rules=rules,
        tokenizer=tokenizer,
    )
    prompts = encode(examples, tokenizer, dataset, max_prompt_len)
    gens = generate(
        sampler,
        params,
        prompts.input_ids,
        prompts.attention_mask,
        tokenizer,
        batch_size=batch_size,
        key=jax.random.key(seed),
        progress=progress,
        desc=f"SEAM x{samples}",
    )
    return score_generations(
        gens,
        prompts,
        examples,
        tokenizer,
        dataset=dataset,
        batch_size=batch_size,
        mesh=mesh,
        rules=rules,
        **scoring,
    )


def _check_reward(reward: str, reward_model: Any) -> None:
    if reward not in REWARDS:
        raise ValueError(f"reward={reward!r}: must be one of {REWARDS}")
    if reward != "verifier" and reward_model is None:
        raise ValueError(f"reward={reward!r} needs a reward_model")


def score_generations(
    gens: Generations,
    prompts: Any,
    examples: Sequence[Example],
    tokenizer: Any,
    *,
    dataset: str,
    reward: str = "verifier",
    reward_model: Any = None,
    prm_aggregation: str = "min",
    length_normalize: bool = True,
    method: str = "pairs",
    step_separator: str | None = None,
    batch_size: int = 16,
    mesh=None,
    rules=None,
    verifier: Verifier | None = None,
) -> SeamResult:
    """SEAM from responses already sampled (N per prompt, rows e·N + n, with the policy's
    untempered log-probs, e.g. a rollout's) and their left-padded `prompts` (a PromptBatch).

    `reward`: "verifier" (the answer's correctness; `verifier` reused if given, else one is started
    when some response states an answer), or "orm" / "prm" with `reward_model` (a `RewardModel`,
    (graphdef, state) or `RewardScorer` sharing the policy's tokenizer, or for "prm" a published
    `models.prm.ProcessRewardModel` with its own; PRM steps aggregated by `prm_aggregation`).
    """
    _check_reward(reward, reward_model)
    examples = list(examples)
    e, n = len(examples), gens.samples_per_prompt
    total = np.sum(np.where(gens.response_mask, gens.logp, 0.0), axis=1)
    loglik = total / np.maximum(gens.lengths, 1) if length_normalize else total
    correct = None
    if reward == "verifier":
        started: list[Verifier] = []

        def get_verifier() -> Verifier:
            if verifier is not None:
                return verifier
            if not started:
                started.append(Verifier(num_workers=2))
            return started[0]

        answers = [ex.answer for ex in examples for _ in range(n)]
        try:
            correct = check_answers(gens.texts, answers, get_verifier)
        finally:
            for v in started:
                v.close()
        rewards = correct.astype(np.float64)
    else:
        # A published PRM (models.prm) scores the questions and steps in its own tokens; a
        # RewardScorer is reused as given (its forward compiled once across calls).
        scorer = (
            reward_model
            if isinstance(reward_model, (ProcessRewardModel, RewardScorer))
            else RewardScorer(reward_model, chunk_rows=batch_size, mesh=mesh, rules=rules)
        )
        separator = step_separator or default_step_separator(dataset)
        rm, _, _ = reward_scores(
            scorer,
            reward,
            gens,
            prompts,
            tokenizer,
            separator=separator,
            aggregation=prm_aggregation,
            questions_M=[ex.question for ex in examples for _ in range(n)],
        )
        rewards = np.asarray(rm, np.float64)
    distinct = _first_copies(gens.tokens, n)
    # A PRM gives no score to a response without steps: it takes no part in the ranking.
    valid = distinct & np.isfinite(rewards)
    scores = seam_scores(
        loglik.reshape(e, n), rewards.reshape(e, n), valid.reshape(e, n), method=method
    )
    return SeamResult(
        scores,
        loglik.reshape(e, n),
        rewards.reshape(e, n),
        distinct.reshape(e, n),
        None if correct is None else correct.reshape(e, n),
        gens,
    )


def filter_prompts(
    examples: Sequence[Example],
    scores: Sequence[float],
    *,
    keep_fraction: float | None = None,
    threshold: float | None = None,
    mode: str = "low",
    undefined_as: float | None = 0.5,
) -> list[Example]:
    """The examples kept by SEAM, in their original order.

    Exactly one of: `keep_fraction` in (0, 1]: the round(fraction·E) (at least 1) lowest-SEAM
    (`mode="low"`) or highest (`mode="high"`) prompts, ties kept in dataset order; `threshold`: the
    prompts with SEAM ≤ threshold (low) or ≥ threshold (high). NaN scores count as `undefined_as`,
    or are dropped when it is None.
    """
    examples = list(examples)
    s = np.asarray(scores, np.float64)
    if s.shape != (len(examples),):
        raise ValueError(
            f"scores has shape {s.shape}; expected ({len(examples)},), one per example"
        )
    if mode not in MODES:
        raise ValueError(f"mode={mode!r}: must be one of {MODES}")
    if (keep_fraction is None) == (threshold is None):
        raise ValueError(
            f"give exactly one of keep_fraction={keep_fraction!r} and threshold={threshold!r}"
        )
    if keep_fraction is not None and not 0 < keep_fraction <= 1:
        raise ValueError(f"keep_fraction={keep_fraction!r}: must be in (0, 1]")
    undefined = np.isnan(s)
    eligible = ~undefined if undefined_as is None else np.ones(len(s), bool)
    s = np.where(undefined, np.nan if undefined_as is None else undefined_as, s)
    signed = s if mode == "low" else -s
    if threshold is not None:
        keep = eligible & (signed <= (threshold if mode == "low" else -threshold))
    else:
        candidates = np.flatnonzero(eligible)
        count = min(max(1, round(keep_fraction * len(examples))), len(candidates))
        chosen = candidates[np.argsort(signed[candidates], kind="stable")[:count]]
        keep = np.zeros(len(s), bool)
        keep[chosen] = True
    return [ex for ex, k in zip(examples, keep, strict=True) if k]
