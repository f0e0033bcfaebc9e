"""Automatic step labels, the Math-Shepherd way: how often does a solution prefix still end right?

For a solution with steps 1..K and each k, the prefix "steps 1..k" is continued ``k_completions``
times by a completer (normally the policy itself, sampling), each completed solution's final answer
is verified, and step k gets

    soft label = fraction of completions that are correct    (a Monte-Carlo value of the prefix)
    hard label = 1 if any completion is correct, else 0      (Math-Shepherd's HE labels)

The last step (k = K) is the whole solution: by default it is labelled by the solution's own
verified outcome instead of being continued (it has nothing left to complete).

The completer is pluggable: ``complete(prefixes, k) -> k continuation texts per prefix``. The
default, ``SamplerCompleter``, formats each prefix as the policy's prompt followed by the prefix's
text and runs the jitted ``rl.rollout.sampler.Sampler`` with ``samples_per_prompt = k``: every
prefix of a batch of solutions goes through the sampler together, in fixed-size chunks of prompts
left-padded to one length, so the sampling program compiles once. ``toy_oracle_completer`` continues
toy prefixes with the exact slipping solver of ``rl.data.toy_oracle``, whose success probabilities
are known: the labels it yields can be checked against exact values.

A prefix is continued from its text followed by the step separator (``StepPrefix.text``), so the
completer starts the next step rather than extending step k.
"""

from __future__ import annotations

import dataclasses
import logging
import random
from collections.abc import Callable, Sequence
from typing import Any

import jax
import numpy as np
from flax import nnx

from rewards import steps as steps_lib
from rewards.verify import is_correct
from rl.data import toy, toy_oracle
from rl.data.example import Example
from rl.data.prompts import format_prompt
from rl.data.rows import DataError
from rl.reward_models.data import StepLabelled
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class StepPrefix:
    """The first steps of a solution to ``question``; ``text`` is what follows the prompt: the steps
    joined by the separator, plus a trailing separator ("" for the empty prefix)."""

    question: str
    steps: tuple[str, ...]
    text: str

    @classmethod
    def of(cls, question: str, steps: Sequence[str], sep: str) -> StepPrefix:
        steps = tuple(steps)
        return cls(question, steps, sep.join(steps) + sep if steps else "")


CompleteFn = Callable[[Sequence[StepPrefix], int], list[list[str]]]
VerifyFn = Callable[[Sequence[str], Sequence[str]], np.ndarray]


def verify_in_process(texts: Sequence[str], answers: Sequence[str]) -> np.ndarray:
    """``rewards.verify.is_correct`` row by row (fast for short answers; for long MATH answers pass
    ``lambda t, a: verifier.check_batch(t, a).rewards`` with a ``rewards.verify.Verifier``)."""
    return np.asarray([is_correct(t, a) for t, a in zip(texts, answers, strict=True)], np.float32)


def label_solutions(
    problems: Sequence[Example],
    solutions: Sequence[str],
    complete: CompleteFn,
    *,
    k_completions: int,
    sep: str = steps_lib.DEFAULT_SEPARATOR,
    verify: VerifyFn | None = None,
    outcomes: Sequence[float] | None = None,
    hard: bool = False,
    last_step_from_outcome: bool = True,
) -> list[StepLabelled]:
    """Step labels of ``solutions[i]`` (a solution of ``problems[i]``), all prefixes completed in
    one ``complete`` call.

    outcomes: the solutions' verified outcomes if already known (else verified here). Solutions with
    no step (empty text) are left out and logged; ids are ``f"{problem.id}#{i}"`` with i the
    solution's index, so results can be matched back.
    """
    if len(problems) != len(solutions):
        raise ValueError(f"{len(problems)} problems but {len(solutions)} solutions")
    if not isinstance(k_completions, int) or k_completions < 1:
        raise ValueError(f"k_completions={k_completions!r}: must be an integer >= 1")
    verify = verify or verify_in_process
    answers = [p.answer for p in problems]
    if outcomes is None:
        outcomes = verify(list(solutions), answers)
    outcomes = np.asarray(outcomes, np.float32)
    steps_of = [steps_lib.step_texts(s, sep) for s in solutions]

    requests: list[StepPrefix] = []
    owners: list[tuple[int, int]] = []
    for i, (problem, steps) in enumerate(zip(problems, steps_of, strict=True)):
        last = len(steps) - 1 if last_step_from_outcome else len(steps)
        for k in range(1, last + 1):
            requests.append(StepPrefix.of(problem.question, steps[:k], sep))
            owners.append((i, k - 1))
    # Completed in order of how much of their own solution is left after the prefix, longest
    # first: a sampler call (prompts_per_call prefixes) decodes until its longest completion
    # ends, so prefixes with similar remainders in one call stop together (256 toy solutions
    # labelled in 0.81x the time). The completions are put back in request order.
    remaining = [sum(len(x) for x in steps_of[i][k + 1 :]) for i, k in owners]
    order = sorted(range(len(requests)), key=lambda j: -remaining[j])
    done = complete([requests[j] for j in order], k_completions) if requests else []
    if len(done) != len(requests):
        raise ValueError(
            f"complete() returned {len(done)} completion lists for {len(requests)} prefixes"
        )
    completions: list = [None] * len(requests)
    for j, c in zip(order, done, strict=True):
        completions[j] = c
    if any(len(c) != k_completions for c in completions):
        raise ValueError(
            f"complete() returned {[len(c) for c in completions][:8]}... completions "
            f"for {len(requests)} prefixes; expected {k_completions} for each"
        )
    texts = [r.text + c for r, cs in zip(requests, completions, strict=True) for c in cs]
    texts_answers = [answers[i] for i, _ in owners for _ in range(k_completions)]
    correct = np.asarray(verify(texts, texts_answers), np.float32).reshape(-1, k_completions)
    fraction = correct.mean(axis=1)

    labels = [[float("nan")] * len(steps) for steps in steps_of]
    for (i, k), value in zip(owners, fraction, strict=True):
        labels[i][k] = float(value > 0) if hard else float(value)
    out, empty = [], []
    for i, (problem, steps) in enumerate(zip(problems, steps_of, strict=True)):
        if not steps:
            empty.append(f"{problem.id}#{i}")
            continue
        if last_step_from_outcome:
            labels[i][-1] = float(outcomes[i])
        out.append(
            StepLabelled(
                problem.question,
                list(steps),
                labels[i],
                answer=problem.answer,
                outcome=float(outcomes[i]),
                id=f"{problem.id}#{i}",
            )
        )
    if empty:
        log.warning(
            "label_solutions: %d solutions have no step and get no labels: %s",
            len(empty),
            empty[:5],
        )
    return out


def sample_solutions(
    problems: Sequence[Example], complete: CompleteFn, samples_per_problem: int
) -> tuple[list[Example], list[str]]:
    """``samples_per_problem`` solutions of each problem from the completer (empty prefixes):
    (problem of each solution, solutions), problem-major."""
    requests = [StepPrefix(p.question, (), "") for p in problems]
    completions = complete(requests, samples_per_problem) if requests else []
    out_problems = [p for p in problems for _ in range(samples_per_problem)]
    return out_problems, [c for cs in completions for c in cs]


def auto_label(
    problems: Sequence[Example],
    complete: CompleteFn,
    *,
    samples_per_problem: int,
    k_completions: int,
    sep: str = steps_lib.DEFAULT_SEPARATOR,
    verify: VerifyFn | None = None,
    hard: bool = False,
) -> list[StepLabelled]:
    """Sample solutions with the completer, verify them, label their steps (the whole pipeline)."""
    sol_problems, solutions = sample_solutions(problems, complete, samples_per_problem)
    return label_solutions(
        sol_problems,
        solutions,
        complete,
        k_completions=k_completions,
        sep=sep,
        verify=verify,
        hard=hard,
    )


class SamplerCompleter:
    """A ``CompleteFn`` that samples continuations from a policy with the jitted ``Sampler``.

    ``policy`` is a ``CausalLM`` (its current parameters are used unless ``params`` is given), an
    ``nnx.GraphDef`` with ``params``, or a ``Sampler`` (with ``params``). ``config`` says how to
    sample; its ``samples_per_prompt`` is replaced by each call's k (one Sampler per k, cached).
    Prompts (the policy's prompt format + the prefix text) are left-padded to ``max_prompt_len`` and
    sent ``prompts_per_call`` at a time (the last chunk filled with repeats), so one program serves
    every call. ``num_calls`` counts sampler calls; each draws from ``fold_in(key(seed), call)``.
    """

    def __init__(
        self,
        policy: Any,
        tokenizer: Any,
        config: SamplerConfig,
        *,
        max_prompt_len: int,
        prompts_per_call: int = 8,
        system_prompt: str | None = None,
        seed: int = 0,
        params: Any = None,
        mesh=None,
        rules=None,
    ):
        if isinstance(policy, Sampler):
            self._graphdef, mesh, rules = policy.graphdef, policy.mesh, policy.rules
            self._samplers = {policy.config.samples_per_prompt: policy}
        else:
            self._graphdef = policy if isinstance(policy, nnx.GraphDef) else nnx.graphdef(policy)
            self._samplers = {}
        if params is None:
            if isinstance(policy, (Sampler, nnx.GraphDef)):
                raise ValueError("SamplerCompleter: a Sampler or GraphDef policy needs params=")
            params = nnx.state(policy)
        self.params = params
        self.tokenizer = tokenizer
        self.config = config
        self.max_prompt_len = max_prompt_len
        self.prompts_per_call = prompts_per_call
        self.system_prompt = system_prompt
        self.mesh, self.rules = mesh, rules
        self.key = jax.random.key(seed)
        self.num_calls = 0

    def sampler(self, k: int) -> Sampler:
        if k not in self._samplers:
            cfg = dataclasses.replace(self.config, samples_per_prompt=k)
            self._samplers[k] = Sampler(
                self._graphdef,
                cfg,
                mesh=self.mesh,
                rules=self.rules,
                tokenizer=self.tokenizer if cfg.stop_strings else None,
            )
        return self._samplers[k]

    def prompt_text(self, prefix: StepPrefix) -> str:
        return (
            format_prompt(prefix.question, self.tokenizer, system_prompt=self.system_prompt)
            + prefix.text
        )

    def _encode(self, prefixes: Sequence[StepPrefix]) -> tuple[np.ndarray, np.ndarray]:
        p = self.max_prompt_len
        ids = self.tokenizer([self.prompt_text(x) for x in prefixes], add_special_tokens=False)[
            "input_ids"
        ]
        pad = self.tokenizer.pad_token_id or 0
        out = np.full((len(ids), p), pad, np.int32)
        mask = np.zeros((len(ids), p), np.int32)
        for row, (x, seq) in enumerate(zip(prefixes, ids, strict=True)):
            if len(seq) > p:
                raise DataError(
                    f"SamplerCompleter: prompt + prefix of {x.question[:60]!r} with "
                    f"{len(x.steps)} steps is {len(seq)} tokens, longer than "
                    f"max_prompt_len={p}"
                )
            out[row, p - len(seq) :] = seq
            mask[row, p - len(seq) :] = 1
        return out, mask

    def __call__(self, prefixes: Sequence[StepPrefix], k: int) -> list[list[str]]:
        sampler = self.sampler(k)
        b = self.prompts_per_call
        results: list[list[str]] = []
        for start in range(0, len(prefixes), b):
            chunk = list(prefixes[start : start + b])
            real = len(chunk)
            chunk += [chunk[-1]] * (b - real)
            ids, mask = self._encode(chunk)
            key = jax.random.fold_in(self.key, self.num_calls)
            self.num_calls += 1
            out = jax.device_get(sampler(self.params, ids, mask, key))
            tokens, response = np.asarray(out.tokens), np.asarray(out.response_mask, bool)
            texts = self.tokenizer.batch_decode(
                [row[m] for row, m in zip(tokens, response, strict=True)], skip_special_tokens=True
            )
            results += [texts[i * k : (i + 1) * k] for i in range(real)]
        return results


def toy_oracle_completer(slip_prob: float, *, seed: int = 0) -> CompleteFn:
    """Continues toy prefixes with ``rl.data.toy_oracle``'s slipping solver (lines joined by the
    toy's separator). Prefixes must follow their problem's chain (the solver's own outputs do)."""
    rng = random.Random(f"rlreward-toy-oracle-completer/{seed}")

    def complete(prefixes: Sequence[StepPrefix], k: int) -> list[list[str]]:
        out = []
        for prefix in prefixes:
            problem = toy.parse_question(prefix.question)
            lines = list(prefix.steps)
            out.append(
                [
                    toy.STEP_SEPARATOR.join(toy_oracle.complete(problem, lines, slip_prob, rng))
                    for _ in range(k)
                ]
            )
        return out

    return complete
