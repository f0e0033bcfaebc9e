"""SEAM: the rank-disagreement formula on hand-made rankings, its invariants, the prompt filter, and
end-to-end scoring with the real sampler on a tiny model (on a mesh)."""

import math
import tempfile

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.sharding import RULES
from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel
from models.prm import load_prm
from models.sharding import create_sharded, make_mesh, shard_model
from rewards.steps import batch_steps_and_ends
from rl import data
from rl.data.example import Example
from rl.data.toy_tokenizer import toy_tokenizer
from rl.eval import seam
from rl.eval.problems import encode
from rl.rollout.sampling_program import FinishReason
from tests.models import prm_reference as ref

NAN = float("nan")


# --- The formula -------------------------------------------------------------------------------


@pytest.mark.parametrize("method", seam.METHODS)
def test_perfect_agreement_is_0_and_reversal_is_1(method):
    policy = [-3.0, -1.0, -2.0, -0.5]
    assert seam.rank_disagreement(policy, [0.1, 0.5, 0.2, 0.9], method=method) == 0.0
    assert seam.rank_disagreement(policy, [0.9, 0.2, 0.5, 0.1], method=method) == 1.0


def test_partial_disagreement_by_hand():
    # Pairs (0,1): policy up, reward down -> discordant; (0,2), (1,2): concordant.
    assert seam.rank_disagreement([1, 2, 3], [2, 1, 3]) == pytest.approx(1 / 3)
    # Spearman: d = (1, 1, 0), rho = 1 - 6*2 / (3*8) = 0.5 -> (1 - 0.5) / 2.
    assert seam.rank_disagreement([1, 2, 3], [2, 1, 3], method="spearman") == pytest.approx(0.25)


def test_binary_reward_is_one_minus_auroc_and_ties_are_not_pairs():
    loglik = [0.1, 0.5, 0.3, 0.9]
    # Right answers are the two most likely: every (right, wrong) pair agrees.
    assert seam.rank_disagreement(loglik, [0, 1, 0, 1]) == 0.0
    # Right = {0.1, 0.9}, wrong = {0.5, 0.3}: 0.1 loses both pairs, 0.9 wins both -> 2 of 4.
    assert seam.rank_disagreement(loglik, [1, 0, 0, 1]) == 0.5
    # Ties on either side are not pairs: only (0, 2) and (1, 2) count, both discordant.
    assert seam.rank_disagreement([1.0, 1.0, 0.0], [0.0, 0.5, 1.0]) == 1.0


def test_spearman_uses_average_ranks_for_ties():
    # Policy ranks (1.5, 1.5, 3), reward ranks (1, 2, 3): deviations (-.5, -.5, 1) and (-1, 0, 1),
    # cov 1.5, variances 1.5 and 2 -> rho = 1.5 / sqrt(3).
    rho = 1.5 / math.sqrt(3.0)
    assert seam.rank_disagreement([1, 1, 2], [1, 2, 3], method="spearman") == pytest.approx(
        (1 - rho) / 2
    )


@pytest.mark.parametrize("method", seam.METHODS)
def test_undefined_without_a_ranked_pair(method):
    assert math.isnan(seam.rank_disagreement([1.0], [1.0], method=method))  # N < 2
    assert math.isnan(seam.rank_disagreement([], [], method=method))
    assert math.isnan(seam.rank_disagreement([1, 2, 3], [1, 1, 1], method=method))  # all right
    assert math.isnan(seam.rank_disagreement([2, 2, 2], [0, 1, 0], method=method))


def test_rank_disagreement_rejects_bad_input():
    with pytest.raises(ValueError, match="method='kendall'"):
        seam.rank_disagreement([1, 2], [1, 2], method="kendall")
    with pytest.raises(ValueError, match="two \\[N\\] arrays"):
        seam.rank_disagreement([1, 2], [1, 2, 3])
    with pytest.raises(ValueError, match="finite"):
        seam.rank_disagreement([1, NAN], [1, 2])


values = st.lists(st.integers(-4, 4), min_size=2, max_size=8)


@settings(max_examples=60, deadline=None)
@given(st.data())
def test_invariants(data):
    """In [0, 1]; depends on ranks only; reversing one side maps s to 1 - s."""
    p = np.asarray(data.draw(values), np.float64)
    r = np.asarray(
        data.draw(st.lists(st.integers(-4, 4), min_size=len(p), max_size=len(p))), np.float64
    )
    for method in seam.METHODS:
        s = seam.rank_disagreement(p, r, method=method)
        if math.isnan(s):
            continue
        assert 0.0 <= s <= 1.0
        assert seam.rank_disagreement(np.exp(p), 3 * r + 1, method=method) == pytest.approx(s)
        assert seam.rank_disagreement(-p, r, method=method) == pytest.approx(1 - s)


def test_seam_scores_per_prompt_over_valid_responses():
    policy = np.array([[1, 2, 3], [1, 2, 3]], np.float64)
    reward = np.array([[1, 2, 3], [3, 2, 0]], np.float64)
    valid = np.array([[True, True, True], [True, False, True]])
    np.testing.assert_allclose(seam.seam_scores(policy, reward), [0.0, 1.0])
    np.testing.assert_allclose(seam.seam_scores(policy, reward, valid), [0.0, 1.0])
    only_one = np.array([[True, False, False], [True, True, True]])
    got = seam.seam_scores(policy, reward, only_one)
    assert math.isnan(got[0]) and got[1] == 1.0


# --- The filter --------------------------------------------------------------------------------


EXAMPLES = [Example(id=f"q{i}", question=f"Q{i}", answer="1") for i in range(6)]
SCORES = [0.9, 0.1, NAN, 0.4, 0.1, 0.7]


def _ids(kept):
    return [ex.id for ex in kept]


def test_filter_keep_fraction_low_and_high():
    # Low: the 3 lowest are 0.1 (q1), 0.1 (q4), then NaN counted as 0.5 vs 0.4 (q3) -> q3.
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.5)) == ["q1", "q3", "q4"]
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.5, mode="high")) == [
        "q0",
        "q2",
        "q5",
    ]
    assert _ids(
        seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.5, mode="high", undefined_as=None)
    ) == ["q0", "q3", "q5"]
    # Ties at the cut keep dataset order; at least one prompt is kept.
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=1 / 6)) == ["q1"]
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.01)) == ["q1"]
    assert len(seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=1.0)) == 6


def test_filter_threshold():
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, threshold=0.4)) == ["q1", "q3", "q4"]
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, threshold=0.5)) == ["q1", "q2", "q3", "q4"]
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, threshold=0.5, undefined_as=None)) == [
        "q1",
        "q3",
        "q4",
    ]
    assert _ids(seam.filter_prompts(EXAMPLES, SCORES, threshold=0.7, mode="high")) == ["q0", "q5"]


def test_filter_validates_its_arguments():
    with pytest.raises(ValueError, match="exactly one"):
        seam.filter_prompts(EXAMPLES, SCORES)
    with pytest.raises(ValueError, match="exactly one"):
        seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.5, threshold=0.2)
    with pytest.raises(ValueError, match="keep_fraction=1.5"):
        seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=1.5)
    with pytest.raises(ValueError, match="mode='middle'"):
        seam.filter_prompts(EXAMPLES, SCORES, keep_fraction=0.5, mode="middle")
    with pytest.raises(ValueError, match="one per example"):
        seam.filter_prompts(EXAMPLES, SCORES[:3], keep_fraction=0.5)


# --- End to end --------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def toy():
    tok = toy_tokenizer()
    values = presets.tiny(vocab_size=len(tok)).to_dict()
    values.update(
        eos_token_id=tok.eos_token_id,
        pad_token_id=tok.pad_token_id,
        bos_token_id=None,
        num_layers=1,
    )
    config = ModelConfig.from_dict(values)
    examples = data.load(
        "toy", "test", data_dir=tempfile.mkdtemp(), seed=0, train_size=16, test_size=8
    )
    return tok, config, examples


@pytest.fixture(scope="module")
def orm_run(toy):
    """The real sampler on a (1, 8, 1) mesh; an ORM head on the policy's trunk as the reward."""
    tok, config, examples = toy
    mesh = make_mesh((1, -1, 1))
    policy = create_sharded(lambda: CausalLM(config, rngs=nnx.Rngs(0)), mesh, RULES)
    orm = shard_model(
        RewardModel(config, "scalar", rngs=nnx.Rngs(1), backbone=policy.backbone), mesh, RULES
    )
    graphdef, params = nnx.split(policy)
    result = seam.score_prompts(
        graphdef,
        params,
        tok,
        examples,
        dataset="toy",
        samples=4,
        reward="orm",
        reward_model=orm,
        max_new_tokens=10,
        batch_size=8,
        mesh=mesh,
        rules=RULES,
    )
    return graphdef, params, result


def test_score_prompts_end_to_end_on_a_mesh(toy, orm_run):
    """The log-likelihoods are the policy's own (checked against a full forward) and every score
    is the formula's over the prompt's distinct responses."""
    tok, _, examples = toy
    graphdef, params, result = orm_run
    e, n = len(examples), 4
    assert result.scores.shape == (e,) and result.loglik.shape == result.rewards.shape == (e, n)
    assert result.correct is None and len(result.generations.texts) == e * n
    for i in range(e):
        v = result.distinct[i]
        want = seam.rank_disagreement(result.loglik[i][v], result.rewards[i][v])
        assert (math.isnan(want) and math.isnan(result.scores[i])) or result.scores[i] == want
    assert np.all((result.scores[result.defined] >= 0) & (result.scores[result.defined] <= 1))
    assert result.defined.sum() >= e // 2  # random sampling gives distinct, differently-scored rows

    # The first prompt's responses: their mean log-prob under a full forward of the policy.
    gens = result.generations
    prompts = encode(examples[:1], tok, "toy")
    p = prompts.input_ids.shape[1]
    seq = np.concatenate([np.repeat(prompts.input_ids, n, 0), gens.tokens[:n]], 1)
    seq_mask = np.concatenate(
        [np.repeat(prompts.attention_mask, n, 0).astype(bool), gens.response_mask[:n]], 1
    )
    logits = jax.jit(lambda s, x, m: nnx.merge(graphdef, s)(x, m))(
        params, jnp.asarray(seq), jnp.asarray(seq_mask)
    )
    logp = np.asarray(jax.nn.log_softmax(logits[:, p - 1 : -1], axis=-1))
    per_token = np.take_along_axis(logp, gens.tokens[:n, :, None], axis=-1)[..., 0]
    want = (per_token * gens.response_mask[:n]).sum(1) / gens.response_mask[:n].sum(1)
    np.testing.assert_allclose(result.loglik[0], want, atol=1e-4)


def test_score_generations_with_the_verifier_then_filter(toy, orm_run):
    """The same responses judged by the verifier: a random policy answers nothing, so every reward
    is 0 and every SEAM undefined; the filter then ranks them all as 0.5 and keeps the requested
    fraction in dataset order."""
    tok, _, examples = toy
    graphdef, params, result = orm_run
    prompts = encode(examples, tok, "toy")
    judged = seam.score_generations(result.generations, prompts, examples, tok, dataset="toy")
    assert not judged.correct.any() and not judged.defined.any()
    np.testing.assert_array_equal(judged.loglik, result.loglik)
    total = seam.score_generations(
        result.generations, prompts, examples, tok, dataset="toy", length_normalize=False
    )
    np.testing.assert_allclose(
        total.loglik,
        result.loglik * result.generations.lengths.reshape(len(examples), -1),
        rtol=1e-5,
    )
    kept = seam.filter_prompts(examples, judged.scores, keep_fraction=0.25)
    assert [ex.id for ex in kept] == [ex.id for ex in examples[:2]]
    assert seam.filter_prompts(examples, judged.scores, keep_fraction=0.25, undefined_as=None) == []
    with pytest.raises(ValueError, match="needs a reward_model"):
        seam.score_prompts(graphdef, params, tok, examples, dataset="toy", reward="orm")
    with pytest.raises(ValueError, match="at least 2"):
        seam.score_prompts(graphdef, params, tok, examples, dataset="toy", samples=1)


def test_score_generations_with_a_published_prm_of_another_tokenizer(toy, orm_run, tmp_path):
    """SEAM's reward from a Qwen2.5-Math-PRM-format PRM (Qwen tokenizer) on toy-tokenizer
    responses: each response's reward is the min over its complete steps of `score_steps`."""
    tok, _, examples = toy
    _, _, result = orm_run
    ref.write_qwen_math_prm(tmp_path, ref.qwen_tokenizer())
    prm = load_prm(tmp_path, "qwen_math_prm")
    prompts = encode(examples, tok, "toy")
    gens = result.generations
    judged = seam.score_generations(
        gens, prompts, examples, tok, dataset="toy", reward="prm", reward_model=prm
    )
    truncated = np.asarray(gens.finish_reason) == FinishReason.LENGTH
    _, steps = batch_steps_and_ends(tok, gens.tokens, gens.response_mask, "\n", truncated)
    n = gens.samples_per_prompt
    want = prm.score_steps([ex.question for ex in examples for _ in range(n)], steps)
    want_min = np.array([min(s) if s else np.nan for s in want]).reshape(len(examples), n)
    np.testing.assert_allclose(judged.rewards, want_min, atol=1e-6)
