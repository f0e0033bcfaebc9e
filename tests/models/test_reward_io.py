"""Saved reward models reload with the head they were trained with (identical scores), the
implicit PRM reloads as a CausalLM, the tokenizer saved beside them reloads, and the metadata file
says what each checkpoint is."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from models import hf_io
from models.decoder import CausalLM
from models.heads import RewardHead, RewardModel
from models.reward_io import KINDS, META_FILE, load_reward_model, save_reward_model
from tests.models.hf_reference import jit_forward


@pytest.fixture(scope="module")
def rows(toy_config):
    ids = np.asarray(jax.random.randint(jax.random.key(1), (4, 12), 2, toy_config.vocab_size))
    mask = np.arange(12)[None, :] >= np.array([0, 3, 5, 1])[:, None]  # left-padded rows
    return np.where(mask, ids, 0).astype(np.int32), mask


def prm_with_a_random_head(toy_config):
    """A PRM as the trainer makes one (sigmoid scalar head with a bias), its head not at zero."""
    prm = RewardModel(toy_config, "scalar", rngs=nnx.Rngs(0), sigmoid=True, head_bias=True)
    out = prm.score.out
    out.kernel[...] = jax.random.normal(jax.random.key(0), out.kernel.shape)
    return prm


def test_saved_reward_models_reload_with_identical_scores(tmp_path, toy_tok, toy_config, rows):
    prm = prm_with_a_random_head(toy_config)
    save_reward_model(prm, tmp_path / "prm", kind="prm", tokenizer=toy_tok, step_separator="\n")
    loaded, info = load_reward_model(tmp_path / "prm")
    assert info == {"kind": "prm", "head": "scalar", "sigmoid": True, "step_separator": "\n"}
    want = np.asarray(jit_forward(prm)(*rows))
    assert want.min() >= 0 and want.max() <= 1 and want.std() > 0
    np.testing.assert_allclose(np.asarray(jit_forward(loaded)(*rows)), want, atol=1e-6)
    # The plain loader gives the same scores when told the head is sigmoid-squashed.
    plain = hf_io.load_causal_lm(tmp_path / "prm", head=RewardHead("scalar", sigmoid=True))
    np.testing.assert_allclose(np.asarray(jit_forward(plain)(*rows)), want, atol=1e-6)
    text = "Q: 7+5\n7+5=12\n\\boxed{12}"
    reloaded = hf_io.load_tokenizer(tmp_path / "prm")
    assert reloaded(text)["input_ids"] == toy_tok(text)["input_ids"]
    assert (reloaded.eos_token_id, reloaded.pad_token_id) == (
        toy_tok.eos_token_id,
        toy_tok.pad_token_id,
    )

    reference = CausalLM(toy_config, rngs=nnx.Rngs(4))
    policy = CausalLM(toy_config, rngs=nnx.Rngs(4))
    policy.backbone.norm.scale[...] = policy.backbone.norm.scale[...] * 1.1
    save_reward_model(policy, tmp_path / "implicit", kind="implicit_prm", beta=0.05)
    loaded, info = load_reward_model(tmp_path / "implicit")
    assert isinstance(loaded, CausalLM) and info == {"kind": "implicit_prm", "beta": 0.05}
    want = np.asarray(jit_forward(policy)(*rows))
    assert np.abs(want - np.asarray(jit_forward(reference)(*rows))).max() > 1e-3
    np.testing.assert_allclose(np.asarray(jit_forward(loaded)(*rows)), want, atol=1e-5)


def test_metadata_file_and_kind_check(tmp_path, toy_config):
    prm = prm_with_a_random_head(toy_config)
    save_reward_model(prm, tmp_path, kind="orm", data_source="synthetic", eval={"auc": 0.5})
    info = json.loads((tmp_path / META_FILE).read_text())
    assert info == {
        "kind": "orm",
        "head": "scalar",
        "sigmoid": True,
        "data_source": "synthetic",
        "eval": {"auc": 0.5},
    }
    assert (tmp_path / "config.json").exists()
    with pytest.raises(ValueError, match=r"kind='value': must be one of"):
        save_reward_model(prm, tmp_path / "bad", kind="value")
    assert KINDS == ("orm", "prm", "implicit_prm") and not (tmp_path / "bad").exists()
