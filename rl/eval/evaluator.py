"""Evaluating a policy: greedy accuracy, sampled pass@1 / maj@k, best-of-N with an ORM or a PRM,
and the reward-hacking diagnostics of its generations. Library of ``python -m rl.evaluate``.

    evaluator = Evaluator(policy_graphdef, tokenizer, EvalConfig(dataset="toy", max_new_tokens=64,
                          samples=4, best_of=4), reward_model=prm, reward_kind="prm")
    result = evaluator.evaluate(policy_params, examples)    # compiled once, reusable every call
    result["accuracy"], result["steps_per_response"], result["records"][0]["prm_return"]

or, once, ``evaluate_policy(graphdef, params, tokenizer, examples, dataset=..., ...)``.

What is measured (all generation goes through ``rl.eval.generation``: the one sampler PPO uses, in
fixed-size batches of ``batch_size`` prompts):
  * **greedy**: temperature 0, one response per prompt; ``accuracy`` is its verified accuracy.
  * **sampled**: N = max(samples, best_of) responses per prompt at ``temperature``. pass@1 is the
    mean accuracy of the first k = ``samples`` of them; maj@k votes over their extracted answers.
    Best-of-N picks, among the first N = ``best_of`` that state an answer, the response the reward
    model scores highest and reports its accuracy; ``oracle_accuracy`` (any of the N correct)
    bounds it. The exact definitions are ``rl.eval.metrics``'.
  * **reward model** (``rl.eval.reward_scoring``): an ORM's score at the last response token, a
    PRM's step scores at the step-end tokens, aggregated by ``prm_aggregation``.
  * **hacking diagnostics**, per generation mode (``rl.eval.metrics.diagnostics``).

Letters: E examples, N samples per prompt, M = E·N response rows.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from models.prm import ProcessRewardModel
from rewards import steps as steps_lib
from rewards.verify import Verifier, extract_answer
from rl.data import prompts as prompts_lib
from rl.data.example import Example
from rl.eval.generation import Generations, generate
from rl.eval.metrics import (
    PRM_AGGREGATIONS,
    answered,
    best_of_n,
    diagnostics,
    maj_at_k,
    pass_at_1,
)
from rl.eval.problems import check_answers, default_step_separator, encode
from rl.eval.reward_scoring import REWARD_KINDS, RewardScorer, reward_scores
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import FinishReason
from rl.rollout.tokenizer import stop_token_ids


@dataclasses.dataclass(frozen=True)
class EvalConfig:
    """What to evaluate. `samples` = k of pass@1 / maj@k (0: none); `best_of` = N of best-of-N
    (needs a reward model; 0: none); `max_prompt_len` None: the examples' longest prompt rounded up
    to a multiple of 16 (one length bucket, rl.eval.problems); `step_separator` None: the
    dataset's."""

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
        if isinstance(reward_model, ProcessRewardModel):
            self.scorer = reward_model  # scores in its own token space (reward_scoring)
        elif reward_model is not None:
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
                questions_M=[ex.question for ex in examples for _ in range(n)],
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
                stated_ExN = answered([r["answer"] for r in sampled]).reshape(len(examples), n)
                summary["best_of"] = {
                    "n": b,
                    "reward_kind": self.reward_kind,
                    "aggregation": c.prm_aggregation if self.reward_kind == "prm" else None,
                    "accuracy": best_of_n(scores[:, :b], correct_ExN[:, :b], stated_ExN[:, :b]),
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
