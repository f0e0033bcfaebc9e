"""``LikelihoodPRM``: its step scores against a loop-by-loop reference built from the PRM's and the
language model's own forwards, its refusal of a plain forward, its errors, and a save/load round
trip that gives back identical scores."""

import json
import math

import jax
import numpy as np
import pytest
from flax import nnx

from models.decoder import CausalLM
from models.heads import RewardModel
from models.likelihood_prm import LM_DIR, LikelihoodPRM
from models.reward_io import META_FILE, load_reward_model, save_reward_model
from tests.models.hf_reference import jit_forward
from tests.models.test_reward_io import prm_with_a_random_head

WEIGHTS = (0.7, 2.5, -0.3)


@pytest.fixture(scope="module")
def parts(toy_config):
    return prm_with_a_random_head(toy_config), CausalLM(toy_config, rngs=nnx.Rngs(1))


@pytest.fixture(scope="module")
def rows(toy_config):
    """Two rows: a left-padded 3- / 4-token prompt, then a response with steps ending at the
    marked positions (row 1 has padding after its response)."""
    s = 12
    ids = np.asarray(
        jax.random.randint(jax.random.key(2), (2, s), 2, toy_config.vocab_size), np.int32
    )
    attention = np.ones((2, s), bool)
    attention[0, :2] = False
    attention[1, :1] = attention[1, 10:] = False
    response = np.zeros((2, s), bool)
    response[0, 5:], response[1, 5:10] = True, True
    ends = np.zeros((2, s), bool)
    ends[0, [6, 9, 11]] = True
    ends[1, [5, 9]] = True
    return np.where(attention, ids, 0), attention, response, ends


def _reference(prm, lm, ids, attention, response, ends, weights):
    """Step by step on the host: each step's mean log-prob, their running minimum, the sigmoid."""
    head = np.asarray(jit_forward(prm)(ids, attention), np.float64)
    logits = np.asarray(jit_forward(lm)(ids, attention), np.float64)
    logits -= logits.max(-1, keepdims=True)
    logsm = logits - np.log(np.exp(logits).sum(-1, keepdims=True))
    a, b, c = weights
    out = head.copy()
    for r in range(ids.shape[0]):
        step, lowest = [], math.inf
        for t in range(ids.shape[1]):
            if not response[r, t]:
                continue
            step.append(logsm[r, t - 1, ids[r, t]])
            if ends[r, t]:
                lowest = min(lowest, float(np.mean(step)))
                p = head[r, t]
                out[r, t] = 1 / (1 + math.exp(-(a * math.log(p / (1 - p)) + b * lowest + c)))
                step = []
    return out


def test_step_scores_match_a_step_by_step_reference(parts, rows):
    prm, lm = parts
    model = LikelihoodPRM(prm, lm, WEIGHTS)
    graphdef, state = nnx.split(model)
    got = jax.jit(lambda s, *a: nnx.merge(graphdef, s).step_scores(*a))(state, *rows)
    want = _reference(prm, lm, *rows, WEIGHTS)
    np.testing.assert_allclose(np.asarray(got), want, rtol=1e-4, atol=1e-6)
    ends = rows[3]
    assert np.abs(np.asarray(got)[ends] - want[ends]).max() < 1e-5
    head = np.asarray(jit_forward(prm)(*rows[:2]))
    assert np.abs(np.asarray(got)[ends] - head[ends]).min() > 1e-3  # the combination acts


def test_a_plain_forward_is_refused_and_bad_parts_are_named(parts, toy_config, rows):
    prm, lm = parts
    with pytest.raises(TypeError, match="step_scores"):
        LikelihoodPRM(prm, lm, WEIGHTS)(*rows[:2])
    two_class = RewardModel(toy_config, "two_class", rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="sigmoid scalar head"):
        LikelihoodPRM(two_class, lm, WEIGHTS)
    with pytest.raises(ValueError, match="3 finite numbers"):
        LikelihoodPRM(prm, lm, (1.0, float("nan"), 0.0))
    with pytest.raises(ValueError, match="3 finite numbers"):
        LikelihoodPRM(prm, lm, (1.0, 2.0))
    other = CausalLM(toy_config.replace(vocab_size=toy_config.vocab_size + 1), rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="vocab_size"):
        LikelihoodPRM(prm, other, WEIGHTS)


def test_save_and_load_give_back_identical_step_scores(tmp_path, toy_tok, parts, rows):
    prm, lm = parts
    model = LikelihoodPRM(prm, lm, WEIGHTS)
    save_reward_model(model, tmp_path / "prm", kind="prm", tokenizer=toy_tok, metrics={"auc": 0.7})
    info = json.loads((tmp_path / "prm" / META_FILE).read_text())
    assert info["likelihood"]["lm"] == LM_DIR and info["head"] == "scalar" and info["sigmoid"]
    np.testing.assert_allclose(info["likelihood"]["weights"], WEIGHTS, rtol=1e-6)
    loaded, meta = load_reward_model(tmp_path / "prm")
    assert isinstance(loaded, LikelihoodPRM) and meta["metrics"] == {"auc": 0.7}
    np.testing.assert_allclose(
        np.asarray(loaded.step_scores(*rows)), np.asarray(model.step_scores(*rows)), atol=1e-6
    )
    with pytest.raises(ValueError, match="kind='prm'"):
        save_reward_model(model, tmp_path / "orm", kind="orm")
