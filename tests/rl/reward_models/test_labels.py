"""The automatic step labeller: agreement with the toy task's exactly known success probabilities,
and a run with the real Sampler on a tiny random policy."""

import math
import random

import numpy as np
import pytest
from flax import nnx

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.data import toy, toy_oracle
from rl.data.example import Example
from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models import labels as labels_lib
from rl.rollout.sampler_config import SamplerConfig

SLIP = 0.2
K = 400


def _solver_solutions(n, seed):
    """Toy problems and one solution of each by the slipping solver itself (slips included)."""
    rng = random.Random(seed)
    problems, solutions = [], []
    for row in toy.generate("test", n, seed=seed):
        problems.append(Example(row.id, row.problem.question, str(row.problem.answer)))
        solutions.append(toy.STEP_SEPARATOR.join(toy_oracle.complete(row.problem, [], SLIP, rng)))
    return problems, solutions


@pytest.fixture(scope="module")
def solver_data():
    return _solver_solutions(16, seed=5)


@pytest.fixture(scope="module")
def soft(solver_data):
    problems, solutions = solver_data
    complete = labels_lib.toy_oracle_completer(SLIP, seed=1)
    return labels_lib.label_solutions(
        problems, solutions, complete, k_completions=K, sep=toy.STEP_SEPARATOR
    )


def _exact(example, k):
    problem = toy.parse_question(example.question)
    return toy_oracle.success_probability(problem, example.steps[: k + 1], SLIP)


def test_soft_labels_agree_with_exact_success_probabilities(solver_data, soft):
    problems, solutions = solver_data
    assert len(soft) == len(problems)
    z_scores, checked = [], 0
    for ex, solution in zip(soft, solutions, strict=True):
        assert ex.steps == solution.split("\n") and len(ex.labels) == len(ex.steps)
        for k, label in enumerate(ex.labels):
            p = _exact(ex, k)
            if k == len(ex.steps) - 1:  # the whole solution: its verified outcome, exactly
                assert label == p == ex.outcome
                continue
            sd = math.sqrt(p * (1 - p) / K)
            assert abs(label - p) <= 4.5 * sd + 1e-12, (ex.id, k, label, p)
            if sd > 0:
                z_scores.append((label - p) / sd)
            checked += 1
    assert checked > 50
    # The Monte-Carlo errors look binomial: mean near 0, spread near 1.
    assert abs(np.mean(z_scores)) < 0.5 and 0.6 < np.std(z_scores) < 1.4
    # The data exercise both regimes: prefixes still on track and prefixes already off.
    exact = [_exact(ex, k) for ex in soft for k in range(len(ex.steps) - 1)]
    assert min(exact) == 0.0 and max(exact) > 0.5


def test_hard_labels_are_any_correct(solver_data, soft):
    problems, solutions = solver_data
    complete = labels_lib.toy_oracle_completer(SLIP, seed=1)
    hard = labels_lib.label_solutions(
        problems, solutions, complete, k_completions=K, sep=toy.STEP_SEPARATOR, hard=True
    )
    for h, s in zip(hard, soft, strict=True):
        assert h.labels == [
            float(x > 0) if k < len(s.labels) - 1 else x for k, x in enumerate(s.labels)
        ]
        for k, label in enumerate(h.labels):
            p = _exact(h, k)
            if p == 0.0:
                assert label == 0.0
            elif p > 0.05:  # P(no success in 400 tries) < 1e-8
                assert label == 1.0


def test_completing_the_last_step_gives_the_outcome(solver_data):
    problems, solutions = solver_data
    out = labels_lib.label_solutions(
        problems[:4],
        solutions[:4],
        labels_lib.toy_oracle_completer(SLIP),
        k_completions=3,
        sep="\n",
        last_step_from_outcome=False,
    )
    for ex in out:  # a boxed prefix has nothing to complete: the label is its own verdict
        assert ex.labels[-1] == ex.outcome == _exact(ex, len(ex.steps) - 1)


def test_auto_label_with_oracle_end_to_end():
    rows = toy.generate("train", 6, seed=2)
    problems = [Example(r.id, r.problem.question, str(r.problem.answer)) for r in rows]
    out = labels_lib.auto_label(
        problems,
        labels_lib.toy_oracle_completer(SLIP, seed=3),
        samples_per_problem=3,
        k_completions=50,
        sep="\n",
    )
    assert [e.id for e in out] == [
        f"{p.id}#{i}" for i, p in enumerate(p for p in problems for _ in range(3))
    ]
    for ex in out:
        assert ex.outcome in (0.0, 1.0) and ex.labels[-1] == ex.outcome
        assert all(0.0 <= x <= 1.0 for x in ex.labels)


@pytest.fixture(scope="module")
def completer():
    """The real Sampler on a tiny random policy, greedy (so every completion of a prefix is known
    to be the same)."""
    tok = toy_tokenizer()
    values = presets.tiny(
        vocab_size=len(tok),
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
    ).to_dict()
    policy = CausalLM(ModelConfig.from_dict(values), rngs=nnx.Rngs(0))
    return labels_lib.SamplerCompleter(
        policy,
        tok,
        SamplerConfig(
            max_new_tokens=10, temperature=0.0, eos_ids=(tok.eos_token_id,), pad_id=tok.pad_token_id
        ),
        max_prompt_len=96,
        prompts_per_call=4,
        seed=0,
    )


def test_sampler_completer_labels_are_well_formed(completer):
    rows = toy.generate("train", 3, seed=0)
    problems = [Example(r.id, r.problem.question, str(r.problem.answer)) for r in rows]
    # Known solutions (several steps each): all their prefixes go through the sampler together.
    solutions = [r.solution for r in rows]
    k = 3
    calls = completer.num_calls
    out = labels_lib.label_solutions(problems, solutions, completer, k_completions=k, sep="\n")
    n_prefixes = sum(len(s.split("\n")) - 1 for s in solutions)
    assert completer.num_calls - calls == math.ceil(n_prefixes / 4)
    assert completer.sampler(k).num_traces == 1  # one program for every chunk
    for ex, solution in zip(out, solutions, strict=True):
        assert ex.steps == solution.split("\n") and ex.outcome == 1.0 and ex.labels[-1] == 1.0
        assert all(x in (0.0, 1.0) for x in ex.labels[:-1])  # greedy: all or none correct
    # Sampling solutions (empty prefixes) through the same completer: n rows per problem.
    sol_problems, sampled = labels_lib.sample_solutions(problems, completer, 2)
    assert len(sampled) == 6
    assert [p.id for p in sol_problems] == [p.id for p in problems for _ in range(2)]
    assert all(isinstance(s, str) for s in sampled)


def test_sampler_completer_prompts(completer):
    prefix = labels_lib.StepPrefix.of("Q: 7+5-3", ["7+5=12"], "\n")
    assert completer.prompt_text(prefix) == "Q: 7+5-3\n7+5=12\n"
    assert labels_lib.StepPrefix.of("Q: 7+5-3", [], "\n").text == ""
    out = completer([prefix, labels_lib.StepPrefix.of("Q: 1+1", [], "\n")], 3)
    assert len(out) == 2 and all(len(c) == 3 and len(set(c)) == 1 for c in out)
    assert completer.sampler(3).num_traces == 1
    with pytest.raises(Exception, match="longer than max_prompt_len"):
        completer([labels_lib.StepPrefix.of("Q: 1+1", ["1+1=2"] * 20, "\n")], 3)
