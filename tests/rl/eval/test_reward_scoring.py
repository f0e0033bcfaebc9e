"""Reward-model scores read at the right tokens: an ORM's at the last response token, a PRM's at
the step ends, checked against the model's own forward over prompt + response."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.heads import RewardModel
from models.likelihood_prm import LikelihoodPRM
from models.prm import load_prm
from rl.eval import reward_scoring
from rl.eval.generation import Generations
from rl.eval.problems import encode
from rl.rollout.sampling_program import FinishReason
from tests.models import prm_reference as ref


def test_orm_and_prm_scores_read_the_right_positions():
    scores = np.array([[0.1, 0.2, 0.3, 0.4], [0.5, 0.6, 0.7, 0.8]], np.float32)
    response = np.array([[1, 1, 1, 0], [1, 1, 1, 1]], bool)
    np.testing.assert_allclose(reward_scoring.orm_scores(scores, response), [0.3, 0.8])
    ends = np.array([[1, 0, 1, 0], [0, 0, 0, 0]], bool)
    got = reward_scoring.prm_step_scores(scores, ends)
    np.testing.assert_allclose(got[0], [0.1, 0.3])
    assert got[1].size == 0


def _one_response(toy_tok, text: str, pad: int = 3) -> Generations:
    """`text` + EOS as the single response of one prompt, `pad` padding tokens after it."""
    ids = toy_tok(text, add_special_tokens=False)["input_ids"] + [toy_tok.eos_token_id]
    r = len(ids) + pad
    tokens = np.full((1, r), toy_tok.pad_token_id, np.int32)
    tokens[0, : len(ids)] = ids
    mask = np.arange(r)[None] < len(ids)
    return Generations(
        tokens, mask, np.zeros((1, r), np.float32), np.array([len(ids)]), np.array([1]), [text], 1
    )


def test_reward_scores_are_the_models_at_step_ends_and_last_token(toy_tok, prm, toy_examples):
    """Against the reward model's own forward over prompt + response, positions found by hand."""
    ex = toy_examples[0]
    prompts = encode([ex], toy_tok, "toy")
    p = prompts.input_ids.shape[1]
    text = "1+2=3\n3+4=7\n\\boxed{7}"
    ids = toy_tok(text, add_special_tokens=False)["input_ids"] + [toy_tok.eos_token_id]
    r = len(ids) + 3
    tokens = np.full((1, r), toy_tok.pad_token_id, np.int32)
    tokens[0, : len(ids)] = ids
    mask = np.arange(r)[None] < len(ids)
    gens = Generations(
        tokens, mask, np.zeros((1, r), np.float32), np.array([len(ids)]), np.array([1]), [text], 1
    )
    scorer = reward_scoring.RewardScorer(prm, chunk_rows=1)
    seq = np.concatenate([prompts.input_ids, tokens], 1)
    seq_mask = np.concatenate([prompts.attention_mask.astype(bool), mask], 1)
    graphdef, state = nnx.split(prm)
    forward = jax.jit(lambda st, i, m: nnx.merge(graphdef, st)(i, m))
    full = np.asarray(forward(state, jnp.asarray(seq), jnp.asarray(seq_mask)))[0, p:]
    # Steps end at "3" (char 4), "7" (char 10) and "}" (char 20, the last text token); one char
    # per token, so those are the token positions. The ORM reads the EOS right after.
    want_steps = full[[4, 10, 20]]
    score, ret, steps = reward_scoring.reward_scores(
        scorer, "prm", gens, prompts, toy_tok, separator="\n", aggregation="min"
    )
    np.testing.assert_allclose(steps[0], want_steps, rtol=1e-5)
    assert score[0] == pytest.approx(want_steps.min(), rel=1e-5)
    assert ret[0] == pytest.approx(want_steps.sum(), rel=1e-5)
    score, ret, _ = reward_scoring.reward_scores(
        scorer, "orm", gens, prompts, toy_tok, separator="\n", aggregation="min"
    )
    assert score[0] == pytest.approx(full[len(ids) - 1], rel=1e-5) and ret == [None]


def test_a_likelihood_prm_is_scored_with_the_responses_step_ends(
    toy_tok, toy_config, policy, toy_examples
):
    """Its step scores are the model's own ``step_scores`` over prompt + response, with the
    response's step ends found from the text; without step ends the scorer refuses."""
    head = RewardModel(toy_config, "scalar", rngs=nnx.Rngs(2), sigmoid=True, head_bias=True)
    head.score.out.kernel[...] = jax.random.normal(jax.random.key(1), head.score.out.kernel.shape)
    model = LikelihoodPRM(head, policy, (0.9, 1.5, 0.2))
    prompts = encode(toy_examples[:1], toy_tok, "toy")
    p = prompts.input_ids.shape[1]
    text = "1+2=3\n3+4=7\n\\boxed{7}"
    gens = _one_response(toy_tok, text)
    r = gens.tokens.shape[1]
    ends = np.zeros((1, r), bool)
    ends[0, [4, 10, 20]] = True  # one char per token, as in the test above
    seq = np.concatenate([prompts.input_ids, gens.tokens], 1)
    seq_mask = np.concatenate([prompts.attention_mask.astype(bool), gens.response_mask], 1)
    before = np.zeros_like(prompts.input_ids, bool)
    full = model.step_scores(
        jnp.asarray(seq),
        jnp.asarray(seq_mask),
        jnp.asarray(np.concatenate([before, gens.response_mask], 1)),
        jnp.asarray(np.concatenate([before, ends], 1)),
    )
    want = np.asarray(full)[0, p:][[4, 10, 20]]
    scorer = reward_scoring.RewardScorer(model, chunk_rows=1)
    _, _, steps = reward_scoring.reward_scores(
        scorer, "prm", gens, prompts, toy_tok, separator="\n", aggregation="min"
    )
    np.testing.assert_allclose(steps[0], want, rtol=1e-5)
    with pytest.raises(ValueError, match="step_end_MxR"):
        scorer(prompts.input_ids, prompts.attention_mask, gens.tokens, gens.response_mask)


def test_scorer_chunks_pad_with_repeats_and_drop_them(toy_tok, prm, toy_examples):
    """3 rows in chunks of 2 (the last padded with a repeat) score exactly as one chunk of 3."""
    prompts = encode(toy_examples[:3], toy_tok, "toy")
    r = 8
    rng = np.random.default_rng(0)
    tokens = rng.integers(2, 12, size=(3, r)).astype(np.int32)  # digits
    mask = np.arange(r)[None] < np.array([[8], [5], [2]])
    args = (prompts.input_ids, prompts.attention_mask, tokens, mask)
    chunked = reward_scoring.RewardScorer(prm, chunk_rows=2)(*args)
    whole = reward_scoring.RewardScorer(prm, chunk_rows=3)(*args)
    assert chunked.shape == (3, r) and chunked.dtype == np.float32
    np.testing.assert_allclose(chunked, whole, rtol=1e-5, atol=1e-6)


def test_reward_scores_names_an_unknown_kind(toy_tok, toy_examples):
    prompts = encode(toy_examples[:1], toy_tok, "toy")
    gens = _one_response(toy_tok, "1+2=3")
    zeros = lambda ids, mask, tokens, response: np.zeros(tokens.shape, np.float32)  # noqa: E731
    with pytest.raises(ValueError, match="reward_kind='value'"):
        reward_scoring.reward_scores(
            zeros, "value", gens, prompts, toy_tok, separator="\n", aggregation="min"
        )


def test_a_published_prm_ranks_the_complete_steps_in_its_own_tokens(
    toy_tok, toy_examples, tmp_path
):
    """Best-of-N with a Qwen2.5-Math-PRM-format PRM (Qwen tokenizer) over toy-tokenizer responses:
    its step scores are `score_steps` of the question and the complete steps; a length-truncated
    response's fragment is not scored."""
    ref.write_qwen_math_prm(tmp_path, ref.qwen_tokenizer())
    published = load_prm(tmp_path, "qwen_math_prm")
    texts = ["1+2=3\n3+4=7\n\\boxed{7}", "1+2=3\n3+4="]
    r = 24
    tokens = np.zeros((2, r), np.int32)
    for b, t in enumerate(texts):
        ids = toy_tok(t, add_special_tokens=False)["input_ids"] + ([toy_tok.eos_token_id], [])[b]
        tokens[b, : len(ids)] = ids
    lengths = np.array([len(texts[0]) + 1, len(texts[1])])
    mask = np.arange(r)[None] < lengths[:, None]
    finish = np.array([int(FinishReason.EOS), int(FinishReason.LENGTH)])
    gens = Generations(tokens, mask, np.zeros((2, r), np.float32), lengths, finish, texts, 2)
    question = toy_examples[0].question
    prompts = encode(toy_examples[:1], toy_tok, "toy")
    score, ret, steps = reward_scoring.reward_scores(
        published,
        "prm",
        gens,
        prompts,
        toy_tok,
        separator="\n",
        aggregation="min",
        questions_M=[question] * 2,
    )
    want = published.score_steps([question] * 2, [["1+2=3", "3+4=7", "\\boxed{7}"], ["1+2=3"]])
    np.testing.assert_allclose(steps[0], want[0], atol=1e-6)
    np.testing.assert_allclose(steps[1], want[1], atol=1e-6)
    assert score == [min(want[0]), min(want[1])]
    assert ret == pytest.approx([sum(want[0]), sum(want[1])])


def test_the_scorer_reads_only_the_used_columns_and_scores_as_the_full_width(
    toy_tok, prm, toy_examples
):
    """Prompts left-padded to 64 and responses padded 40 past the longest: the scorer cuts both
    to the used widths rounded up to 16 (hand-computed), and its scores at every real response
    position are the model's over the full-width rows; columns past every response are 0."""
    prompts = encode(toy_examples[:3], toy_tok, "toy", max_prompt_len=64)
    longest_prompt = int(prompts.attention_mask.sum(1).max())
    r = 60
    rng = np.random.default_rng(1)
    tokens = rng.integers(2, 12, size=(3, r)).astype(np.int32)
    lengths = np.array([20, 7, 3])
    mask = np.arange(r)[None] < lengths[:, None]
    assert reward_scoring._used_widths(prompts.attention_mask, mask) == (
        16 * -(-longest_prompt // 16),
        32,
    )
    got = reward_scoring.RewardScorer(prm, chunk_rows=2)(
        prompts.input_ids, prompts.attention_mask, tokens, mask
    )
    seq = np.concatenate([prompts.input_ids, tokens], 1)
    seq_mask = np.concatenate([prompts.attention_mask.astype(bool), mask], 1)
    graphdef, state = nnx.split(prm)
    full = np.asarray(
        jax.jit(lambda st, i, m: nnx.merge(graphdef, st)(i, m))(
            state, jnp.asarray(seq), jnp.asarray(seq_mask)
        )
    )[:, 64:]
    assert got.shape == (3, r)
    np.testing.assert_allclose(got[mask], full[mask], rtol=1e-5, atol=1e-6)
    assert not got[:, 32:].any()
