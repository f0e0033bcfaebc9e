"""Tiny models on the toy task, shared by the reward-scoring and evaluator tests: the toy
tokenizer, a 1-layer policy, a 2-class PRM head on its trunk, and 6 held-out toy problems."""

import jax
import pytest
from flax import nnx

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel
from rl import data
from rl.data.toy_tokenizer import toy_tokenizer


@pytest.fixture(scope="module")
def toy_tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def toy_config(toy_tok):
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
    return data.load(
        "toy", "test", data_dir=tmp_path_factory.mktemp("tfds"), seed=0, train_size=16, test_size=6
    )
