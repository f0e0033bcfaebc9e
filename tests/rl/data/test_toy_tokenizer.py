"""The toy tokenizer: one token per character, exact round trip, loadable with AutoTokenizer."""

import pytest
from transformers import AutoTokenizer

from rl.data import toy
from rl.data.toy_tokenizer import ALPHABET, EOS, PAD, VOCAB, build_toy_tokenizer

TEXT = "Q: 7+5-3+8\n7+5=12\n12-3=9\n12-3=9\n9+8=17\n\\boxed{17}"


def test_vocabulary_is_tiny_with_pad_zero(toy_tok):
    assert len(toy_tok) == len(VOCAB) == 27
    assert toy_tok.pad_token == PAD and toy_tok.pad_token_id == 0
    assert toy_tok.eos_token == EOS and toy_tok.eos_token_id == 1
    assert toy_tok.chat_template is None
    # Every character the task writes is in the alphabet.
    for row in toy.generate("train", 200, seed=0):
        assert set(row.problem.question + "\n" + row.solution) <= set(ALPHABET)


def test_one_token_per_character_with_exact_offsets_and_round_trip(toy_tok):
    enc = toy_tok(TEXT, return_offsets_mapping=True)
    assert len(enc["input_ids"]) == len(TEXT)
    assert enc["offset_mapping"] == [(i, i + 1) for i in range(len(TEXT))]
    assert toy_tok.convert_ids_to_tokens(enc["input_ids"]) == list(TEXT)
    assert toy_tok.decode(enc["input_ids"]) == TEXT
    with_specials = enc["input_ids"] + [toy_tok.eos_token_id, toy_tok.pad_token_id]
    assert toy_tok.decode(with_specials) == TEXT + EOS + PAD
    assert toy_tok.decode(with_specials, skip_special_tokens=True) == TEXT


def test_special_tokens_in_text_are_single_tokens(toy_tok):
    assert toy_tok("9<eos>")["input_ids"] == [toy_tok.convert_tokens_to_ids("9"), 1]


def test_a_character_outside_the_alphabet_is_an_error_not_unk(toy_tok):
    with pytest.raises(Exception, match="UNK"):
        toy_tok("Q: 7*5")


def test_saved_directory_loads_with_auto_tokenizer(tmp_path, toy_tok):
    path = build_toy_tokenizer(tmp_path / "toy_tok")
    assert (path / "tokenizer.json").is_file() and (path / "tokenizer_config.json").is_file()
    loaded = AutoTokenizer.from_pretrained(path)
    assert loaded(TEXT)["input_ids"] == toy_tok(TEXT)["input_ids"]
    assert loaded.decode(loaded(TEXT)["input_ids"]) == TEXT
    assert (loaded.pad_token_id, loaded.eos_token_id, len(loaded)) == (0, 1, 27)
