"""Each format's input construction, token by token, against hand-written expectations from its
model card (tokenizers only, no model); the tag-in-step rule; what a tokenizer must carry."""

import pytest

from models.prm_formats import (
    EMPTY,
    FORMATS,
    FormatMismatch,
    MathShepherd,
    Own,
    QwenMathPRM,
    RLHFlow,
    ValueHead,
    format_prompt,
)
from rl.data.toy_tokenizer import toy_tokenizer
from tests.models import prm_reference as ref


@pytest.fixture(scope="module")
def qwen():
    return ref.qwen_tokenizer()


@pytest.fixture(scope="module")
def sentencepiece():
    return ref.sentencepiece_like_tokenizer()


@pytest.fixture(scope="module")
def llama3():
    return ref.llama3_tokenizer()


def test_the_formats():
    assert FORMATS == ("own", "qwen_math_prm", "math_shepherd", "rlhflow", "value_head")


def test_qwen_math_prm_input(qwen):
    enc = QwenMathPRM(qwen)
    row = enc.row("What is 1+1?", ["1+1=2.", "The answer is 2."])
    text = (
        "<|im_start|>system\nPlease reason step by step, and put your final answer within "
        "\\boxed{}.<|im_end|>\n<|im_start|>user\nWhat is 1+1?<|im_end|>\n<|im_start|>assistant\n"
        "1+1=2.<extra_0>The answer is 2.<extra_0><|im_end|>\n"
    )
    assert row.ids == qwen.encode(text)
    assert [row.ids[r] for r in row.reads] == [enc.tag_id] * 2
    assert qwen.decode(row.ids[: row.reads[0] + 1]).endswith("1+1=2.<extra_0>")
    assert enc.row("Q", []) == EMPTY  # no steps: no lone trailing tag to score
    # The tag inside the question or a step is one space: one read position per step.
    assert enc.row("Why<extra_0>?", ["a<extra_0>b"]) == enc.row("Why ?", ["a b"])


def test_qwen_math_prm_needs_its_tag_and_a_template(qwen):
    with pytest.raises(FormatMismatch, match=r"step tag '<extra_0>' is \d+ tokens"):
        QwenMathPRM(ref.qwen_tokenizer(tag=None))
    bare = ref.qwen_tokenizer()
    bare.chat_template = None
    with pytest.raises(FormatMismatch, match="chat template; it has none"):
        QwenMathPRM(bare)
    # A template that drops the assistant turn leaves no tag to read: an error, not a silent gap.
    dropping = ref.qwen_tokenizer()
    dropping.chat_template = "{% for m in messages %}{% if m.role != 'assistant' %}{{ m.content }}"
    dropping.chat_template += "{% endif %}{% endfor %}"
    with pytest.raises(FormatMismatch, match=r"2 step\(s\) but the step tag .* came out 0 time"):
        QwenMathPRM(dropping).row("Q", ["a", "b"])


def test_math_shepherd_input(sentencepiece):
    enc = MathShepherd(sentencepiece)
    row = enc.row("What is 7 * 6?", ["7 * 6 = 42.", "The answer is: 42"])
    assert row.ids == sentencepiece.encode("What is 7 * 6? 7 * 6 = 42. ки\nThe answer is: 42 ки")
    tokens = sentencepiece.convert_ids_to_tokens(row.ids)
    assert tokens[0] == "<s>" and [tokens[r] for r in row.reads] == ["▁ки", "▁ки"]
    assert tokens[row.reads[0] + 1] == "\n"  # the card joins "... ки" steps with a newline
    assert sentencepiece.convert_ids_to_tokens([enc.good_id, enc.bad_id]) == ["▁+", "▁-"]
    assert enc.row("Q ки?", ["a ки b"]) == enc.row("Q  ?", ["a   b"])


def test_math_shepherd_needs_one_token_tag_and_signs(qwen):
    with pytest.raises(FormatMismatch, match=r"good/bad tokens '\+'/'-' must be one token each"):
        MathShepherd(ref.sentencepiece_like_tokenizer(with_sign_merges=False))
    # A byte-level BPE without BOS: "+ -" is "+", " -" (no BOS to drop), both one token.
    enc = MathShepherd(qwen)
    assert [qwen.decode([i]) for i in (enc.good_id, enc.bad_id)] == ["+", " -"]


def test_rlhflow_reads_where_the_cards_per_prefix_passes_read(llama3):
    enc = RLHFlow(llama3)
    steps = ["  7 * 6 = 42. ", "The answer is: 42"]
    row = enc.row("What is 7 * 6?", steps)
    conversation = [
        {"role": "user", "content": "What is 7 * 6? 7 * 6 = 42."},
        {"role": "assistant", "content": "+"},
        {"role": "user", "content": "The answer is: 42"},
        {"role": "assistant", "content": "+"},
    ]
    text = (
        "<|begin_of_text|><|start_header_id|>system<|end_header_id|>\n\nCutting Knowledge Date: "
        "December 2023\nToday Date: 26 Jul 2024\n\n<|eot_id|><|start_header_id|>user"
        "<|end_header_id|>\n\nWhat is 7 * 6? 7 * 6 = 42.<|eot_id|><|start_header_id|>assistant"
        "<|end_header_id|>\n\n+<|eot_id|><|start_header_id|>user<|end_header_id|>\n\nThe answer "
        "is: 42<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n+<|eot_id|>"
    )
    assert llama3.apply_chat_template(conversation, tokenize=False) == text
    assert row.ids == llama3(text, add_special_tokens=False)["input_ids"]
    # The card: one pass per prefix (user k, assistant "+"), logits[:, -3].
    for k, read in enumerate(row.reads):
        prefix = llama3.apply_chat_template(conversation[: 2 * k + 2])["input_ids"]
        assert read == len(prefix) - 3
        assert row.ids[read + 1] == enc.good_id and row.ids[read + 2] == llama3.eos_token_id
    assert (enc.good_id, enc.bad_id) == (llama3.encode("+")[-1], llama3.encode("-")[-1])


def test_value_head_input():
    tok = ref.qwen_tokenizer(tag=None, bos="<|endoftext|>")
    enc = ValueHead(tok)
    row = enc.row("Q?", ["a = 1", "", "b\nc"])
    newline = tok.encode("\n")[-1]
    prompt, a, bc = tok.encode("<|endoftext|>Q?\n"), tok.encode("a = 1"), tok.encode("b c")
    assert row.ids == prompt + a + [newline] + [newline] + bc + [newline]
    n = len(prompt) + len(a)
    assert row.reads == [n, n + 1, n + 2 + len(bc)]
    with pytest.raises(FormatMismatch, match="bos_token; it has none"):
        ValueHead(ref.qwen_tokenizer(tag=None))


def test_own_reads_each_steps_last_token():
    tok = toy_tokenizer()  # one token per character: positions are character counts
    enc = Own(tok, "\n", None)
    row = enc.row("Q: 1+1", ["1+1=2 ", "  ", "1\n+1", "\\boxed{2}"])
    prompt = "Q: 1+1\n"
    response = "1+1=2 \n  \n1 +1\n\\boxed{2}"
    assert row.ids == tok(prompt + response)["input_ids"]
    p = len(prompt)
    assert row.reads == [p + 4, -1, p + 13, p + len(response) - 1]
    with_system = Own(tok, "\n", "Q: ")
    assert with_system.row("Q: 1", ["1"]).ids == tok("Q: \n\nQ: 1\n1")["input_ids"]
    with pytest.raises(FormatMismatch, match="step_separator=''"):
        Own(tok, "", None)


def test_format_prompt_carries_a_refused_system_message_in_the_user_turn(qwen):
    assert format_prompt("Q", qwen, "Be brief.") == (
        "<|im_start|>system\nBe brief.<|im_end|>\n<|im_start|>user\nQ<|im_end|>\n"
        "<|im_start|>assistant\n"
    )
    strict = ref.qwen_tokenizer()
    strict.chat_template = (
        "{% if messages[0].role == 'system' %}{{ raise_exception('System role not supported') }}"
        "{% endif %}{% for m in messages %}[{{ m.content }}]{% endfor %}"
    )
    assert format_prompt("Q", strict, "Be brief.") == "[Q\n\nBe brief.]"
    assert format_prompt("Q", toy_tokenizer(), None) == "Q\n"
