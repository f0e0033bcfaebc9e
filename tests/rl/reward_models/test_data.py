"""The step-labelled container and the encoding of labelled solutions into the PPO sequence
layout."""

import math

import numpy as np
import pytest

from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models import data as rd


def test_step_labelled_validation():
    with pytest.raises(ValueError, match="2 steps but 1 labels"):
        rd.StepLabelled("q", ["a", "b"], [1.0])
    with pytest.raises(ValueError, match="not in"):
        rd.StepLabelled("q", ["a"], [1.5])
    with pytest.raises(ValueError, match="step 0 is empty"):
        rd.StepLabelled("q", [" "], [1.0])
    hard = rd.hard_labels([rd.StepLabelled("q", ["a", "b", "c"], [0.0, 0.25, math.nan])])[0]
    assert hard.labels[:2] == [0.0, 1.0] and math.isnan(hard.labels[2])


def test_encode_layout_and_step_ends():
    tok = toy_tokenizer()
    ex = rd.StepLabelled(
        "Q: 7+5-3", ["7+5=12", "12-3=9", "\\boxed{9}"], [1.0, 0.25, math.nan], outcome=1.0
    )
    long = rd.StepLabelled("Q: 7+5-3", ["7+5=12"] * 20, [1.0] * 20)
    arrays = rd.encode([ex, long], tok, max_prompt_len=12, max_response_len=32, sep="\n")
    assert len(arrays) == 1 and arrays.index.tolist() == [0]  # the long one is left out
    p = arrays.prompt_len
    row = arrays.tokens[0]
    prompt = tok("Q: 7+5-3\n", add_special_tokens=False)["input_ids"]
    assert row[: p - len(prompt)].tolist() == [tok.pad_token_id] * (p - len(prompt))
    assert row[p - len(prompt) : p].tolist() == prompt
    text = "7+5=12\n12-3=9\n\\boxed{9}"
    n = len(text) + 1  # + EOS
    assert tok.decode(row[p : p + n - 1]) == text and row[p + n - 1] == tok.eos_token_id
    assert arrays.response_mask[0].sum() == n and arrays.response_mask[0, p : p + n].all()
    assert arrays.attention_mask[0].sum() == n + len(prompt)
    ends = np.flatnonzero(arrays.step_end[0]) - p
    assert ends.tolist() == [text.index("\n") - 1, text.rindex("\n") - 1, len(text) - 1]
    assert np.flatnonzero(arrays.label_mask[0]).tolist() == (ends[:2] + p).tolist()
    assert arrays.step_labels[0][arrays.label_mask[0]].tolist() == [1.0, 0.25]
    assert arrays.outcome.tolist() == [1.0] and arrays.outcome_mask.tolist() == [True]
    train, held = rd.split_heldout(arrays, 0.0)
    assert len(train) == 1 and len(held) == 0
