"""Step splitting and step-end masks, with the real Qwen tokenizer and a character-level one."""

import functools
import pathlib

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from rewards import steps

QWEN_DIR = pathlib.Path(__file__).resolve().parents[2] / "models" / "assets" / "qwen2_tokenizer"
CHARS = "abc xyz\n\\{}0123456789+-=.:é"


@functools.cache
def qwen():
    return AutoTokenizer.from_pretrained(QWEN_DIR)


@functools.cache
def char_tokenizer():
    """One token per character; ids 0 and 1 are <pad> and <eos>."""
    vocab = {c: i for i, c in enumerate(["<pad>", "<eos>", *CHARS])}
    tok = Tokenizer(models.WordLevel(vocab, unk_token="<pad>"))
    tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
    tok.decoder = decoders.Fuse()
    return PreTrainedTokenizerFast(tokenizer_object=tok, eos_token="<eos>", pad_token="<pad>")


def test_split_steps_spans():
    text = "  a b\n\nc\n\n\n\n d \n\n"
    assert steps.split_steps(text) == [(2, 5), (7, 8), (13, 14)]
    assert steps.step_texts(text) == ["a b", "c", "d"]
    assert steps.step_texts("x\ny\n\nz", sep="\n") == ["x", "y", "z"]
    assert steps.split_steps("") == []
    assert steps.split_steps("\n\n \n\n") == []
    with pytest.raises(ValueError, match="sep.*''"):
        steps.split_steps("abc", sep="")


def test_repeated_step_fraction():
    assert steps.repeated_step_fraction([]) == 0.0
    assert steps.repeated_step_fraction(["1+1=2", "2+2=4"]) == 0.0
    assert steps.repeated_step_fraction(["1+1=2", "1+1 = 2", "1+1=2", " 1+1=2 "]) == 0.5


def test_qwen_step_ends_with_merged_separator_eos_and_padding():
    tok = qwen()
    text = "Step 1: 2+3=5.\n\nStep 2: so \\boxed{5}"
    ids = tok(text, add_special_tokens=False)["input_ids"]
    # Qwen merges ".\n\n" into one token (382): step 1 ends on it.
    assert ids[10] == 382 and len(ids) == 21
    eos, pad = tok.convert_tokens_to_ids("<|im_end|>"), tok.pad_token_id
    ids_T = np.array(ids + [eos, pad, pad])
    response_T = np.array([True] * 22 + [False] * 2)
    mask_T = steps.step_end_mask(tok, ids_T, response_T)
    assert np.flatnonzero(mask_T).tolist() == [10, 20]


def test_qwen_left_of_padding_and_batch():
    tok = qwen()
    a = tok("1+1=2\n\n2+2=4\n\n\\boxed{4}", add_special_tokens=False)["input_ids"]
    b = tok("x=3", add_special_tokens=False)["input_ids"]
    t = max(len(a), len(b)) + 2
    ids = np.full((2, t), tok.pad_token_id)
    resp = np.zeros((2, t), bool)
    ids[0, : len(a)], resp[0, : len(a)] = a, True
    ids[1, : len(b)], resp[1, : len(b)] = b, True
    masks = steps.step_end_masks(tok, ids, resp)
    assert masks.shape == (2, t)
    assert masks[0].sum() == 3 and masks[0, len(a) - 1]
    assert np.flatnonzero(masks[1]).tolist() == [len(b) - 1]
    assert not masks[:, len(a) :].any()


def test_qwen_non_canonical_sample_uses_sampled_tokens():
    """A sample spelled one character per token still gets step ends on its own tokens."""
    tok = qwen()
    text = "12+3=15\n\n15+1=16"
    ids = [tok.convert_tokens_to_ids(tok.tokenize(ch))[0] for ch in text]
    assert ids != tok(text, add_special_tokens=False)["input_ids"]
    mask_T = steps.step_end_mask(tok, ids)
    assert np.flatnonzero(mask_T).tolist() == [6, len(text) - 1]


def test_qwen_multibyte_character_split_across_byte_tokens():
    """A character whose bytes span several tokens is credited to the token that completes it."""
    tok = qwen()
    enc = functools.partial(tok, add_special_tokens=False)
    # Byte-level BPE has a token for every byte: spell the emoji's 4 UTF-8 bytes one per token.
    emoji_bytes = tok.convert_tokens_to_ids(["ð", "Ł", "Ļ", "Ĥ"])
    ids = enc("a=1 ")["input_ids"] + emoji_bytes + enc("\n\nb=2")["input_ids"]
    text, spans = steps.token_char_spans(tok, ids)
    assert text == "a=1 🙂\n\nb=2"
    first_byte = len(enc("a=1 ")["input_ids"])
    assert [spans[first_byte + i][1] - spans[first_byte + i][0] for i in range(4)] == [0, 0, 0, 1]
    assert np.flatnonzero(steps.step_end_mask(tok, ids)).tolist() == [first_byte + 3, len(ids) - 1]


def test_char_tokenizer_step_ends_and_newline_separator():
    tok = char_tokenizer()
    text = "1+2=3\n3+4=7\n\\boxed{7}"
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id, 0, 0]
    resp = [True] * (len(text) + 1) + [False, False]
    mask_T = steps.step_end_mask(tok, ids, resp, sep="\n")
    assert np.flatnonzero(mask_T).tolist() == [4, 10, len(text) - 1]
    mask2_T = steps.step_end_mask(tok, ids, resp)  # "\n\n": one step
    assert np.flatnonzero(mask2_T).tolist() == [len(text) - 1]


@settings(max_examples=60, deadline=None)
@given(st.text(alphabet="ab \n", max_size=40), st.sampled_from(["\n", "\n\n"]))
def test_char_tokenizer_masks_match_character_spans(text, sep):
    tok = char_tokenizer()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    mask_T = steps.step_end_mask(tok, ids, sep=sep)
    assert np.flatnonzero(mask_T).tolist() == [b - 1 for _, b in steps.split_steps(text, sep)]


@settings(max_examples=30, deadline=None)
@given(st.text(alphabet="ab 12é\n", max_size=30), st.sampled_from(["\n", "\n\n"]))
def test_qwen_masks_count_steps_and_cover_step_ends(text, sep):
    tok = qwen()
    ids = tok(text, add_special_tokens=False)["input_ids"]
    decoded, spans = steps.token_char_spans(tok, ids)
    assert decoded == text
    positions = np.flatnonzero(steps.step_end_mask(tok, ids, sep=sep))
    step_spans = steps.split_steps(text, sep)
    assert len(positions) == len(step_spans)
    for pos, (_, end) in zip(positions, step_spans):
        assert spans[pos][0] <= end - 1 < spans[pos][1]


def test_tag_steps():
    tagged, starts = steps.tag_steps("a=1\n\n b=2 \n\n", "ки")
    assert tagged == "a=1 ки\n\nb=2 ки"
    assert [tagged[s : s + 2] for s in starts] == ["ки", "ки"]


def test_bad_shapes_name_the_arrays():
    with pytest.raises(ValueError, match="ids_T and response_T"):
        steps.step_end_mask(char_tokenizer(), [2, 3, 4], [True, False])


def test_a_truncated_responses_trailing_fragment_is_no_step():
    # Cut mid-step by the length limit: "3+4=" is a fragment, not a step.
    assert steps.step_texts("1+2=3\n3+4=", "\n", truncated=True) == ["1+2=3"]
    # Cut right after a separator: every piece before it is a complete step.
    assert steps.step_texts("1+2=3\n3+4=7\n", "\n", truncated=True) == ["1+2=3", "3+4=7"]
    # Ended by EOS or a stop string: the last step counts.
    assert steps.step_texts("1+2=3\n3+4=", "\n", truncated=False) == ["1+2=3", "3+4="]
    # A truncated response of one fragment has no step at all.
    assert steps.step_texts("1+2", "\n", truncated=True) == []
    assert steps.step_texts("", "\n", truncated=True) == []


def test_truncated_rows_lose_the_fragments_step_end_only():
    tok = char_tokenizer()
    texts = ["1+2=3\n3+4=", "1+2=3\n3+4="]
    ids = np.array([tok(t, add_special_tokens=False)["input_ids"] for t in texts])
    resp = np.ones(ids.shape, bool)
    masks = steps.step_end_masks(tok, ids, resp, "\n", truncated_B=[True, False])
    assert np.flatnonzero(masks[0]).tolist() == [4]
    assert np.flatnonzero(masks[1]).tolist() == [4, 9]


def test_step_scores_land_on_the_policys_kth_step_end():
    step_end = np.array(
        [
            [0, 1, 0, 0, 1, 0, 1],  # three steps
            [0, 0, 0, 0, 0, 0, 0],  # no step (empty or a single fragment)
            [1, 0, 0, 1, 0, 0, 0],  # two steps, the second not scored by the PRM (cut)
        ],
        bool,
    )
    scores = np.array([[0.9, 0.5, 0.25], [0.7, 0.7, 0.7], [0.3, 0.8, 0.1]], np.float32)
    valid = np.array([[1, 1, 1], [0, 0, 0], [1, 0, 0]], bool)
    out = steps.place_step_scores(scores, valid, step_end)
    np.testing.assert_array_equal(
        out,
        np.array(
            [
                [0, 0.9, 0, 0, 0.5, 0, 0.25],
                [0, 0, 0, 0, 0, 0, 0],
                [0.3, 0, 0, 0, 0, 0, 0],
            ],
            np.float32,
        ),
    )
    # More step ends than scored steps: the extra ends get 0.
    out = steps.place_step_scores(scores[:1, :2], valid[:1, :2], step_end[:1])
    np.testing.assert_array_equal(out, np.array([[0, 0.9, 0, 0, 0.5, 0, 0]], np.float32))


def test_step_texts_stay_aligned_with_step_ends():
    """The texts a PRM scores are the policy's steps, one per step end, also for Qwen BPE."""
    tok = qwen()
    text = "Step one: 2+2=4.\n\nStep two: 4*3=12.\n\nSo the answer is \\boxed{12}."
    ids = tok(text, add_special_tokens=False)["input_ids"] + [tok.eos_token_id]
    mask, texts = steps.steps_and_ends(tok, ids, sep="\n\n")
    assert texts == steps.step_texts(text, "\n\n")
    assert int(mask.sum()) == len(texts) == 3
    # A truncated copy (no EOS, cut inside the last step) keeps the two complete steps.
    cut = tok(text[:-8], add_special_tokens=False)["input_ids"]
    mask, texts = steps.steps_and_ends(tok, cut, sep="\n\n", truncated=True)
    assert texts == ["Step one: 2+2=4.", "Step two: 4*3=12."] and int(mask.sum()) == 2
