"""A tokenizer saved beside a checkpoint loads back as the same tokenizer."""

import pathlib

from flax import nnx

from models import hf_io
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.data.toy_tokenizer import toy_tokenizer

QWEN = pathlib.Path(__file__).resolve().parents[2] / "models" / "assets" / "qwen2_tokenizer"


def test_generic_tokenizer_next_to_a_qwen2_config_keeps_its_own_pre_tokenizer(tmp_path):
    """Regression: AutoTokenizer built a Qwen2Tokenizer here, which dropped spaces and newlines."""
    tok = toy_tokenizer()
    config = ModelConfig(
        vocab_size=len(tok),
        hidden_size=16,
        intermediate_size=32,
        num_layers=1,
        num_heads=2,
        num_kv_heads=1,
        attention_bias=True,
    )
    hf_io.save_causal_lm(CausalLM(config, rngs=nnx.Rngs(0)), tmp_path, tokenizer=tok)
    loaded = hf_io.load_tokenizer(tmp_path)
    text = "Q: 67-4+5\n67-4=63\n\\boxed{68}"
    assert (
        loaded(text, add_special_tokens=False)["input_ids"]
        == tok(text, add_special_tokens=False)["input_ids"]
    )
    assert loaded.decode(tok(text, add_special_tokens=False)["input_ids"]) == text


def test_qwen_tokenizer_loads_through_auto_tokenizer():
    tok = hf_io.load_tokenizer(QWEN)
    assert type(tok).__name__ == "Qwen2Tokenizer"
    assert tok("Step 1: 2+3=5.\n\n", add_special_tokens=False)["input_ids"][-1] == 382
