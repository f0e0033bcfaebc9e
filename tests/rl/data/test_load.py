"""load(): names and splits checked, Examples as plain Python values.

Build caching by source content is tested in test_source_builder.py, the cache location in
test_paths.py."""

import dataclasses
import json

import pytest

from rl import data
from rl.config import ConfigError, DataConfig


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


def test_load_split_reads_data_path_for_the_training_split_only(tmp_path):
    """data.path replaces the dataset's data.split; any other split (evaluation) stays the
    dataset's; a file rl.seam selected from another dataset is refused naming the key."""
    path = tmp_path / "mine.jsonl"
    path.write_text(json.dumps({"id": "m1", "problem": "Q: 1+1", "final": "2"}) + "\n")
    toy = dict(dataset="toy", toy_train_size=16, toy_test_size=4)
    d = DataConfig(**toy, path=str(path), question_field="problem", answer_field="final")
    d = dataclasses.replace(d, id_field="id", prompts_per_batch=1).validate()
    tfds_dir = tmp_path / "tfds"
    assert [ex.id for ex in data.load_split(d, "train", data_dir=tfds_dir)] == ["m1"]
    assert len(data.load_split(d, "test", data_dir=tfds_dir)) == 4  # the toy task's own test split
    assert len(data.load_split(DataConfig(**toy), "train", data_dir=tfds_dir)) == 16
    small = dataclasses.replace(d, prompts_per_batch=2)
    with pytest.raises(ConfigError, match=r"1 usable problem\(s\), fewer than one batch of "):
        data.load_split(small, "train", data_dir=tfds_dir)
    (tmp_path / "seam.json").write_text(json.dumps({"dataset": "gsm8k"}))
    with pytest.raises(ConfigError, match="config.data.dataset='toy'"):
        data.load_split(d, "train", data_dir=tfds_dir)
