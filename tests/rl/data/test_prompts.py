"""Prompt formatting (chat template / plain) and left-padded tokenization into one length bucket."""

import logging

import numpy as np
import pytest

from rl.data import DataError, Example, prompts
from rl.data.toy_tokenizer import toy_tokenizer

GSM = Example(
    id="gsm8k/test/0", question="Janet's ducks lay 16 eggs per day. How many are left?", answer="18"
)
SHORT = Example(id="s/1", question="What is 1+1?", answer="2")


def test_chat_template_carries_the_boxed_instruction_and_the_generation_prompt(qwen_tokenizer):
    text = prompts.format_prompt(GSM.question, qwen_tokenizer)
    assert text == (
        "<|im_start|>system\n" + prompts.BOXED_INSTRUCTION + "<|im_end|>\n"
        "<|im_start|>user\n" + GSM.question + "<|im_end|>\n<|im_start|>assistant\n"
    )


def test_qwen_batch_is_left_padded_int32_with_chat_markers_as_single_tokens(qwen_tokenizer):
    batch = prompts.encode_prompts([GSM, SHORT], qwen_tokenizer, max_prompt_len=64)
    assert batch.input_ids.shape == batch.attention_mask.shape == (2, 64)
    assert batch.input_ids.dtype == batch.attention_mask.dtype == np.int32
    assert batch.ids == ("gsm8k/test/0", "s/1") and batch.answers == ("18", "2")
    im_start, pad = (
        qwen_tokenizer.convert_tokens_to_ids("<|im_start|>"),
        qwen_tokenizer.pad_token_id,
    )
    for row, text in enumerate(batch.texts):
        want = qwen_tokenizer(text, add_special_tokens=False)["input_ids"]
        n = len(want)
        assert batch.attention_mask[row].tolist() == [0] * (64 - n) + [1] * n
        assert batch.input_ids[row, 64 - n :].tolist() == want
        assert (batch.input_ids[row, : 64 - n] == pad).all()
        assert (
            batch.input_ids[row, 64 - n] == im_start
        )  # The prompt starts right after the padding.
        assert qwen_tokenizer.decode(batch.input_ids[row, 64 - n :]) == text
    # Every prompt ends at the last column with the assistant header, ready for generation.
    assert qwen_tokenizer.decode(batch.input_ids[:, -3:][0]) == "<|im_start|>assistant\n"


def test_an_overlong_prompt_is_an_error_naming_the_example_and_its_length(qwen_tokenizer):
    n = prompts.prompt_lengths([GSM], qwen_tokenizer)[0]
    want = f"example 'gsm8k/test/0': prompt is {n} tokens, longer than max_prompt_len={n - 1}"
    with pytest.raises(DataError, match=want):
        prompts.encode_prompts([SHORT, GSM], qwen_tokenizer, max_prompt_len=n - 1)
    assert prompts.encode_prompts([GSM], qwen_tokenizer, max_prompt_len=n).attention_mask.all()


def test_drop_overlong_keeps_what_fits_and_logs_what_does_not(qwen_tokenizer, caplog):
    limit = prompts.prompt_lengths([SHORT], qwen_tokenizer)[0]
    with caplog.at_level(logging.WARNING, logger="rl.data.prompts"):
        kept = prompts.drop_overlong([GSM, SHORT], qwen_tokenizer, limit)
    assert kept == [SHORT]
    assert "dropping 1 of 2" in caplog.text and "gsm8k/test/0" in caplog.text


def test_plain_format_for_a_tokenizer_without_chat_template(toy_tok):
    toy = Example(id="toy/test/0", question="Q: 7+5-3", answer="9")
    assert prompts.system_prompt_for("toy") is None
    assert prompts.format_prompt(toy.question, toy_tok, system_prompt=None) == "Q: 7+5-3\n"
    assert prompts.format_prompt("x", toy_tok) == prompts.BOXED_INSTRUCTION + "\n\nx\n"
    batch = prompts.encode_prompts([toy], toy_tok, max_prompt_len=12, system_prompt=None)
    assert batch.input_ids[0].tolist() == [0, 0, 0] + toy_tok("Q: 7+5-3\n")["input_ids"]
    assert batch.attention_mask[0].tolist() == [0, 0, 0] + [1] * 9


def test_a_template_without_system_role_gets_the_instruction_in_the_user_turn():
    tok = toy_tokenizer()
    tok.chat_template = (
        "{% for m in messages %}{% if m['role'] == 'system' %}"
        "{{ raise_exception('System role not supported') }}{% endif %}"
        "[{{ m['content'] }}]{% endfor %}"
    )
    assert (
        prompts.format_prompt("Q: 1+2", tok, system_prompt="Be brief.") == "[Q: 1+2\n\nBe brief.]"
    )


def test_an_unencodable_prompt_names_its_example(toy_tok):
    bad = Example(id="gsm8k/test/5", question="How many apples?", answer="3")
    with pytest.raises(DataError, match="example 'gsm8k/test/5': tokenizer cannot encode prompt"):
        prompts.encode_prompts([bad], toy_tok, max_prompt_len=64, system_prompt=None)


def test_system_prompts_by_dataset():
    assert prompts.system_prompt_for("gsm8k") == prompts.BOXED_INSTRUCTION
    assert prompts.system_prompt_for("math500") == prompts.BOXED_INSTRUCTION
    assert prompts.BOXED_INSTRUCTION == (
        "Please reason step by step, and put your final answer within \\boxed{}."
    )
