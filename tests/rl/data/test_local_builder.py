"""``LocalBuilder``: a TFDS builder that writes array_record splits into the cache and reads them
back, with no TensorFlow, no downloads and no ``importlib_resources``."""

import pathlib
import sys

import numpy as np
import tensorflow_datasets as tfds

from rl.data import paths
from rl.data.local_builder import LocalBuilder

ROWS = {"train": ["a", "b", "c"], "test": ["z"]}


class Letters(LocalBuilder, skip_registration=True):
    """A two-split dataset generated in memory; counts how often it is generated."""

    name = "rlreward_test_letters"
    VERSION = tfds.core.Version("1.2.0")
    RELEASE_NOTES = {"1.2.0": "Test."}
    generated = 0

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self,
            features=tfds.features.FeaturesDict({"text": tfds.features.Text(), "index": np.int32}),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager):
        del dl_manager
        type(self).generated += 1
        return {split: self._generate_examples(rows) for split, rows in ROWS.items()}

    def _generate_examples(self, rows):
        for i, text in enumerate(rows):
            yield i, {"text": text, "index": i}


def _read(builder, split):
    source = builder.as_data_source(split)
    return [(r["text"].decode(), int(r["index"])) for r in source.__getitems__(range(len(source)))]


def test_build_writes_array_record_splits_under_data_dir_and_reads_them_back(tmp_path):
    builder = Letters(data_dir=tmp_path).prepared()
    version_dir = pathlib.Path(builder.data_dir)
    assert version_dir == tmp_path.resolve() / "rlreward_test_letters" / "1.2.0"
    assert sorted(p.name for p in version_dir.glob("*.array_record*")) == [
        "rlreward_test_letters-test.array_record-00000-of-00001",
        "rlreward_test_letters-train.array_record-00000-of-00001",
    ]
    assert builder.info.file_format.value == "array_record"
    assert _read(builder, "train") == [("a", 0), ("b", 1), ("c", 2)]
    assert _read(builder, "test") == [("z", 0)]
    assert {s: builder.info.splits[s].num_examples for s in ROWS} == {"train": 3, "test": 1}


def test_a_prepared_build_is_reused_not_regenerated(tmp_path):
    Letters.generated = 0
    Letters(data_dir=tmp_path).prepared()
    again = Letters(data_dir=tmp_path).prepared()
    assert Letters.generated == 1
    assert _read(again, "train") == [("a", 0), ("b", 1), ("c", 2)]


def test_the_cache_defaults_to_the_environment_variable(tmp_path, monkeypatch):
    monkeypatch.setenv(paths.DATA_DIR_ENV, str(tmp_path / "env_cache"))
    builder = Letters().prepared()
    assert pathlib.Path(builder.data_dir).is_relative_to((tmp_path / "env_cache").resolve())
    assert _read(builder, "test") == [("z", 0)]


def test_a_relative_data_dir_is_made_absolute(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    builder = Letters(data_dir="cache")
    assert pathlib.Path(builder.data_dir) == tmp_path.resolve() / "cache" / builder.name / "1.2.0"


def test_code_path_is_the_builder_class_source_file_without_importlib_resources(monkeypatch):
    # TFDS's own code_path needs the importlib_resources backport (not installed on Python 3.11);
    # with its import made to fail, this builder's still answers.
    monkeypatch.setitem(sys.modules, "importlib_resources", None)
    assert Letters.code_path == pathlib.Path(__file__)
    assert Letters.code_path.exists()
