"""Evaluating a policy: greedy accuracy, sampled pass@1 / maj@k, best-of-N with an ORM or a PRM,
and the reward-hacking diagnostics of its generations. Library of ``python -m rl.evaluate``.

    evaluator = Evaluator(policy_graphdef, tokenizer, EvalConfig(dataset="toy", max_new_tokens=64,
                          samples=4, best_of=4), reward_model=prm, reward_kind="prm")
    result = evaluator.evaluate(policy_params, examples)    # compiled once, reusable every call
    result["accuracy"], result["steps_per_response"], result["records"][0]["prm_return"]

or, once, ``evaluate_policy(graphdef, params, tokenizer, examples, dataset=..., ...)``.

What is measured (all generation goes through the one sampler PPO uses, in fixed-size batches of
``batch_size`` prompts: the last batch is padded with repeats of its last prompt, which are
dropped):
  * **greedy**: temperature 0, one response per prompt; ``accuracy`` is its verified accuracy.
  * **sampled**: N = max(samples, best_of) responses per prompt at ``temperature``. pass@1 is the
    mean accuracy of the first k = ``samples`` of them; maj@k votes over their extracted answers
    (``rewards.verify.extract_answer``, normalized as the verifier normalizes them; responses
    without an answer do not vote; ties go to the answer that appeared first) and is right when a
    response carrying the winning answer is. Best-of-N picks, among the first N = ``best_of``, the
    response the reward model scores highest (ties to the first) and reports its accuracy;
    ``oracle_accuracy`` (any of the N correct) bounds it.
  * **reward model**: it reads prompt + response in the POLICY's tokenizer (a reward model with a
    different vocabulary must be re-tokenized, which this module does not do; the CLI checks that
    the vocabularies agree). An ORM's score is read at the last response token (as PPO reads it);
    a PRM's step scores at the policy's step-end tokens (``rewards.steps``), aggregated for ranking
    by ``min`` (weakest step), ``last`` (final step) or ``product`` (all steps right, for
    probabilities). A response without steps has no PRM score (NaN: never picked over one that has).
  * **hacking diagnostics**, per generation mode: response length, steps per response, repeated-step
    fraction, and, with a reward model, its mean score and point-biserial correlation with
    correctness; for a PRM also the raw PRM return (sum of step scores, what a raw-PRM reward pays)
    for correct vs incorrect responses. A PRM that is hacked pays more return without more
    correctness.

Letters: E examples, N samples per prompt, M = E·N response rows, B prompts per batch, P prompt
length, R max new tokens.
"""

from __future__ import annotations

import dataclasses
import json
import math
import sys
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from rewards import _normalize
from rewards import steps as steps_lib
from rewards.verify import Verifier, extract_answer
from rl.data import prompts as prompts_lib
from rl.data.example import Example
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import FinishReason
from rl.rollout.tokenizer import cut_at_stop, stop_token_ids

PRM_AGGREGATIONS = ("min", "last", "product")
REWARD_KINDS = ("orm", "prm")
DATASET_SEPARATORS = {"toy": "\n"}  # Every other dataset: rewards.steps.DEFAULT_SEPARATOR.


def default_step_separator(dataset: str) -> str:
    return DATASET_SEPARATORS.get(dataset, steps_lib.DEFAULT_SEPARATOR)


# --- Aggregations (pure, host-side) ------------------------------------------------------------


def pass_at_1(correct_ExN: np.ndarray) -> float:
    """Mean accuracy over every sample of every prompt (the unbiased pass@1 estimate)."""
    correct_ExN = np.asarray(correct_ExN, np.float64)
    return float(correct_ExN.mean()) if correct_ExN.size else float("nan")


def answer_key(answer: str | None) -> str | None:
    """The form answers vote under: the verifier's normalization; numbers as exact fractions, so
    "0.50", "1/2" and "\\frac{1}{2}" are one answer."""
    if answer is None:
        return None
    normalized = _normalize.drop_assignment(_normalize.normalize(answer))
    number = _normalize.as_number(normalized)
    return f"#{number[0]}" if number is not None else _normalize.key(normalized)


def majority_vote(answers_N: Sequence[str | None]) -> int | None:
    """Index of the first response carrying the most frequent answer; None when none has one.

    Ties between answers go to the one that appeared first. Answers compare by ``answer_key``.
    """
    keys = [answer_key(a) for a in answers_N]
    counts: dict[str, int] = {}
    first: dict[str, int] = {}
    for i, k in enumerate(keys):
        if k is not None:
            counts[k] = counts.get(k, 0) + 1
            first.setdefault(k, i)
    if not counts:
        return None
    best = max(counts, key=lambda k: (counts[k], -first[k]))
    return first[best]


def maj_at_k(answers_ExN: Sequence[Sequence[str | None]], correct_ExN: np.ndarray) -> float:
    """Fraction of prompts whose majority answer is correct (no answer at all counts as wrong)."""
    correct_ExN = np.asarray(correct_ExN, bool)
    hits = []
    for answers, correct in zip(answers_ExN, correct_ExN):
        winner = majority_vote(answers)
        hits.append(winner is not None and bool(correct[winner]))
    return float(np.mean(hits)) if hits else float("nan")


def aggregate_prm(step_scores_K: Sequence[float], how: str) -> float:
    """One score from a response's K step scores: min | last | product; NaN when K = 0."""
    if how not in PRM_AGGREGATIONS:
        raise ValueError(f"prm_aggregation={how!r}: must be one of {PRM_AGGREGATIONS}")
    s = np.asarray(step_scores_K, np.float64)
    if s.size == 0:
        return float("nan")
    if how == "min":
        return float(s.min())
    if how == "last":
        return float(s[-1])
    return float(np.prod(s))


def best_of_index(scores_N: Sequence[float]) -> int:
    """The highest-scored response; NaN scores rank last, ties go to the first."""
    s = np.asarray(scores_N, np.float64)
    return int(np.argmax(np.where(np.isnan(s), -np.inf, s)))


def best_of_n(scores_ExN: np.ndarray, correct_ExN: np.ndarray) -> float:
    """Accuracy of the reward model's pick among each prompt's N responses."""
    correct_ExN = np.asarray(correct_ExN, bool)
    picks = [bool(c[best_of_index(s)]) for s, c in zip(np.asarray(scores_ExN), correct_ExN)]
    return float(np.mean(picks)) if picks else float("nan")


def correlation(x: Sequence[float], y: Sequence[float]) -> float:
    """Pearson correlation over the finite pairs (point-biserial when y is 0/1); NaN when either
    side is constant or fewer than two pairs remain."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)
    ok = np.isfinite(x) & np.isfinite(y)
    x, y = x[ok], y[ok]
    if x.size < 2 or np.ptp(x) == 0 or np.ptp(y) == 0:
        return float("nan")
    return float(np.corrcoef(x, y)[0, 1])


def _mean(values: Sequence[float]) -> float:
    v = np.asarray([np.nan if x is None else x for x in values], np.float64)
    v = v[np.isfinite(v)]
    return float(v.mean()) if v.size else float("nan")


def diagnostics(records: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Accuracy and the hacking diagnostics of a set of response records (see module docstring)."""
    correct = [float(r["correct"]) for r in records]
    out = {
        "accuracy": _mean(correct),
        "response_length": _mean([r["response_length"] for r in records]),
        "steps_per_response": _mean([r["steps"] for r in records]),
        "repeated_step_fraction": _mean([r["repeated_step_fraction"] for r in records]),
        "finished_by_eos": _mean([float(r["finish_reason"] == "EOS") for r in records]),
        "no_answer_fraction": _mean([float(r["answer"] is None) for r in records]),
    }
    if records and "rm_score" in records[0]:
        scores = [np.nan if r["rm_score"] is None else r["rm_score"] for r in records]
        out["rm_score"] = _mean(scores)
        out["rm_score_correlation"] = correlation(scores, correct)
    if records and records[0].get("prm_return") is not None:
        returns = [r["prm_return"] for r in records]
        out["prm_return"] = _mean(returns)
        out["prm_return_correct"] = _mean([x for x, c in zip(returns, correct) if c])
        out["prm_return_incorrect"] = _mean([x for x, c in zip(returns, correct) if not c])
        out["prm_return_correlation"] = correlation(returns, correct)
    return out


# --- Generation and scoring --------------------------------------------------------------------


@dataclasses.dataclass
class Generations:
    """Host arrays of E prompts × N responses; rows e·N .. e·N+N-1 belong to prompt e."""

    tokens: np.ndarray  # [M, R] int32
    response_mask: np.ndarray  # [M, R] bool
    logp: np.ndarray  # [M, R] fp32: the model's untempered log-probs of the sampled tokens
    lengths: np.ndarray  # [M]
    finish_reason: np.ndarray  # [M], FinishReason
    texts: list[str]
    samples_per_prompt: int


def _progress(total: int, desc: str, enabled: bool):
    from tqdm import tqdm

    return tqdm(
        total=total,
        desc=desc,
        unit="prompt",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def generate(
    sampler: Sampler,
    params: Any,
    prompt_ids_ExP: np.ndarray,
    prompt_mask_ExP: np.ndarray,
    tokenizer: Any,
    *,
    batch_size: int,
    key: jax.Array,
    progress: bool = False,
    desc: str = "generate",
) -> Generations:
    """All E prompts through `sampler` in batches of exactly `batch_size` (one compiled program)."""
    e = prompt_ids_ExP.shape[0]
    n = sampler.config.samples_per_prompt
    parts = []
    with _progress(e, desc, progress) as bar:
        for i, start in enumerate(range(0, e, batch_size)):
            idx = np.minimum(np.arange(start, start + batch_size), e - 1)
            out = sampler(
                params, prompt_ids_ExP[idx], prompt_mask_ExP[idx], jax.random.fold_in(key, i)
            )
            real = min(batch_size, e - start) * n
            parts.append(
                jax.tree.map(
                    lambda x: np.asarray(x)[:real],
                    jax.device_get(
                        (out.tokens, out.response_mask, out.logp, out.lengths, out.finish_reason)
                    ),
                )
            )
            bar.update(real // n)
    tokens, mask, logp, lengths, finish = (np.concatenate(x) for x in zip(*parts))
    mask = mask.astype(bool)
    texts = tokenizer.batch_decode(
        [row[m] for row, m in zip(tokens, mask)], skip_special_tokens=True
    )
    stops = sampler.config.stop_strings
    texts = [cut_at_stop(t, stops) for t in texts] if stops else list(texts)
    return Generations(tokens, mask, logp, lengths, finish, texts, n)


def _as_graph_and_state(model: Any) -> tuple[Any, Any]:
    if isinstance(model, tuple):
        return model
    return nnx.split(model)


class RewardScorer:
    """Per-response-token scores of a frozen reward model over prompt + response rows.

    One jitted forward over chunks of exactly `chunk_rows` rows (the last chunk padded with
    repeats), so every generation mode reuses one compiled program. On a mesh the rows are sharded
    over the batch axes and the model's parameters must already live on the mesh.
    """

    def __init__(self, reward_model: Any, *, chunk_rows: int, mesh=None, rules=None):
        self.graphdef, self.params = _as_graph_and_state(reward_model)
        self.chunk_rows, self.mesh, self.rules = chunk_rows, mesh, rules
        graphdef = self.graphdef
        self._forward = jax.jit(lambda params, ids, mask: nnx.merge(graphdef, params)(ids, mask))

    def __call__(
        self,
        prompt_ids_MxP: np.ndarray,
        prompt_mask_MxP: np.ndarray,
        tokens_MxR: np.ndarray,
        response_MxR: np.ndarray,
    ) -> np.ndarray:
        """scores_MxR (fp32): the model's score at every response position."""
        from models.sharding import array_sharding, use_mesh

        p = prompt_ids_MxP.shape[1]
        seq = np.concatenate([prompt_ids_MxP, tokens_MxR], axis=1).astype(np.int32)
        seq_mask = np.concatenate([prompt_mask_MxP.astype(bool), response_MxR], axis=1)
        m, c = seq.shape[0], self.chunk_rows
        out = []
        for start in range(0, m, c):
            idx = np.minimum(np.arange(start, start + c), m - 1)
            ids, mask = jnp.asarray(seq[idx]), jnp.asarray(seq_mask[idx])
            if self.mesh is None:
                scores = self._forward(self.params, ids, mask)
            else:
                sharding = array_sharding(("batch", None), ids.shape, self.mesh, self.rules)
                ids, mask = jax.device_put((ids, mask), sharding)
                with use_mesh(self.mesh, self.rules):
                    scores = self._forward(self.params, ids, mask)
            out.append(np.asarray(jax.device_get(scores))[: min(c, m - start), p:])
        return np.concatenate(out).astype(np.float32)


def orm_scores(scores_MxR: np.ndarray, response_MxR: np.ndarray) -> np.ndarray:
    """[M]: each row's score at its last response token (the EOS when it ended by one)."""
    last = np.maximum(response_MxR.sum(axis=1) - 1, 0)
    return scores_MxR[np.arange(scores_MxR.shape[0]), last]


def prm_step_scores(scores_MxR: np.ndarray, step_end_MxR: np.ndarray) -> list[np.ndarray]:
    """Per row, the scores at its step ends, in order."""
    return [s[e] for s, e in zip(scores_MxR, step_end_MxR.astype(bool))]


def check_answers(
    texts: Sequence[str], answers: Sequence[str], get_verifier: Callable[[], Verifier]
) -> np.ndarray:
    """[M] bool: the verifier's verdicts. A response without an extractable answer is wrong without
    asking it (as the verifier itself decides), so a policy that never answers (random weights,
    early training) never starts its worker processes."""
    correct = np.zeros(len(texts), bool)
    rows = [i for i, t in enumerate(texts) if extract_answer(t) is not None]
    if rows:
        verdict = get_verifier().check_batch([texts[i] for i in rows], [answers[i] for i in rows])
        correct[rows] = verdict.correct
    return correct


def reward_scores(
    scorer: RewardScorer,
    kind: str,
    gens: Generations,
    prompts: prompts_lib.PromptBatch,
    tokenizer: Any,
    *,
    separator: str,
    aggregation: str,
) -> tuple[list[float], list[float | None], list[list | None]]:
    """Per response: the reward model's score (ORM: last token; PRM: aggregated steps, NaN without
    steps), the PRM return (sum of step scores; None for an ORM) and the step scores."""
    n, m = gens.samples_per_prompt, len(gens.texts)
    rows = np.repeat(np.arange(prompts.input_ids.shape[0]), n)
    scores = scorer(
        prompts.input_ids[rows], prompts.attention_mask[rows], gens.tokens, gens.response_mask
    )
    if kind == "orm":
        return [float(x) for x in orm_scores(scores, gens.response_mask)], [None] * m, [None] * m
    if kind != "prm":
        raise ValueError(f"reward_kind={kind!r}: must be one of {REWARD_KINDS}")
    ends = steps_lib.step_end_masks(tokenizer, gens.tokens, gens.response_mask, separator)
    steps = [s.astype(float).tolist() for s in prm_step_scores(scores, ends)]
    return (
        [aggregate_prm(s, aggregation) for s in steps],
        [float(np.sum(s)) for s in steps],
        steps,
    )


def encode(
    examples: Sequence[Example], tokenizer: Any, dataset: str, max_prompt_len: int | None = None
) -> prompts_lib.PromptBatch:
    """The dataset's prompts, left-padded to `max_prompt_len` (None: the longest prompt rounded up
    to a multiple of 64, one length bucket)."""
    system = prompts_lib.system_prompt_for(dataset)
    if max_prompt_len is None:
        longest = max(prompts_lib.prompt_lengths(examples, tokenizer, system_prompt=system))
        max_prompt_len = 64 * math.ceil(longest / 64)
    return prompts_lib.encode_prompts(examples, tokenizer, max_prompt_len, system_prompt=system)


# --- The evaluator -----------------------------------------------------------------------------


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. `samples` = k of pass@1 / maj@k (0: none); `best_of` = N of best-of-N
    (needs a reward model; 0: none); `max_prompt_len` None: the examples' longest prompt rounded up
    to a multiple of 64 (one length bucket); `step_separator` None: the dataset's."""

    dataset: str
    max_new_tokens: int = 512
    batch_size: int = 16
    samples: int = 0
    best_of: int = 0
    temperature: float = 1.0
    top_p: float = 1.0
    prm_aggregation: str = "min"
    step_separator: str | None = None
    max_prompt_len: int | None = None
    stop_strings: tuple[str, ...] = ()
    seed: int = 0

    def __post_init__(self):
        def fail(name, why):
            raise ValueError(f"EvalConfig.{name}={getattr(self, name)!r}: {why}")

        for name, low in (("max_new_tokens", 1), ("batch_size", 1), ("samples", 0), ("best_of", 0)):
            v = getattr(self, name)
            if isinstance(v, bool) or not isinstance(v, int) or v < low:
                fail(name, f"must be an integer >= {low}")
        if self.max_prompt_len is not None and (
            not isinstance(self.max_prompt_len, int) or self.max_prompt_len < 1
        ):
            fail("max_prompt_len", "must be None or an integer >= 1")
        if not (isinstance(self.temperature, (int, float)) and self.temperature > 0):
            fail("temperature", "must be > 0 (greedy is always evaluated separately)")
        if self.prm_aggregation not in PRM_AGGREGATIONS:
            fail("prm_aggregation", f"must be one of {PRM_AGGREGATIONS}")
        if self.step_separator is not None and not self.step_separator:
            fail("step_separator", "must be None (the dataset's) or a non-empty string")
        object.__setattr__(self, "stop_strings", tuple(self.stop_strings))

    @property
    def separator(self) -> str:
        return self.step_separator or default_step_separator(self.dataset)

    @property
    def sampled_per_prompt(self) -> int:
        return max(self.samples, self.best_of)


class Evaluator:
    """Compiled evaluation of one policy structure: call `evaluate(params, examples)` any number of
    times (e.g. every few PPO iterations) without recompiling, as long as the prompt length bucket
    stays the same (fixed `max_prompt_len`, or the same examples).

    `policy` is a `CausalLM` or its graphdef; `reward_model` a `RewardModel` (or (graphdef, state))
    sharing the policy's tokenizer, used as an ORM or a PRM per `reward_kind`. `verifier`: a
    `rewards.verify.Verifier` to reuse (default: one with `verifier_workers` workers, started when
    a response first states an answer, closed by `close()`).
    """

    def __init__(
        self,
        policy: Any,
        tokenizer: Any,
        config: EvalConfig,
        *,
        reward_model: Any = None,
        reward_kind: str = "orm",
        mesh=None,
        rules=None,
        verifier: Verifier | None = None,
        verifier_workers: int = 2,
    ):
        if reward_kind not in REWARD_KINDS:
            raise ValueError(f"reward_kind={reward_kind!r}: must be one of {REWARD_KINDS}")
        if config.best_of and reward_model is None:
            raise ValueError(f"EvalConfig.best_of={config.best_of} needs a reward_model")
        self.config, self.tokenizer, self.reward_kind = config, tokenizer, reward_kind
        self.mesh, self.rules = mesh, rules
        graphdef = policy if isinstance(policy, nnx.GraphDef) else nnx.graphdef(policy)
        common = dict(
            max_new_tokens=config.max_new_tokens,
            eos_ids=stop_token_ids(tokenizer),
            stop_strings=config.stop_strings,
            pad_id=tokenizer.pad_token_id or 0,
        )
        kw = dict(mesh=mesh, rules=rules, tokenizer=tokenizer)
        self.greedy = Sampler(graphdef, SamplerConfig(temperature=0.0, **common), **kw)
        self.sampled = None
        if config.sampled_per_prompt:
            self.sampled = Sampler(
                graphdef,
                SamplerConfig(
                    temperature=config.temperature,
                    top_p=config.top_p,
                    samples_per_prompt=config.sampled_per_prompt,
                    **common,
                ),
                **kw,
            )
        self.scorer = None
        if reward_model is not None:
            self.scorer = RewardScorer(
                reward_model, chunk_rows=config.batch_size, mesh=mesh, rules=rules
            )
        self._verifier, self._own_verifier = verifier, verifier is None
        self._verifier_workers = verifier_workers

    def verifier(self) -> Verifier:
        """The verifier, started on first use (its worker processes cost seconds to start)."""
        if self._verifier is None:
            self._verifier = Verifier(num_workers=self._verifier_workers)
        return self._verifier

    def close(self) -> None:
        if self._own_verifier and self._verifier is not None:
            self._verifier.close()
            self._verifier = None

    def __enter__(self) -> Evaluator:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    def encode(self, examples: Sequence[Example]) -> prompts_lib.PromptBatch:
        return encode(examples, self.tokenizer, self.config.dataset, self.config.max_prompt_len)

    def _records(self, examples, gens: Generations, prompts, mode: str) -> list[dict[str, Any]]:
        """Verifies, scores and describes every response of `gens`."""
        c, n = self.config, gens.samples_per_prompt
        answers_M = [ex.answer for ex in examples for _ in range(n)]
        correct = check_answers(gens.texts, answers_M, self.verifier)
        m = len(gens.texts)
        rm_score, prm_return, step_scores = [None] * m, [None] * m, [None] * m
        if self.scorer is not None:
            rm_score, prm_return, step_scores = reward_scores(
                self.scorer,
                self.reward_kind,
                gens,
                prompts,
                self.tokenizer,
                separator=c.separator,
                aggregation=c.prm_aggregation,
            )
        records = []
        for row, text in enumerate(gens.texts):
            ex = examples[row // n]
            steps = steps_lib.step_texts(text, c.separator)
            score = rm_score[row]
            records.append(
                {
                    "id": ex.id,
                    "mode": mode,
                    "sample": row % n,
                    "reference": ex.answer,
                    "answer": extract_answer(text),
                    "correct": bool(correct[row]),
                    "response_length": int(gens.lengths[row]),
                    "steps": len(steps),
                    "repeated_step_fraction": steps_lib.repeated_step_fraction(steps),
                    "finish_reason": FinishReason(int(gens.finish_reason[row])).name,
                    **(
                        {"rm_score": None if score is None or math.isnan(score) else score}
                        if self.scorer is not None
                        else {}
                    ),
                    "prm_return": prm_return[row],
                    "step_scores": step_scores[row],
                    "text": text,
                }
            )
        return records

    def evaluate(
        self, params: Any, examples: Sequence[Example], *, progress: bool = False
    ) -> dict[str, Any]:
        """The summary (see module docstring) with the per-response dicts under "records".

        Top level: `n`, `accuracy` and the greedy diagnostics (`response_length`,
        `steps_per_response`, `repeated_step_fraction`, with a PRM `prm_return`, ...); "greedy",
        "sampled" and "best_of" sections; "records" (mode "greedy" or "sampled", one per response).
        """
        c = self.config
        examples = list(examples)
        if not examples:
            raise ValueError("evaluate: no examples")
        prompts = self.encode(examples)
        key = jax.random.key(c.seed)
        ids, mask = prompts.input_ids, prompts.attention_mask
        gens = generate(
            self.greedy,
            params,
            ids,
            mask,
            self.tokenizer,
            batch_size=c.batch_size,
            key=jax.random.fold_in(key, 0),
            progress=progress,
            desc="greedy",
        )
        records = self._records(examples, gens, prompts, "greedy")
        greedy = diagnostics(records)
        summary: dict[str, Any] = {
            "dataset": c.dataset,
            "n": len(examples),
            **greedy,
            "greedy": dict(greedy),
        }
        if self.sampled is not None:
            n = c.sampled_per_prompt
            gens = generate(
                self.sampled,
                params,
                ids,
                mask,
                self.tokenizer,
                batch_size=c.batch_size,
                key=jax.random.fold_in(key, 1),
                progress=progress,
                desc=f"sampled x{n}",
            )
            sampled = self._records(examples, gens, prompts, "sampled")
            records += sampled
            correct_ExN = np.asarray([r["correct"] for r in sampled]).reshape(len(examples), n)
            if c.samples:
                k = c.samples
                first_k = [r for r in sampled if r["sample"] < k]
                answers = [
                    [r["answer"] for r in sampled[e * n : e * n + k]] for e in range(len(examples))
                ]
                summary["sampled"] = {
                    "k": k,
                    "temperature": c.temperature,
                    "top_p": c.top_p,
                    "pass@1": pass_at_1(correct_ExN[:, :k]),
                    "maj@k": maj_at_k(answers, correct_ExN[:, :k]),
                    **{key_: v for key_, v in diagnostics(first_k).items() if key_ != "accuracy"},
                }
            if c.best_of:
                b = c.best_of
                scores = np.asarray(
                    [np.nan if r["rm_score"] is None else r["rm_score"] for r in sampled]
                ).reshape(len(examples), n)
                summary["best_of"] = {
                    "n": b,
                    "reward_kind": self.reward_kind,
                    "aggregation": c.prm_aggregation if self.reward_kind == "prm" else None,
                    "accuracy": best_of_n(scores[:, :b], correct_ExN[:, :b]),
                    "oracle_accuracy": float(correct_ExN[:, :b].any(axis=1).mean()),
                    "mean_accuracy": pass_at_1(correct_ExN[:, :b]),
                    **{
                        key_: v
                        for key_, v in diagnostics([r for r in sampled if r["sample"] < b]).items()
                        if key_ != "accuracy"
                    },
                }
        summary["settings"] = {
            **dataclasses.asdict(c),
            "step_separator": c.separator,
            "max_prompt_len": int(ids.shape[1]),
            "reward_kind": self.reward_kind if self.scorer else None,
        }
        summary["records"] = records
        return summary


def evaluate_policy(
    policy: Any,
    params: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    *,
    dataset: str,
    reward_model: Any = None,
    reward_kind: str = "orm",
    mesh=None,
    rules=None,
    verifier: Verifier | None = None,
    progress: bool = False,
    **config: Any,
) -> dict[str, Any]:
    """One-shot `Evaluator(...).evaluate(params, examples)`; `config` holds `EvalConfig` fields
    (max_new_tokens, batch_size, samples, best_of, temperature, prm_aggregation, step_separator,
    seed, ...). Compiles every call: loops should hold an `Evaluator`."""
    evaluator = Evaluator(
        policy,
        tokenizer,
        EvalConfig(dataset=dataset, **config),
        reward_model=reward_model,
        reward_kind=reward_kind,
        mesh=mesh,
        rules=rules,
        verifier=verifier,
    )
    with evaluator:
        return evaluator.evaluate(params, examples, progress=progress)


# --- Output ------------------------------------------------------------------------------------


def jsonable(value: Any) -> Any:
    """NaN/inf → None (JSON has neither), numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a two-column markdown table."""

    def fmt(v):
        return (
            "n/a"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:.4f}" if isinstance(v, float) else str(v))
        )

    rows = [("n", summary["n"]), ("greedy accuracy", summary["accuracy"])]
    rows += [(f"greedy {k}", v) for k, v in summary["greedy"].items() if k != "accuracy"]
    for section in ("sampled", "best_of"):
        for k, v in summary.get(section, {}).items():
            rows.append((f"{section} {k}", v))
    lines = [f"## Evaluation: {summary['dataset']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict[str, Any], output: str | Path, *, records: bool = True) -> str:
    """Writes FILE (JSON summary), FILE's .md table and, with `records`, FILE's .records.jsonl;
    returns the table."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in summary.items() if k != "records"}
    output.write_text(json.dumps(jsonable(body), indent=2) + "\n")
    table = markdown_table(body)
    output.with_suffix(".md").write_text(table)
    if records:
        with output.with_suffix(".records.jsonl").open("w") as f:
            for r in summary.get("records", []):
                f.write(json.dumps(jsonable(r)) + "\n")
    return table


# --- Loading a policy --------------------------------------------------------------------------

RUN_CONFIG_FILE = (
    "config.json"  # What a project workdir needs beside checkpoints/ (see load_policy).
)
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclasses.dataclass
class LoadedPolicy:
    model: Any  # CausalLM
    tokenizer: Any
    source: str  # "hf" | "workdir"
    run_config: dict[str, Any] | None = None  # a workdir's run config (data settings, ...)
    step: int | None = None  # the workdir checkpoint restored


def is_hf_dir(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.exists():
        return False
    values = json.loads(config.read_text())
    return "model_type" in values or "architectures" in values


def checkpoint_steps(workdir: str | Path) -> list[int]:
    root = Path(workdir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / "state").is_dir()
    )


def load_policy(
    path: str | Path,
    *,
    tokenizer: str | Path | None = None,
    step: int | None = None,
    dtype: Any = jnp.float32,
    mesh=None,
    rules=None,
) -> LoadedPolicy:
    """A policy and its tokenizer from an HF directory or a project workdir (``rl.train
    --workdir``).

    HF directory: config.json + safetensors (+ tokenizer files, or pass `tokenizer`).
    Workdir: ``checkpoints/<step>/state`` (the TrainState; only its ``policy`` subtree is read,
    straight into its shardings) and ``config.json``, the run's config (``ConfigDict.to_json()``),
    from which the policy's structure (its ``policy`` section: HF path or preset, dtypes, overrides)
    and tokenizer are rebuilt exactly as the trainer built them. Default step: the latest.
    """
    path = Path(path)
    if is_hf_dir(path):
        from models import hf_io

        if tokenizer is None and not any((path / f).exists() for f in TOKENIZER_FILES):
            raise FileNotFoundError(
                f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                "pass a tokenizer directory"
            )
        model = hf_io.load_causal_lm(path, dtype, mesh=mesh, rules=rules)
        return LoadedPolicy(model, hf_io.load_tokenizer(tokenizer or path), "hf")
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(
            f"{path}: neither an HF model directory (config.json with model_type) "
            "nor a project workdir (checkpoints/<step>/state)"
        )
    run_file = path / RUN_CONFIG_FILE
    if not run_file.exists():
        raise FileNotFoundError(
            f"{path} is a project workdir but has no {RUN_CONFIG_FILE}: the policy's structure "
            f"cannot be rebuilt from checkpoints alone. Write the run's config there "
            f"(ConfigDict.to_json()), or export the policy as an HF directory "
            f"(models.hf_io.save_causal_lm) and pass that."
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{path}: no checkpoint step {step}; have {steps}")
    run_config = json.loads(run_file.read_text())
    model, tok = _restore_workdir_policy(path, run_config, step, tokenizer, mesh, rules)
    return LoadedPolicy(model, tok, "workdir", run_config, step)


def _restore_workdir_policy(
    path: Path, run_config: dict[str, Any], step: int, tokenizer, mesh, rules
):
    import orbax.checkpoint as ocp

    from models import hf_io
    from models.decoder import CausalLM
    from models.sharding import state_shardings
    from rl.config import ModelSpec
    from rl.rollout.tokenizer import load_tokenizer
    from rl.runtime import model_builder as models_setup

    spec = ModelSpec.from_section("policy", run_config.get("policy"))
    data = run_config.get("data", {})
    tok = load_tokenizer(
        tokenizer or "", run_config.get("tokenizer", ""), spec.path, dataset=data.get("dataset", "")
    )
    if spec.path:
        config = hf_io.load_config(
            spec.path,
            dtype=jnp.dtype(spec.dtype),
            param_dtype=jnp.dtype(spec.param_dtype),
            remat=spec.remat,
            **dict(spec.overrides),
        )
    else:
        config = models_setup.model_config(spec, tok)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: CausalLM(config, rngs=nnx.Rngs(0))))
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree.map(lambda _: device, abstract)
    else:
        shardings = state_shardings(abstract, mesh, rules)
    target = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s), abstract, shardings
    )
    item = {"policy": target}
    restored = ocp.PyTreeCheckpointer().restore(
        path.resolve() / "checkpoints" / str(step) / "state",
        args=ocp.args.PyTreeRestore(
            item=item,
            partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        ),
    )
    return nnx.merge(graphdef, restored["policy"]), tok
