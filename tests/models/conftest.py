"""Fixtures of tests/models: tiny random transformers checkpoints saved once per session."""

import pytest
from flax import nnx

from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.data.toy_tokenizer import toy_tokenizer
from tests.models.hf_reference import build, jit_forward, make_hf_model


@pytest.fixture(scope="session")
def toy_tok():
    return toy_tokenizer()


@pytest.fixture(scope="session")
def toy_config(toy_tok) -> ModelConfig:
    """One layer, sized to the toy tokenizer (the reward-model I/O tests' models)."""
    values = model_presets.tiny(
        vocab_size=len(toy_tok),
        eos_token_id=toy_tok.eos_token_id,
        pad_token_id=toy_tok.pad_token_id,
        bos_token_id=None,
        num_layers=1,
    )
    return ModelConfig.from_dict(values.to_dict())


@pytest.fixture(scope="session")
def tiny_config() -> ModelConfig:
    return ModelConfig.from_dict(model_presets.tiny().to_dict())


@pytest.fixture(scope="session")
def tiny_model(tiny_config) -> CausalLM:
    """A random tiny CausalLM (seed 0), shared; tests must not modify it."""
    return build(lambda: CausalLM(tiny_config, rngs=nnx.Rngs(0)))


@pytest.fixture(scope="session")
def tiny_forward(tiny_model):
    return jit_forward(tiny_model)


@pytest.fixture(scope="session")
def qwen2_hf():
    return make_hf_model("qwen2", seed=0)


@pytest.fixture(scope="session")
def qwen2_dir(qwen2_hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2_tiny")
    qwen2_hf.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def llama_hf():
    return make_hf_model("llama", seed=1)


@pytest.fixture(scope="session")
def llama_dir(llama_hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("llama_tiny")
    llama_hf.save_pretrained(path)
    return path


@pytest.fixture(scope="session")
def mistral_hf():
    return make_hf_model("mistral", seed=2)


@pytest.fixture(scope="session")
def mistral_dir(mistral_hf, tmp_path_factory):
    path = tmp_path_factory.mktemp("mistral_tiny")
    mistral_hf.save_pretrained(path)
    return path
