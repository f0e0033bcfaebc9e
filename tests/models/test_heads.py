"""Reward heads score exactly the step-tag tokens (real Qwen tokenizer); critic copies the
policy."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models import hf_io
from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import Decoder
from models.heads import RewardHead, RewardModel, ValueModel, last_token_mask, score_at_positions
from tests.models.hf_reference import build, jit_apply, jit_forward, max_abs

STEPS = [
    "Step 1: 12 apples minus 5 eaten leaves 12-5=7.",
    "Step 2: Each of the 7 apples costs $3, so 7*3=21.",
    "The answer is 21.",
]
TAG = "ки"  # Math-Shepherd's step tag: one token in Qwen's vocabulary when tokenized on its own.


@pytest.fixture(scope="module")
def tokenizer():
    tok = hf_io.load_tokenizer("models/assets/qwen2_tokenizer")
    # Qwen2.5-Math-PRM's tag; not in the base vocabulary, so a PRM's tokenizer adds it as one token.
    tok.add_special_tokens({"additional_special_tokens": ["<extra_0>"]})
    return tok


@pytest.fixture(scope="module")
def prm_backbone():
    """One random trunk over the real Qwen2 vocabulary (151936 rows), shared by the three heads."""
    config = ModelConfig.from_dict(
        model_presets.tiny(
            vocab_size=151936, hidden_size=32, intermediate_size=64, num_layers=1
        ).to_dict()
    )
    return config, build(lambda: Decoder(config, rngs=nnx.Rngs(0)))


def _tagged_batch(tok, tag: str):
    """Row 0: question + 3 steps, row 1: the same question + its first 2 steps. Each step tokenized
    on its own, the tag appended as its own token (how the PRM scorer places tags), rows
    left-padded."""
    (tag_id,) = tok.encode(tag, add_special_tokens=False)
    rows = []
    for n in (3, 2):
        ids = tok.encode("Question: apples?\n", add_special_tokens=False)
        for step in STEPS[:n]:
            ids += tok.encode(step, add_special_tokens=False) + [tag_id]
        rows.append(ids)
    length = max(map(len, rows)) + 2
    ids = np.full((len(rows), length), tok.pad_token_id, np.int32)
    mask = np.zeros((len(rows), length), np.int32)
    for b, row in enumerate(rows):
        ids[b, length - len(row) :] = row
        mask[b, length - len(row) :] = 1
    return ids, mask, tag_id


@pytest.mark.parametrize(
    "kind,tag", [("scalar", TAG), ("token_prob", TAG), ("two_class", "<extra_0>")]
)
def test_scores_land_exactly_on_step_tags(tokenizer, prm_backbone, kind, tag):
    ids, mask, tag_id = _tagged_batch(tokenizer, tag)
    tag_mask = (ids == tag_id) & (mask == 1)
    assert tag_mask.sum(1).tolist() == [3, 2]
    assert all(tokenizer.decode([int(t)]) == tag for t in ids[tag_mask])

    config, backbone = prm_backbone
    plus, minus = (tokenizer.convert_tokens_to_ids(t) for t in ("+", "-"))
    model = RewardModel(
        config, kind, rngs=nnx.Rngs(1), good_token_id=plus, bad_token_id=minus, backbone=backbone
    )
    scores = np.asarray(jit_apply(model, score_at_positions)(ids, mask, tag_mask))
    assert scores.shape == ids.shape and scores.dtype == np.float32
    np.testing.assert_array_equal(scores != 0, tag_mask)
    if kind != "scalar":
        assert ((scores[tag_mask] > 0) & (scores[tag_mask] < 1)).all()
    # Row 1 is row 0's prefix with more left padding: its two step scores equal row 0's first two.
    np.testing.assert_allclose(scores[1][tag_mask[1]], scores[0][tag_mask[0]][:2], atol=1e-5)


def test_token_prob_is_two_way_softmax_of_lm_logits(tiny_model, tiny_forward, tiny_config):
    good, bad = 10, 12
    # Same config and seed as `tiny_model`, whose embeddings are tied: the same weights.
    prm = build(
        lambda: RewardModel(
            tiny_config, "token_prob", rngs=nnx.Rngs(0), good_token_id=good, bad_token_id=bad
        )
    )
    ids = np.arange(20, 36, dtype=np.int32).reshape(2, 8)
    p = jax.nn.softmax(tiny_forward(ids), -1)
    expected = p[..., good] / (p[..., good] + p[..., bad])
    assert max_abs(jit_forward(prm)(ids), expected) < 1e-5


def test_reward_head_validation(tiny_config):
    with pytest.raises(ValueError, match="good_token_id=None"):
        RewardHead("token_prob")
    with pytest.raises(ValueError, match="kind='pairwise'"):
        RewardHead("pairwise")
    with pytest.raises(ValueError, match="sigmoid"):
        RewardHead("two_class", sigmoid=True)
    with pytest.raises(ValueError, match="good_token_id=999 is outside vocab_size=256"):
        nnx.eval_shape(
            lambda: RewardModel(
                tiny_config, "token_prob", rngs=nnx.Rngs(0), good_token_id=999, bad_token_id=1
            )
        )


def test_last_token_mask():
    mask = np.array([[0, 0, 1, 1], [1, 1, 1, 0], [1, 1, 1, 1]])
    np.testing.assert_array_equal(last_token_mask(mask), [[0, 0, 0, 1], [0, 0, 1, 0], [0, 0, 0, 1]])


def test_value_model_backbone_copies_policy(tiny_model):
    critic = ValueModel.from_policy(tiny_model)
    p_leaves = jax.tree.leaves(nnx.state(tiny_model.backbone))
    c_leaves = jax.tree.leaves(nnx.state(critic.backbone))
    assert len(p_leaves) == len(c_leaves)
    for p, c in zip(p_leaves, c_leaves):
        np.testing.assert_array_equal(np.asarray(p), np.asarray(c))
        assert p is not c
    ids = np.arange(12, dtype=np.int32).reshape(2, 6)
    hidden, values = jit_apply(critic, lambda m, i: (m.backbone(i), m(i)))(ids)
    assert max_abs(hidden, jit_apply(tiny_model, lambda m, i: m.hidden(i))(ids)) == 0.0
    assert values.shape == (2, 6) and values.dtype == jnp.float32
    # The copy is independent: changing the critic leaves the policy alone.
    critic.backbone.norm.scale[...] = critic.backbone.norm.scale[...] * 2
    assert float(jnp.abs(tiny_model.backbone.norm.scale[...] - 1).max()) == 0.0
