"""load(): names and splits checked, Examples in file order, builds cached by source content."""

import json

import pytest

from rl import data
from rl.data import paths


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


def test_a_build_is_reused_and_a_changed_source_gets_a_fresh_one(tmp_path):
    path = tmp_path / "q.jsonl"
    path.write_text(json.dumps({"question": "One?", "answer": "#### 1"}) + "\n")
    first = data.builder("gsm8k", data_dir=tmp_path / "tfds", sources={"test": path})
    again = data.builder("gsm8k", data_dir=tmp_path / "tfds", sources={"test": path})
    assert again.data_dir == first.data_dir
    path.write_text(json.dumps({"question": "Two?", "answer": "#### 2"}) + "\n")
    changed = data.builder("gsm8k", data_dir=tmp_path / "tfds", sources={"test": path})
    assert changed.data_dir != first.data_dir
    assert [
        ex.answer
        for ex in data.load("gsm8k", "test", data_dir=tmp_path / "tfds", sources={"test": path})
    ] == ["2"]


def test_data_dir_defaults_to_the_environment_variable(tmp_path, monkeypatch):

    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "cache"))
    assert paths.resolve_data_dir(None) == (tmp_path / "cache").resolve()
    monkeypatch.delenv(paths.DATA_DIR_ENV)
    assert paths.default_data_dir().parts[-3:] == (".cache", "rlreward", "tfds")
