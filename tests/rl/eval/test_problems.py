"""A dataset's problems as the evaluation poses and judges them: the verifier asked only about
responses that state an answer, prompts in one length bucket, and each dataset's step separator."""

import numpy as np
import pytest

from rl.data.example import Example
from rl.data.toy_tokenizer import toy_tokenizer
from rl.eval import problems


class _FakeVerifier:
    def __init__(self):
        self.calls = []

    def check_batch(self, texts, answers):
        self.calls.append((list(texts), list(answers)))
        return type("Verdict", (), {"correct": [t.endswith("{18}") for t in texts]})()


def test_check_answers_asks_the_verifier_only_about_responses_with_an_answer():
    fake = _FakeVerifier()
    got = problems.check_answers(
        ["so \\boxed{18}", "no answer", "\\boxed{3}"], ["18", "18", "4"], lambda: fake
    )
    assert got.tolist() == [True, False, False]
    assert fake.calls == [(["so \\boxed{18}", "\\boxed{3}"], ["18", "4"])]
    never = lambda: pytest.fail("verifier started without any answer to check")  # noqa: E731
    assert problems.check_answers(["a", "b"], ["1", "2"], never).tolist() == [False, False]


def test_encode_pads_left_to_one_bucket_of_16():
    tok = toy_tokenizer()  # one token per character; toy prompts are the question and "\n"
    short = Example(id="toy/test/0", question="1+2", answer="3")
    batch = problems.encode([short], tok, "toy")
    assert batch.texts == ("1+2\n",) and batch.input_ids.shape == (1, 16)
    np.testing.assert_array_equal(batch.attention_mask[0], [0] * 12 + [1] * 4)
    assert batch.input_ids[0, :12].tolist() == [tok.pad_token_id] * 12
    # 64 characters + "\n" = 65 tokens: the next multiple of 16; one bucket for the whole batch.
    long = Example(id="toy/test/1", question="1+2=" * 16, answer="3")
    batch = problems.encode([short, long], tok, "toy")
    assert batch.input_ids.shape == (2, 80)
    assert batch.attention_mask.sum(axis=1).tolist() == [4, 65]
    assert batch.ids == ("toy/test/0", "toy/test/1") and batch.answers == ("3", "3")
    # An explicit length is kept as given.
    assert problems.encode([short, long], tok, "toy", max_prompt_len=70).input_ids.shape == (2, 70)


def test_default_step_separator_is_the_datasets():
    assert problems.default_step_separator("toy") == "\n"
    assert problems.default_step_separator("gsm8k") == "\n\n"
    assert problems.default_step_separator("math500") == "\n\n"
