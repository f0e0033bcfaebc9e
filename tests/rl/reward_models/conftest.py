"""Fixtures of tests/rl/reward_models: the toy tokenizer, a one-layer model config sized to it."""

import pytest

from rl.data.toy_tokenizer import toy_tokenizer
from tests.rl.reward_models.toy_rm import tiny_config


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def model_config(tok):
    """One layer: enough for the toy's arithmetic check, and quick to compile."""
    return tiny_config(tok, num_layers=1)
