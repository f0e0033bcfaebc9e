"""``Example``: a frozen record; its defaults, equality and hashing as the data layer needs them."""

import dataclasses

import pytest

from rl.data.example import Example


def test_defaults_and_fields_in_order():
    ex = Example("gsm8k/test/0", "How many?", "18")
    assert (ex.id, ex.question, ex.answer, ex.solution, ex.meta) == (
        "gsm8k/test/0",
        "How many?",
        "18",
        "",
        {},
    )
    assert [f.name for f in dataclasses.fields(Example)] == [
        "id",
        "question",
        "answer",
        "solution",
        "meta",
    ]


def test_each_example_gets_its_own_meta():
    a, b = Example("a", "q", "1"), Example("b", "q", "1")
    assert a.meta is not b.meta


def test_frozen():
    ex = Example("a", "q", "1")
    with pytest.raises(dataclasses.FrozenInstanceError):
        ex.answer = "2"
    assert dataclasses.replace(ex, answer="2").answer == "2" and ex.answer == "1"


def test_hashable_with_a_dict_meta_and_meta_still_counts_for_equality():
    level3 = Example("math500/x", "q", "1", meta={"level": 3})
    level4 = Example("math500/x", "q", "1", meta={"level": 4})
    # meta is left out of the hash (a dict cannot be hashed) ...
    assert hash(level3) == hash(level4)
    assert len({level3, Example("math500/x", "q", "1", meta={"level": 3})}) == 1
    # ... but not out of equality: two examples differing only in meta are different examples.
    assert level3 != level4
    assert len({level3, level4}) == 2
