"""Evaluation: the metric aggregations on hand-computed inputs, reward-model scores read at the
right tokens, the in-process evaluator on the toy task with a PRM, loading a project workdir, and
the CLI on 32 GSM8K problems with a tiny random Qwen2 (HF directory made here)."""

import json
import math
import os
import pathlib
import shutil
import subprocess
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel
from rl.eval import evaluation as ev

ROOT = pathlib.Path(__file__).resolve().parents[3]
QWEN_TOKENIZER = ROOT / "models" / "assets" / "qwen2_tokenizer"
NAN = float("nan")


# --- Aggregations ------------------------------------------------------------------------------


def test_pass_at_1_is_the_mean_over_all_samples():
    assert ev.pass_at_1(np.array([[1, 0], [1, 1]])) == 0.75
    assert ev.pass_at_1(np.array([[0, 0, 0]])) == 0.0


def test_majority_vote_normalizes_answers_and_breaks_ties_by_first_appearance():
    # "1/2" and "0.5" are one answer (2 votes) tying with "3" (2 votes): the first to appear wins.
    assert ev.majority_vote(["1/2", "3", "0.5", "3"]) == 0
    assert ev.majority_vote(["3", "1/2", "0.5", "3"]) == 0
    # "x = 7" and "7" are one answer; responses without an answer do not vote.
    assert ev.majority_vote([None, "5", "x = 7", "7"]) == 2
    assert ev.majority_vote([None, "\\frac{1}{2}", "2", "0.50"]) == 1
    assert ev.majority_vote([None, None]) is None


def test_maj_at_k_by_hand():
    answers = [
        ["5", "5", "3"],  # majority 5, correct
        ["2", None, "4"],  # 2 and 4 tie: 2 came first, wrong
        [None, None, None],
    ]  # nobody answered: wrong
    correct = np.array([[1, 1, 0], [0, 0, 1], [0, 0, 0]], bool)
    assert ev.maj_at_k(answers, correct) == pytest.approx(1 / 3)


def test_prm_aggregation_by_hand():
    steps = [0.9, 0.2, 0.8]
    assert ev.aggregate_prm(steps, "min") == pytest.approx(0.2)
    assert ev.aggregate_prm(steps, "last") == pytest.approx(0.8)
    assert ev.aggregate_prm(steps, "product") == pytest.approx(0.9 * 0.2 * 0.8)
    assert math.isnan(ev.aggregate_prm([], "min"))
    with pytest.raises(ValueError, match="prm_aggregation='mean'"):
        ev.aggregate_prm(steps, "mean")


def test_best_of_n_picks_the_highest_score_nan_last_ties_first():
    assert ev.best_of_index([0.1, NAN, 0.7, 0.7]) == 2
    assert ev.best_of_index([NAN, -5.0]) == 1
    scores = np.array(
        [
            [0.1, 0.9, 0.5],  # picks sample 1: correct
            [0.8, 0.8, 0.1],  # tie, picks sample 0: wrong
            [NAN, 0.2, 0.3],
        ]
    )  # picks sample 2: wrong
    correct = np.array([[0, 1, 0], [0, 1, 1], [1, 0, 0]], bool)
    assert ev.best_of_n(scores, correct) == pytest.approx(1 / 3)
    # PRM: aggregate each response's steps, then pick. min prefers [0.6, 0.6], last [0.9, 0.95].
    responses = [[0.6, 0.6], [0.1, 0.95], [0.9, 0.4, 0.9]]
    pick = lambda how: ev.best_of_index([ev.aggregate_prm(s, how) for s in responses])  # noqa
    assert (pick("min"), pick("last"), pick("product")) == (0, 1, 0)


def test_correlation_is_point_biserial_and_nan_when_constant():
    # x = [1, 2, 3], y = [0, 0, 1]: cov 1, var x 2, var y 2/3 -> r = 1 / sqrt(4/3).
    assert ev.correlation([1, 2, 3], [0, 0, 1]) == pytest.approx(3**0.5 / 2)
    assert math.isnan(ev.correlation([1, 2, 3], [1, 1, 1]))
    assert math.isnan(ev.correlation([1.0], [1.0]))
    assert ev.correlation([1, NAN, 3, 2], [0, 1, 1, 0]) == pytest.approx(
        ev.correlation([1, 3, 2], [0, 1, 0])
    )


def _record(correct, prm_return, steps=2, rep=0.0, length=10, answer="1", rm=0.5):
    return {
        "correct": correct,
        "prm_return": prm_return,
        "steps": steps,
        "rm_score": rm,
        "repeated_step_fraction": rep,
        "response_length": length,
        "answer": answer,
        "finish_reason": "EOS" if length < 10 else "LENGTH",
    }


def test_diagnostics_by_hand():
    records = [
        _record(True, 1.5, steps=3, rep=1 / 3, length=6),
        _record(False, 3.0, steps=5, rep=0.4, answer=None, rm=None),
        _record(False, 2.0, steps=1, rep=0.0),
    ]
    d = ev.diagnostics(records)
    assert d["accuracy"] == pytest.approx(1 / 3)
    assert d["steps_per_response"] == pytest.approx(3.0)
    assert d["repeated_step_fraction"] == pytest.approx((1 / 3 + 0.4) / 3)
    assert d["response_length"] == pytest.approx(26 / 3)
    assert d["finished_by_eos"] == pytest.approx(1 / 3)
    assert d["no_answer_fraction"] == pytest.approx(1 / 3)
    assert d["rm_score"] == pytest.approx(0.5)  # the unscored response is left out
    assert d["prm_return"] == pytest.approx(6.5 / 3)
    assert d["prm_return_correct"] == pytest.approx(1.5)
    assert d["prm_return_incorrect"] == pytest.approx(2.5)
    assert d["prm_return_correlation"] == pytest.approx(ev.correlation([1.5, 3, 2], [1, 0, 0]))
    assert d["prm_return_correlation"] < 0  # this PRM pays more to wrong answers: hackable


def test_orm_and_prm_scores_read_the_right_positions():
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], np.float32)
    response = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_allclose(ev.orm_scores(scores, response), [0.3, 0.8])
    ends = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)
    got = ev.prm_step_scores(scores, ends)
    np.testing.assert_allclose(got[0], [0.1, 0.3])
    assert got[1].size == 0


def test_cut_at_stop_and_jsonable():
    assert ev.cut_at_stop("a\n\nQuestion: b", ["Question:"]) == "a\n\nQuestion:"
    assert ev.cut_at_stop("abc", ["x"]) == "abc"
    assert ev.jsonable({"a": NAN, "b": [np.float32(1.5), float("inf")], "c": np.int64(2)}) == {
        "a": None,
        "b": [1.5, None],
        "c": 2,
    }


class _FakeVerifier:
    def __init__(self):
        self.calls = []

    def check_batch(self, texts, answers):
        self.calls.append((list(texts), list(answers)))
        return type("Verdict", (), {"correct": [t.endswith("{18}") for t in texts]})()


def test_check_answers_asks_the_verifier_only_about_responses_with_an_answer():
    fake = _FakeVerifier()
    got = ev.check_answers(
        ["so \\boxed{18}", "no answer", "\\boxed{3}"], ["18", "18", "4"], lambda: fake
    )
    assert got.tolist() == [True, False, False]
    assert fake.calls == [(["so \\boxed{18}", "\\boxed{3}"], ["18", "4"])]
    never = lambda: pytest.fail("verifier started without any answer to check")  # noqa: E731
    assert ev.check_answers(["a", "b"], ["1", "2"], never).tolist() == [False, False]


def test_eval_config_names_bad_values():
    with pytest.raises(ValueError, match="EvalConfig.samples=-1"):
        ev.EvalConfig(dataset="toy", samples=-1)
    with pytest.raises(ValueError, match="EvalConfig.prm_aggregation='mean'"):
        ev.EvalConfig(dataset="toy", prm_aggregation="mean")
    assert ev.EvalConfig(dataset="toy").separator == "\n"
    assert ev.EvalConfig(dataset="gsm8k").separator == "\n\n"


# --- Tiny models on the toy task ----------------------------------------------------------------


@pytest.fixture(scope="module")
def toy_tok():
    from rl.data.toy_tokenizer import toy_tokenizer

    return toy_tokenizer()


@pytest.fixture(scope="module")
def toy_config(toy_tok):
    from models import presets

    values = presets.tiny(vocab_size=len(toy_tok)).to_dict()
    values.update(
        eos_token_id=toy_tok.eos_token_id,
        pad_token_id=toy_tok.pad_token_id,
        bos_token_id=None,
        num_layers=1,
    )
    return ModelConfig.from_dict(values)


@pytest.fixture(scope="module")
def policy(toy_config):
    """Initialised in one jitted program (eager init compiles every op separately: slower)."""
    make = lambda: CausalLM(toy_config, rngs=nnx.Rngs(0))  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(make))
    return nnx.merge(graphdef, jax.jit(lambda: nnx.split(make())[1])())


@pytest.fixture(scope="module")
def prm(toy_config, policy):
    """A 2-class PRM head on the policy's own trunk (shared, not copied: a cheap test model)."""
    return RewardModel(toy_config, "two_class", rngs=nnx.Rngs(1), backbone=policy.backbone)


@pytest.fixture(scope="module")
def toy_examples(tmp_path_factory):
    from rl import data

    return data.load(
        "toy", "test", data_dir=tmp_path_factory.mktemp("tfds"), seed=0, train_size=16, test_size=6
    )


def test_reward_scores_are_the_models_at_step_ends_and_last_token(toy_tok, prm, toy_examples):
    """Against the reward model's own forward over prompt + response, positions found by hand."""
    ex = toy_examples[0]
    prompts = ev.encode([ex], toy_tok, "toy")
    p = prompts.input_ids.shape[1]
    text = "1+2=3\n3+4=7\n\\boxed{7}"
    ids = toy_tok(text, add_special_tokens=False)["input_ids"] + [toy_tok.eos_token_id]
    r = len(ids) + 3
    tokens = np.full((1, r), toy_tok.pad_token_id, np.int32)
    tokens[0, : len(ids)] = ids
    mask = np.arange(r)[None] < len(ids)
    gens = ev.Generations(
        tokens, mask, np.zeros((1, r), np.float32), np.array([len(ids)]), np.array([1]), [text], 1
    )
    scorer = ev.RewardScorer(prm, chunk_rows=1)
    seq = np.concatenate([prompts.input_ids, tokens], 1)
    seq_mask = np.concatenate([prompts.attention_mask.astype(bool), mask], 1)
    graphdef, state = nnx.split(prm)
    forward = jax.jit(lambda st, i, m: nnx.merge(graphdef, st)(i, m))
    full = np.asarray(forward(state, jnp.asarray(seq), jnp.asarray(seq_mask)))[0, p:]
    # Steps end at "3" (char 4), "7" (char 10) and "}" (char 20, the last text token); one char
    # per token, so those are the token positions. The ORM reads the EOS right after.
    want_steps = full[[4, 10, 20]]
    score, ret, steps = ev.reward_scores(
        scorer, "prm", gens, prompts, toy_tok, separator="\n", aggregation="min"
    )
    np.testing.assert_allclose(steps[0], want_steps, rtol=1e-5)
    assert score[0] == pytest.approx(want_steps.min(), rel=1e-5)
    assert ret[0] == pytest.approx(want_steps.sum(), rel=1e-5)
    score, ret, _ = ev.reward_scores(
        scorer, "orm", gens, prompts, toy_tok, separator="\n", aggregation="min"
    )
    assert score[0] == pytest.approx(full[len(ids) - 1], rel=1e-5) and ret == [None]


def test_evaluator_on_toy_with_prm(toy_tok, policy, prm, toy_examples):
    """Every section present and consistent with the records; a second call does not recompile."""
    e, k, n = len(toy_examples), 2, 3
    cfg = ev.EvalConfig(
        dataset="toy", max_new_tokens=12, batch_size=4, samples=k, best_of=n, prm_aggregation="last"
    )
    graphdef, params = nnx.split(policy)
    with ev.Evaluator(
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
    assert out["sampled"]["maj@k"] == ev.maj_at_k(answers, correct[:, :k])
    assert out["best_of"]["accuracy"] == ev.best_of_n(scores.reshape(e, n), correct)
    assert out["best_of"]["n"] == n and out["best_of"]["aggregation"] == "last"
    table = ev.markdown_table({k_: v for k_, v in out.items() if k_ != "records"})
    assert "| greedy accuracy |" in table and "| best_of accuracy |" in table


def test_load_policy_from_workdir_restores_the_trained_policy(tmp_path, toy_tok):
    """A workdir as the trainer leaves it (TrainState checkpoint) plus the run's config.json."""
    from configs import smoke
    from rl.algo.update import TrainState
    from rl.runtime import model_builder as models_setup
    from rl.runtime.checkpoint import Checkpointer

    cfg = smoke.get_config()
    cfg.policy.overrides = {"num_layers": 1}
    spec = models_setup.ModelSpec.from_section("policy", cfg.policy)
    model = CausalLM(models_setup.model_config(spec, toy_tok), rngs=nnx.Rngs(7))
    state = nnx.state(model)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    ckpt.save(
        3,
        TrainState(
            step=jnp.zeros((), jnp.int32), policy=state, critic=state, policy_opt=(), critic_opt=()
        ),
        {"iteration": 3},
    )
    ckpt.close()
    with pytest.raises(FileNotFoundError, match="config.json"):
        ev.load_policy(tmp_path)
    (tmp_path / "config.json").write_text(cfg.to_json())
    loaded = ev.load_policy(tmp_path)
    assert loaded.source == "workdir" and loaded.step == 3
    assert loaded.run_config["data"]["dataset"] == "toy"
    assert loaded.tokenizer.get_vocab() == toy_tok.get_vocab()
    want, got = jax.tree.leaves(state), jax.tree.leaves(nnx.state(loaded.model))
    assert len(want) == len(got) and all(np.array_equal(a, b) for a, b in zip(want, got))


# --- The CLI -----------------------------------------------------------------------------------


def _tiny_qwen_dir(path: pathlib.Path, head: bool = False) -> pathlib.Path:
    """A random 1-layer width-16 Qwen2 with the real Qwen tokenizer's vocabulary, saved by
    transformers (as a token-classification model with a scalar head when `head`)."""
    import torch
    import transformers

    torch.manual_seed(1 if head else 0)
    config = transformers.Qwen2Config(
        vocab_size=151936,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        num_labels=1,
    )
    cls = transformers.Qwen2ForTokenClassification if head else transformers.Qwen2ForCausalLM
    cls(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(QWEN_TOKENIZER / name, path / name)
    return path


def test_cli_on_32_gsm8k_problems(tmp_path):
    """Greedy accuracy and PRM diagnostics (sampling and best-of-N are covered in process above)."""
    policy_dir = _tiny_qwen_dir(tmp_path / "policy")
    prm_dir = _tiny_qwen_dir(tmp_path / "prm", head=True)
    out = tmp_path / "out" / "eval.json"
    # One device; the lowest XLA backend optimisation level compiles ~3x faster (same math).
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=("--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"),
    )
    cmd = [
        sys.executable,
        "-m",
        "rl.evaluate",
        f"--model={policy_dir}",
        "--dataset=gsm8k",
        "--limit=32",
        f"--output={out}",
        "--max_new_tokens=8",
        "--batch_size=32",
        f"--reward_model={prm_dir}",
        "--reward_kind=prm",
        f"--data_dir={tmp_path / 'tfds'}",
        "--verifier_workers=1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["n"] == 32 and 0.0 <= result["accuracy"] <= 1.0
    assert result["greedy"]["accuracy"] == result["accuracy"]
    assert result["settings"]["reward_kind"] == "prm" and "sampled" not in result
    assert "prm_return" in result and "prm_return_correlation" in result["greedy"]
    records = [
        json.loads(line) for line in out.with_suffix(".records.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in records] == [f"gsm8k/test/{i}" for i in range(32)]
    assert all(r["prm_return"] == pytest.approx(sum(r["step_scores"])) for r in records)
    assert all(1 <= r["response_length"] <= 8 for r in records)
    table = out.with_suffix(".md").read_text()
    assert "| greedy accuracy |" in table and table in proc.stdout
