"""Your own problems through the TFDS path: JSONL and Parquet files or a directory of them, the
field mapping, malformed rows named by file, line or row and field (or counted and skipped), ids,
rebuilds on change, and the SEAM provenance check."""

import json
import pathlib

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from rl import data
from rl.config import ConfigError
from rl.data.user_files import UserFiles, check_seam_provenance, data_files


def _jsonl(path: pathlib.Path, *rows) -> pathlib.Path:
    path.write_text("\n".join(r if isinstance(r, str) else json.dumps(r) for r in rows) + "\n")
    return path


def _ids_and_answers(examples):
    return [(ex.id, ex.question, ex.answer) for ex in examples]


def test_a_directory_of_jsonl_and_parquet_files_with_a_field_mapping(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _jsonl(
        src / "b.jsonl", {"problem": " 1+1? ", "final": 2}, "", {"problem": "2+2?", "final": "4 "}
    )
    pq.write_table(pa.table({"problem": ["3+3?"], "final": [6.5]}), src / "a.parquet")
    (src / "notes.txt").write_text("not data")
    assert [f.name for f in data_files(src)] == ["a.parquet", "b.jsonl"]
    examples = data.load_files(
        src, "train", data_dir=tmp_path / "tfds", question_field="problem", answer_field="final"
    )
    # Files in name order, rows in file order; numbers are answers; ids are FILE/ROW (0-based line
    # index: the blank line 2 of b.jsonl still counts).
    assert _ids_and_answers(examples) == [
        ("a.parquet/0", "3+3?", "6.5"),
        ("b.jsonl/0", "1+1?", "2"),
        ("b.jsonl/2", "2+2?", "4"),
    ]


def test_malformed_rows_are_named_by_file_line_and_field_or_skipped_and_counted(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _jsonl(
        src / "a.jsonl",
        {"question": "ok?", "answer": "1"},
        {"question": "", "answer": "1"},
        {"answer": "1"},
        "{not json",
        {"question": "q", "answer": ""},
        {"question": "q", "answer": True},
    )
    pq.write_table(pa.table({"question": [None, "fine?"], "answer": ["1", "2"]}), src / "b.parquet")
    with pytest.raises(data.DataError) as err:
        data.load_files(src, data_dir=tmp_path / "tfds")
    message = str(err.value)
    for want in (
        "6 malformed row(s)",
        "a.jsonl line 2: field 'question': empty ('')",
        "a.jsonl line 3: field 'question': missing",
        "a.jsonl line 4: not valid JSON",
        "a.jsonl line 5: field 'answer': empty ('')",
        "... and 1 more",
    ):
        assert want in message, (want, message)
    built = UserFiles(path=src, data_dir=tmp_path / "tfds", allow_malformed=True).prepared()
    report = built.info.metadata["train"]
    assert (report["rows"], report["rejected"]) == (2, 6)
    assert (
        "a.jsonl line 6: field 'answer': expected a string, got bool True" in report["rejections"]
    )
    assert (
        "b.parquet row 0: field 'question': expected a string, got NoneType None"
        in (report["rejections"])
    )
    examples = data.load_files(src, data_dir=tmp_path / "tfds", allow_malformed=True)
    assert [ex.id for ex in examples] == ["a.jsonl/0", "b.parquet/1"]


def test_an_id_field_gives_the_ids_and_a_repeat_across_files_is_malformed(tmp_path):
    src = tmp_path / "src"
    src.mkdir()
    _jsonl(
        src / "a.jsonl", {"id": "toy/train/3", "q": "A?", "a": "1"}, {"id": 7, "q": "B?", "a": "2"}
    )
    _jsonl(src / "b.jsonl", {"id": "toy/train/3", "q": "C?", "a": "3"})
    fields = dict(question_field="q", answer_field="a", id_field="id")
    with pytest.raises(data.DataError, match=r"b.jsonl line 1: field 'id': 'toy/train/3' repeats "):
        data.load_files(src, data_dir=tmp_path / "tfds", **fields)
    (src / "b.jsonl").unlink()
    assert [ex.id for ex in data.load_files(src, data_dir=tmp_path / "tfds", **fields)] == [
        "toy/train/3",
        "7",
    ]


def test_an_edited_file_is_rebuilt_and_the_mapping_is_part_of_the_build(tmp_path):
    path = _jsonl(tmp_path / "p.jsonl", {"question": "A?", "answer": "1", "alt": "9"})
    first = UserFiles(path=path, data_dir=tmp_path / "tfds")
    again = UserFiles(path=path, data_dir=tmp_path / "tfds")
    other_mapping = UserFiles(path=path, data_dir=tmp_path / "tfds", answer_field="alt")
    assert first.builder_config.name == again.builder_config.name
    assert other_mapping.builder_config.name != first.builder_config.name
    assert data.load_files(path, data_dir=tmp_path / "tfds")[0].answer == "1"
    _jsonl(path, {"question": "A?", "answer": "2"})
    assert data.load_files(path, data_dir=tmp_path / "tfds")[0].answer == "2"


def test_paths_without_data_are_refused(tmp_path):
    with pytest.raises(data.DataError, match="no such file or directory"):
        data_files(tmp_path / "nope.jsonl")
    (tmp_path / "x.csv").write_text("a,b\n")
    with pytest.raises(data.DataError, match=r"a '.csv' file"):
        data_files(tmp_path / "x.csv")
    with pytest.raises(data.DataError, match="a directory without .jsonl or .parquet files"):
        data_files(tmp_path)
    (tmp_path / "bad.parquet").write_text("not parquet")
    with pytest.raises(data.DataError, match="bad.parquet: not a readable Parquet file"):
        data.load_files(tmp_path / "bad.parquet", data_dir=tmp_path / "tfds")


def test_prompts_selected_by_rl_seam_belong_to_their_dataset(tmp_path):
    kept = _jsonl(
        tmp_path / "kept.jsonl", {"id": "toy/train/0", "question": "Q: 1+2", "answer": "3"}
    )
    check_seam_provenance(kept, "gsm8k")  # no seam.json: any dataset
    (tmp_path / "seam.json").write_text(json.dumps({"dataset": "toy"}))
    check_seam_provenance(kept, "toy")
    check_seam_provenance(tmp_path, "toy")
    with pytest.raises(ConfigError, match=r"config.data.dataset='gsm8k': .* dataset 'toy'"):
        check_seam_provenance(kept, "gsm8k")
