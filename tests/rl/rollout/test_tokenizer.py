"""The run's tokenizer helpers: where decoded text is cut at a stop string."""

from rl.rollout.tokenizer import cut_at_stop


def test_cut_at_stop():
    assert cut_at_stop("a\n\nQuestion: b", ["Question:"]) == "a\n\nQuestion:"
    assert cut_at_stop("abc", ["x"]) == "abc"
