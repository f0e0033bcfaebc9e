"""``SourceFileBuilder``: one source file per split, parsed row by row into a cached TFDS build
whose config name fingerprints the source bytes; ids unique; bad rows refused or reported."""

import hashlib
import json
import pathlib

import numpy as np
import pytest

from rl import data
from rl.data import paths, rows
from rl.data.source_builder import SourceFileBuilder


class Pairs(SourceFileBuilder, skip_registration=True):
    """question/answer rows; an optional ``id`` field, else the row's index."""

    name = "rlreward_test_pairs"
    EXTRA_FEATURES = {"index": np.int32}

    def parse_row(self, row, index, split):
        return {
            "id": row.get("id", f"pairs/{split}/{index}"),
            "question": rows.text_field(row, "question").strip(),
            "solution": "",
            "answer": rows.text_field(row, "answer").strip(),
            "index": index,
        }


def _jsonl(path: pathlib.Path, *lines) -> pathlib.Path:
    path.write_text("\n".join(x if isinstance(x, str) else json.dumps(x) for x in lines) + "\n")
    return path


def _records(builder, split):
    source = builder.as_data_source(split)
    out = []
    for r in source.__getitems__(range(len(source))):
        out.append({k: v.decode() if isinstance(v, bytes) else int(v) for k, v in r.items()})
    return out


def _sha(path: pathlib.Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_rows_are_stored_in_file_order_with_a_report(tmp_path):
    src = _jsonl(
        tmp_path / "t.jsonl",
        {"question": " Two? ", "answer": "2"},
        "",  # a blank line is not a row, but it counts for the line numbers
        {"question": "One?", "answer": " 1 "},
    )
    built = Pairs(data_dir=tmp_path / "tfds", sources={"test": src}).prepared()
    assert _records(built, "test") == [
        {"id": "pairs/test/0", "question": "Two?", "solution": "", "answer": "2", "index": 0},
        {"id": "pairs/test/2", "question": "One?", "solution": "", "answer": "1", "index": 2},
    ]
    assert built.info.metadata["test"] == {
        "file": "t.jsonl",
        "rows": 2,
        "rejected": 0,
        "rejections": [],
    }
    assert list(built.info.splits) == ["test"]


def test_the_config_name_fingerprints_every_split_source(tmp_path):
    train = _jsonl(tmp_path / "train.jsonl", {"question": "A?", "answer": "a"})
    test = _jsonl(tmp_path / "test.jsonl", {"question": "B?", "answer": "b"})
    builder = Pairs(data_dir=tmp_path, sources={"train": train, "test": test})
    digest = hashlib.sha256(f"test={_sha(test)};train={_sha(train)};".encode()).hexdigest()
    assert builder.builder_config.name == "src-" + digest[:16]
    assert builder.builder_config.description == "Built from test: test.jsonl, train: train.jsonl."
    lenient = Pairs(data_dir=tmp_path, sources={"train": train, "test": test}, allow_malformed=True)
    assert lenient.builder_config.name == "src-" + digest[:16] + "-lenient"
    assert pathlib.Path(builder.data_dir).parent.name == builder.builder_config.name


def test_relative_sources_are_read_from_the_shipped_files(tmp_path):
    builder = Pairs(data_dir=tmp_path, sources={"test": "gsm8k/test.jsonl"})
    shipped = paths.FILES_DIR / "gsm8k" / "test.jsonl"
    digest = hashlib.sha256(f"test={_sha(shipped)};".encode()).hexdigest()
    assert builder.builder_config.name == "src-" + digest[:16]


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


def test_a_repeated_id_is_refused_naming_the_first_row(tmp_path):
    src = _jsonl(
        tmp_path / "dup.jsonl",
        {"id": "x", "question": "Q1", "answer": "1"},
        {"id": "y", "question": "Q2", "answer": "2"},
        {"id": "x", "question": "Q3", "answer": "3"},
    )
    with pytest.raises(rows.DataError) as err:
        Pairs(data_dir=tmp_path, sources={"test": src}).prepared()
    assert "dup.jsonl line 3: field 'id': 'x' repeats the id of the row at index 0" in str(
        err.value
    )
    # Allowed: the first row with the id is kept, the repeat skipped and reported.
    built = Pairs(data_dir=tmp_path, sources={"test": src}, allow_malformed=True).prepared()
    assert [r["answer"] for r in _records(built, "test")] == ["1", "2"]
    report = built.info.metadata["test"]
    assert (report["rows"], report["rejected"]) == (2, 1)


def test_ids_may_repeat_across_splits(tmp_path):
    row = {"id": "same", "question": "Q", "answer": "1"}
    sources = {
        "train": _jsonl(tmp_path / "a.jsonl", row),
        "test": _jsonl(tmp_path / "b.jsonl", row),
    }
    built = Pairs(data_dir=tmp_path, sources=sources).prepared()
    assert _records(built, "train")[0]["id"] == _records(built, "test")[0]["id"] == "same"


def test_a_split_with_no_usable_rows_is_an_error(tmp_path):
    src = _jsonl(tmp_path / "bad.jsonl", {"question": "", "answer": "1"})
    with pytest.raises(rows.DataError, match=r"bad.jsonl: no usable rows for split 'test'"):
        Pairs(data_dir=tmp_path, sources={"test": src}, allow_malformed=True).prepared()


def test_missing_source_file_is_named(tmp_path):
    with pytest.raises(
        data.DataError, match="source file for split 'test' not found: .*nope.jsonl"
    ):
        data.load("gsm8k", "test", data_dir=tmp_path, sources={"test": tmp_path / "nope.jsonl"})
    with pytest.raises(rows.DataError, match=f"Pairs: .*not found: {paths.FILES_DIR}/no/such"):
        Pairs(data_dir=tmp_path, sources={"test": "no/such.jsonl"})
