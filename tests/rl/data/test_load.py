"""load(): names and splits checked, Examples as plain Python values.

Build caching by source content is tested in test_source_builder.py, the cache location in
test_paths.py."""

import pytest

from rl import data


def test_unknown_dataset_and_split_are_named(data_dir):
    choices = r"\['gsm8k', 'math', 'math500', 'toy'\]"
    with pytest.raises(data.DataError, match=f"dataset='gsm9k': must be one of {choices}"):
        data.load("gsm9k", "test", data_dir=data_dir)
    with pytest.raises(
        data.DataError, match=r"'math500' has no split='train'; its splits are \['test'\]"
    ):
        data.load("math500", "train", data_dir=data_dir)


def test_examples_are_plain_python(data_dir):
    ex = data.load("math500", "test", data_dir=data_dir)[0]
    assert isinstance(ex, data.Example)
    assert all(isinstance(v, str) for v in (ex.id, ex.question, ex.answer, ex.solution))
    assert type(ex.meta["level"]) is int
