"""The run's tokenizer: which directory wins, the toy fallback and the error without one; the stop
ids of the shipped Qwen2 tokenizer; cutting decoded text at a stop string."""

import pathlib

import pytest

from models import hf_io
from rl.config import ConfigError
from rl.data.toy_tokenizer import toy_tokenizer
from rl.rollout.tokenizer import cut_at_stop, load_tokenizer, stop_token_ids

QWEN = pathlib.Path(__file__).resolve().parents[3] / "models" / "assets" / "qwen2_tokenizer"


@pytest.fixture(scope="module")
def qwen():
    return hf_io.load_tokenizer(QWEN)


def test_stop_token_ids_of_the_qwen2_tokenizer(qwen):
    """EOS (<|im_end|> in this chat tokenizer) and <|endoftext|>; Llama 3's <|eot_id|> is absent."""
    ids = stop_token_ids(qwen)
    assert ids == tuple(sorted(ids)) and qwen.eos_token_id in ids
    assert [qwen.convert_ids_to_tokens(i) for i in ids] == ["<|endoftext|>", "<|im_end|>"]
    assert ids == (151643, 151645)


def test_stop_token_ids_of_the_toy_tokenizer():
    tok = toy_tokenizer()
    assert stop_token_ids(tok) == (tok.eos_token_id,)


def test_cut_at_stop():
    assert cut_at_stop("a\n\nQuestion: b", ["Question:"]) == "a\n\nQuestion:"
    assert cut_at_stop("abc", ["x"]) == "abc"
    assert cut_at_stop("abc", []) == "abc"
    # The earliest end among the stop strings that occur, not the first listed.
    assert cut_at_stop("one. two\n\nthree.", ["\n\n", "."]) == "one."
    assert cut_at_stop("x\n\ny\n\nz", ["\n\n"]) == "x\n\n"


def test_load_tokenizer_takes_the_first_directory_given(qwen):
    tok = load_tokenizer("", str(QWEN), "/no/such/dir", dataset="gsm8k")
    text = "Step 1: 2+3=5.\n\n"
    assert tok(text)["input_ids"] == qwen(text)["input_ids"]


def test_load_tokenizer_falls_back_to_the_toy_tokenizer():
    tok = load_tokenizer("", "", dataset="toy")
    want = toy_tokenizer()
    assert tok.get_vocab() == want.get_vocab()
    assert (tok.eos_token_id, tok.pad_token_id) == (want.eos_token_id, want.pad_token_id)


def test_load_tokenizer_without_a_directory_names_the_config_keys():
    with pytest.raises(ConfigError) as err:
        load_tokenizer("", "", dataset="gsm8k")
    assert str(err.value) == (
        "config.tokenizer='': data.dataset='gsm8k' with no checkpoint path (a random-weight "
        "model) needs a tokenizer directory"
    )
