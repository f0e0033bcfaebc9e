"""Reference equivalence with transformers (PyTorch, CPU) through `models.hf_io`."""

import json

import jax.numpy as jnp
import numpy as np
import pytest
import torch
import transformers
from flax import nnx
from safetensors import safe_open

from models import hf_io
from models.decoder import CausalLM
from models.heads import RewardModel, ValueModel
from tests.models.hf_reference import (
    build,
    hf_logits,
    jit_forward,
    left_padded,
    make_hf_model,
    max_abs,
    randomize_,
)

TOL = 1e-4  # fp32, max abs over logits


def _check_against_hf(hf_model, path, vocab=128):
    model = hf_io.load_causal_lm(path, jnp.float32)
    assert isinstance(model, CausalLM)
    fwd = jit_forward(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, vocab, size=(2, 16)).astype(np.int32)
    assert max_abs(fwd(ids), hf_logits(hf_model, ids)) < TOL

    ids, mask = left_padded(rng, batch=3, length=16, pads=(0, 3, 9), vocab=vocab)
    ours = np.asarray(fwd(ids, mask))
    ref = hf_logits(hf_model, ids, mask)
    real = mask.astype(bool)
    assert np.abs(ours[real] - ref[real]).max() < TOL
    return model


def test_qwen2_matches_transformers(qwen2_hf, qwen2_dir):
    model = _check_against_hf(qwen2_hf, qwen2_dir)
    assert model.config.tie_word_embeddings and model.lm_head is None
    assert model.config.attention_bias and not model.config.attention_out_bias
    assert model.config.rope_theta == 5000.0


def test_llama_matches_transformers(llama_hf, llama_dir):
    model = _check_against_hf(llama_hf, llama_dir)
    cfg = model.config
    assert (cfg.arch, cfg.head_dim, cfg.num_kv_heads, cfg.rope_type) == ("llama", 24, 1, "llama3")
    assert cfg.attention_bias and cfg.attention_out_bias and model.lm_head is not None


def test_sharded_checkpoint_with_index(tmp_path):
    hf_model = make_hf_model("qwen2", seed=3, tie_word_embeddings=False)
    hf_model.save_pretrained(tmp_path, max_shard_size="40KB")
    assert (tmp_path / hf_io.INDEX_FILE).exists()
    assert (
        len(set(json.loads((tmp_path / hf_io.INDEX_FILE).read_text())["weight_map"].values())) > 1
    )
    model = _check_against_hf(hf_model, tmp_path)
    assert model.lm_head is not None


def test_mistral_matches_transformers(mistral_hf, mistral_dir):
    model = _check_against_hf(mistral_hf, mistral_dir)
    cfg = model.config
    assert (cfg.arch, cfg.sliding_window, cfg.attention_bias) == ("mistral", 64, False)


@pytest.mark.parametrize("family", ["qwen2", "llama", "mistral"])
def test_saved_checkpoint_reloads_in_transformers(request, family, tmp_path):

    hf_model, hf_dir = (
        request.getfixturevalue(f"{family}_hf"),
        request.getfixturevalue(f"{family}_dir"),
    )
    model = hf_io.load_causal_lm(hf_dir)
    hf_io.save_causal_lm(model, tmp_path)
    reloaded = transformers.AutoModelForCausalLM.from_pretrained(
        tmp_path, attn_implementation="eager"
    )
    assert type(reloaded).__name__ == type(hf_model).__name__
    ids = np.random.default_rng(1).integers(0, 128, size=(2, 12)).astype(np.int32)
    ours = jit_forward(model)(ids)
    assert max_abs(hf_logits(reloaded.eval(), ids), ours) < TOL
    assert max_abs(hf_logits(hf_model, ids), ours) < TOL
    # And back through our loader, bit for bit.
    again = hf_io.load_causal_lm(tmp_path)
    assert max_abs(jit_forward(again)(ids), ours) == 0.0


def test_save_in_shards_and_bf16(qwen2_dir, tmp_path):
    model = hf_io.load_causal_lm(qwen2_dir)
    hf_io.save_causal_lm(model, tmp_path, dtype=jnp.bfloat16, max_shard_bytes=30_000)
    assert (tmp_path / hf_io.INDEX_FILE).exists()
    assert json.loads((tmp_path / "config.json").read_text())["torch_dtype"] == "bfloat16"
    again = hf_io.load_causal_lm(tmp_path, jnp.float32)
    ids = np.arange(24, dtype=np.int32).reshape(2, 12)
    assert max_abs(jit_forward(again)(ids), jit_forward(model)(ids)) < 0.1


def test_bf16_compute_close_to_fp32(qwen2_dir):
    ids = np.random.default_rng(2).integers(0, 128, size=(2, 16)).astype(np.int32)
    ref = jit_forward(hf_io.load_causal_lm(qwen2_dir))(ids)
    model = hf_io.load_causal_lm(qwen2_dir, jnp.bfloat16, param_dtype=jnp.float32)
    assert model.backbone.embed_tokens.embedding[...].dtype == jnp.float32
    out = jit_forward(model)(ids)
    assert out.dtype == jnp.float32
    assert max_abs(out, ref) < 0.1


@pytest.mark.parametrize("num_labels,kind", [(1, "scalar"), (2, "two_class")])
def test_token_classification_heads_match_transformers(tmp_path, num_labels, kind):

    config = transformers.Qwen2Config(
        vocab_size=128,
        hidden_size=64,
        intermediate_size=96,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        num_labels=num_labels,
    )
    torch.manual_seed(0)
    hf_model = transformers.Qwen2ForTokenClassification(config)
    hf_model.config._attn_implementation = "eager"
    randomize_(hf_model, seed=4)
    hf_model.eval().save_pretrained(tmp_path)
    model = hf_io.load_causal_lm(tmp_path, head=kind)
    ids = np.random.default_rng(3).integers(0, 128, size=(2, 10)).astype(np.int32)
    with torch.no_grad():
        ref = hf_model(torch.tensor(ids, dtype=torch.long)).logits.float()
    ref = ref[..., 0] if kind == "scalar" else torch.softmax(ref, -1)[..., 1]
    assert max_abs(jit_forward(model)(ids), ref.numpy()) < TOL

    # A critic initialised from this reward model's head (scalar only), and a save/load round trip.
    if kind == "scalar":
        critic = hf_io.load_causal_lm(tmp_path, head="value")
        assert isinstance(critic, ValueModel)
        assert max_abs(jit_forward(critic)(ids), ref.numpy()) < TOL
        hf_io.save_causal_lm(critic, tmp_path / "critic")
        again = transformers.AutoModelForTokenClassification.from_pretrained(tmp_path / "critic")
        with torch.no_grad():
            out = again.eval()(torch.tensor(ids, dtype=torch.long)).logits[..., 0].numpy()
        assert max_abs(out, ref.numpy()) < TOL


def test_mlp_score_head_round_trip(tiny_config, tmp_path):
    """Qwen2.5-Math-RM/PRM layout: score.0 (Linear D→D) – ReLU – score.2 (Linear D→C), with
    biases."""
    prm = build(
        lambda: RewardModel(
            tiny_config, "two_class", rngs=nnx.Rngs(0), mlp_head=True, head_bias=True
        )
    )
    hf_io.save_causal_lm(prm, tmp_path)
    with safe_open(str(tmp_path / hf_io.SINGLE_FILE), framework="numpy") as f:
        keys = set(f.keys())
    assert {"score.0.weight", "score.0.bias", "score.2.weight", "score.2.bias"} <= keys
    assert json.loads((tmp_path / "config.json").read_text())["num_labels"] == 2
    again = hf_io.load_causal_lm(tmp_path, head="two_class")
    assert again.score.dense is not None and again.score.out.bias is not None
    ids = np.arange(16, dtype=np.int32).reshape(2, 8)
    assert max_abs(jit_forward(again)(ids), jit_forward(prm)(ids)) == 0.0
    with pytest.raises(ValueError, match="has 2 outputs"):  # A 2-way head cannot be a critic's.
        hf_io.load_causal_lm(tmp_path, head="value")


def test_value_head_defaults_to_zero_without_head_weights(qwen2_dir):
    critic = hf_io.load_causal_lm(qwen2_dir, head="value")
    values = jit_forward(critic)(np.ones((1, 4), np.int32))
    assert values.shape == (1, 4) and float(jnp.abs(values).max()) == 0.0


def test_missing_reward_head_is_an_error(qwen2_dir):
    with pytest.raises(KeyError, match="score"):
        hf_io.load_causal_lm(qwen2_dir, head="two_class")


def test_unsupported_rope_scaling_names_the_field(tmp_path, qwen2_dir):
    config = json.loads((qwen2_dir / "config.json").read_text())
    config.pop("rope_parameters", None)
    config["rope_scaling"] = {"type": "yarn", "factor": 4.0, "original_max_position_embeddings": 32}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(ValueError, match=r"rope_scaling\.rope_type='yarn'"):
        hf_io.load_config(tmp_path)


def test_load_tokenizer_has_chat_template():
    tok = hf_io.load_tokenizer("models/assets/qwen2_tokenizer")
    assert tok.convert_tokens_to_ids("<|im_end|>") == 151645
    text = tok.apply_chat_template(
        [{"role": "user", "content": "1+1?"}], tokenize=False, add_generation_prompt=True
    )
    assert text.startswith("<|im_start|>user") and text.endswith("<|im_start|>assistant\n")
