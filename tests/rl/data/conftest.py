"""Shared fixtures: one build cache per test session, the real Qwen tokenizer, the toy tokenizer."""

import pathlib

import pytest
from transformers import AutoTokenizer

from rl.data.toy_tokenizer import toy_tokenizer

ROOT = pathlib.Path(__file__).resolve().parents[3]
QWEN_TOKENIZER_DIR = ROOT / "models" / "assets" / "qwen2_tokenizer"


@pytest.fixture(scope="session")
def data_dir(tmp_path_factory):
    """A fresh TFDS cache for the session: every dataset is built once, by the first test using
    it."""
    return tmp_path_factory.mktemp("tfds")


@pytest.fixture(scope="session")
def qwen_tokenizer():

    return AutoTokenizer.from_pretrained(QWEN_TOKENIZER_DIR)


@pytest.fixture(scope="session")
def toy_tok():

    return toy_tokenizer()
