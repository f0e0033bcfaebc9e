import pytest

from rewards.patterns import reasoning_pattern_reward


def test_distinct_phrases_scaled_capped_minus_repetition():
    assert reasoning_pattern_reward("2+2=4") == 0.0
    # "First, I need to" and "Therefore": 2 phrases * 0.2.
    assert reasoning_pattern_reward("First, I need to add.\n\nTherefore 4.") == pytest.approx(0.4)
    # The same phrase many times counts once.
    assert reasoning_pattern_reward(
        "therefore a.\n\ntherefore b.\n\ntherefore c."
    ) == pytest.approx(0.2)
    many = "\n\n".join(
        [
            "first, i need to x",
            "let me check y",
            "wait z",
            "therefore w",
            "alternatively v",
            "this means u",
            "to summarize t",
        ]
    )
    assert reasoning_pattern_reward(many) == pytest.approx(1.0)  # 7 * 0.2 capped at 1
    # Two of four steps repeat an earlier one: -0.5.
    rep = "Let me check.\n\nLet me check.\n\nLet me check.\n\nx"
    assert reasoning_pattern_reward(rep) == pytest.approx(0.2 - 0.5)


def test_bad_arguments_are_named():
    with pytest.raises(ValueError, match="scale=-1"):
        reasoning_pattern_reward("x", scale=-1)


def test_text_and_phrases_compare_with_whitespace_runs_as_one_space():
    # A line break inside a phrase of the text still matches; a phrase's own trailing space (the
    # paper's "first, ") needs a following word; a phrase written with a line break matches a space.
    assert reasoning_pattern_reward("Let me\ncheck", phrases=("let me check",)) == pytest.approx(
        0.2
    )
    assert reasoning_pattern_reward("First, add", phrases=("first, ",)) == pytest.approx(0.2)
    assert reasoning_pattern_reward("done first,", phrases=("first, ",)) == 0.0
    assert reasoning_pattern_reward("a b", phrases=("a\n\tb",)) == pytest.approx(0.2)
