"""The evaluator: its config's checks, and the in-process evaluation of a tiny policy on the toy
task with a PRM (every section consistent with the records; one compile for repeated calls)."""

import numpy as np
import pytest
from flax import nnx

from rl.eval.evaluator import EvalConfig, Evaluator
from rl.eval.metrics import best_of_n, maj_at_k
from rl.eval.outputs import markdown_table

NAN = float("nan")


def test_eval_config_names_bad_values():
    with pytest.raises(ValueError, match="EvalConfig.samples=-1"):
        EvalConfig(dataset="toy", samples=-1)
    with pytest.raises(ValueError, match="EvalConfig.prm_aggregation='mean'"):
        EvalConfig(dataset="toy", prm_aggregation="mean")
    assert EvalConfig(dataset="toy").separator == "\n"
    assert EvalConfig(dataset="gsm8k").separator == "\n\n"


def test_evaluator_names_a_bad_reward_kind_and_best_of_without_a_reward_model():
    """Checked before anything is built (so no policy is needed here)."""
    with pytest.raises(ValueError, match="reward_kind='value'"):
        Evaluator(None, None, EvalConfig(dataset="toy"), reward_kind="value")
    with pytest.raises(ValueError, match="best_of=2 needs a reward_model"):
        Evaluator(None, None, EvalConfig(dataset="toy", best_of=2))


def test_evaluator_on_toy_with_prm(toy_tok, policy, prm, toy_examples):
    """Every section present and consistent with the records; a second call does not recompile."""
    e, k, n = len(toy_examples), 2, 3
    cfg = EvalConfig(
        dataset="toy", max_new_tokens=12, batch_size=4, samples=k, best_of=n, prm_aggregation="last"
    )
    graphdef, params = nnx.split(policy)
    with Evaluator(
        graphdef, toy_tok, cfg, reward_model=prm, reward_kind="prm", verifier_workers=1
    ) as evaluator:
        out = evaluator.evaluate(params, toy_examples)
        again = evaluator.evaluate(params, toy_examples)
        assert evaluator.greedy.num_traces == 1 and evaluator.sampled.num_traces == 1
    assert [r["text"] for r in again["records"]] == [r["text"] for r in out["records"]]
    records = out["records"]
    greedy = [r for r in records if r["mode"] == "greedy"]
    sampled = [r for r in records if r["mode"] == "sampled"]
    assert out["n"] == e and len(greedy) == e and len(sampled) == e * n
    assert [r["id"] for r in greedy] == [x.id for x in toy_examples]
    assert out["accuracy"] == pytest.approx(np.mean([r["correct"] for r in greedy]))
    for key in ("steps_per_response", "repeated_step_fraction", "response_length", "prm_return"):
        assert out[key] == out["greedy"][key]
    assert out["steps_per_response"] == pytest.approx(np.mean([r["steps"] for r in greedy]))
    for r in records:
        assert len(r["step_scores"]) == r["steps"]  # one char per token: every step has its end
        assert r["prm_return"] == pytest.approx(sum(r["step_scores"]))
        assert all(0 <= s <= 1 for s in r["step_scores"])
        assert r["rm_score"] == (pytest.approx(r["step_scores"][-1]) if r["steps"] else None)
        assert 1 <= r["response_length"] <= 12
    correct = np.array([r["correct"] for r in sampled]).reshape(e, n)
    scores = np.array([NAN if r["rm_score"] is None else r["rm_score"] for r in sampled])
    assert out["sampled"]["pass@1"] == pytest.approx(correct[:, :k].mean())
    answers = [[r["answer"] for r in sampled[i * n : i * n + k]] for i in range(e)]
    assert out["sampled"]["k"] == k
    assert out["sampled"]["maj@k"] == maj_at_k(answers, correct[:, :k])
    assert out["best_of"]["accuracy"] == best_of_n(scores.reshape(e, n), correct)
    assert out["best_of"]["n"] == n and out["best_of"]["aggregation"] == "last"
    table = markdown_table({k_: v for k_, v in out.items() if k_ != "records"})
    assert "| greedy accuracy |" in table and "| best_of accuracy |" in table
