"""Malformed rows: an error naming file, row and field by default; skipped and reported when
allowed."""

import json
import logging

import pytest

from rl import data
from rl.data.math500 import Math500

GOOD = {"question": "What is 1+1?", "answer": "1+1=2\n#### 2"}
BAD_LINES = [
    json.dumps(GOOD),  # line 1: fine
    "{not json",  # line 2: not JSON
    json.dumps({"answer": "#### 3"}),  # line 3: question missing
    json.dumps({"question": "Q?", "answer": 4}),  # line 4: answer is an int
    json.dumps({"question": "   ", "answer": "#### 5"}),  # line 5: empty question
    "",  # line 6: blank, not a row
    json.dumps({"question": "Q?", "answer": "it is 6"}),  # line 7: no #### final answer
    json.dumps(["question", "answer"]),  # line 8: not an object
    json.dumps({"question": "Last?", "answer": "#### 1,000"}),  # line 9: fine
]


@pytest.fixture
def bad_jsonl(tmp_path):
    path = tmp_path / "bad.jsonl"
    path.write_text("\n".join(BAD_LINES) + "\n")
    return path


def test_malformed_rows_raise_naming_file_row_and_field(bad_jsonl, tmp_path):
    with pytest.raises(data.DataError) as err:
        data.load("gsm8k", "test", data_dir=tmp_path / "tfds", sources={"test": bad_jsonl})
    message = str(err.value)
    assert "6 malformed row(s)" in message and str(bad_jsonl) in message
    assert "bad.jsonl line 2: not valid JSON" in message
    assert "bad.jsonl line 3: field 'question': missing" in message
    assert "bad.jsonl line 4: field 'answer': expected a string, got int 4" in message
    assert "bad.jsonl line 5: field 'question': empty" in message
    assert "bad.jsonl line 7: field 'answer': no '####' final-answer line" in message
    assert "... and 1 more" in message  # line 8, beyond the first five listed
    assert "allow_malformed=True" in message
    assert not (tmp_path / "tfds" / "rlreward_gsm8k").exists() or not any(
        (tmp_path / "tfds" / "rlreward_gsm8k").rglob("*.array_record*")
    )


def test_allow_malformed_skips_counts_logs_and_stores_a_report(bad_jsonl, tmp_path, caplog):
    with caplog.at_level(logging.WARNING):
        examples = data.load(
            "gsm8k", "test", data_dir=tmp_path, sources={"test": bad_jsonl}, allow_malformed=True
        )
    # Ids keep the rows' positions in the file, so they stay stable whatever is skipped.
    assert [(ex.id, ex.answer) for ex in examples] == [
        ("gsm8k/test/0", "2"),
        ("gsm8k/test/8", "1000"),
    ]
    assert "skipping 6 malformed row(s)" in caplog.text
    report = data.builder(
        "gsm8k", data_dir=tmp_path, sources={"test": bad_jsonl}, allow_malformed=True
    ).info.metadata["test"]
    assert report["rows"] == 2 and report["rejected"] == 6
    assert (
        "bad.jsonl line 8: expected a JSON object, got list ['question', 'answer']"
        in report["rejections"]
    )
    # Loading the cached build again still warns that rows were skipped.
    caplog.clear()
    with caplog.at_level(logging.WARNING):
        data.load(
            "gsm8k", "test", data_dir=tmp_path, sources={"test": bad_jsonl}, allow_malformed=True
        )
    assert "6 malformed row(s)" in caplog.text


def test_a_json_list_source_names_items(tmp_path):
    path = tmp_path / "math.json"
    path.write_text(
        json.dumps(
            [
                {"problem": "P0", "final_answer": "1"},
                "oops",
                {"problem": "", "final_answer": "2"},
                {"problem": "P3"},
            ]
        )
    )
    with pytest.raises(data.DataError) as err:
        data.load("math", "train", data_dir=tmp_path, sources={"train": path})
    message = str(err.value)
    assert "math.json item 1: expected a JSON object, got str 'oops'" in message
    assert "math.json item 2: field 'problem': empty" in message
    assert "math.json item 3: field 'final_answer': missing" in message


def test_a_file_that_is_not_a_json_list_is_refused(tmp_path):
    path = tmp_path / "math.json"
    path.write_text(json.dumps({"problem": "P"}))
    with pytest.raises(data.DataError, match="expected a JSON list of rows, got dict"):
        data.load("math", "train", data_dir=tmp_path, sources={"train": path})


def test_math500_rejects_bad_levels_and_repeated_ids(tmp_path):
    row = {
        "problem": "P",
        "solution": "S",
        "answer": "1",
        "subject": "Algebra",
        "level": 1,
        "unique_id": "test/algebra/1.json",
    }
    lines = [row, {**row, "level": 7}, {**row, "level": "3", "unique_id": "x"}, row]
    path = tmp_path / "m500.jsonl"
    path.write_text("\n".join(json.dumps(r) for r in lines))
    with pytest.raises(data.DataError) as err:
        Math500(data_dir=tmp_path, sources={"test": path}).prepared()
    message = str(err.value)
    assert "m500.jsonl line 2: field 'level': 7 is not in 1..5" in message
    assert "m500.jsonl line 3: field 'level': expected an integer, got str '3'" in message
    assert (
        "m500.jsonl line 4: field 'id': 'math500/test/algebra/1.json' repeats the id of the row "
        "at index 0" in message
    )
