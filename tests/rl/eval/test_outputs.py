"""Writing an evaluation's outputs: JSON without NaN, the markdown table, the records file."""

import json

import numpy as np

from rl.eval.outputs import jsonable, markdown_table, write_outputs

NAN = float("nan")


def test_jsonable():
    assert jsonable({"a": NAN, "b": [np.float32(1.5), float("inf")], "c": np.int64(2)}) == {
        "a": None,
        "b": [1.5, None],
        "c": 2,
    }


SUMMARY = {
    "dataset": "toy",
    "n": 2,
    "accuracy": 0.5,
    "greedy": {"accuracy": 0.5, "steps_per_response": 2.0, "rm_score": NAN},
    "best_of": {"n": 4, "aggregation": None, "accuracy": 0.25},
    "records": [
        {"id": "toy/test/0", "correct": True, "rm_score": np.float32(0.75)},
        {"id": "toy/test/1", "correct": False, "rm_score": NAN},
    ],
}
TABLE = """## Evaluation: toy

| metric | value |
|---|---|
| n | 2 |
| greedy accuracy | 0.5000 |
| greedy steps_per_response | 2.0000 |
| greedy rm_score | n/a |
| best_of n | 4 |
| best_of aggregation | n/a |
| best_of accuracy | 0.2500 |
"""


def test_markdown_table_by_hand():
    assert markdown_table({k: v for k, v in SUMMARY.items() if k != "records"}) == TABLE


def test_write_outputs_writes_the_summary_its_table_and_the_records(tmp_path):
    out = tmp_path / "new" / "eval.json"
    assert write_outputs(SUMMARY, out) == TABLE
    body = json.loads(out.read_text())
    assert "records" not in body and body["greedy"]["rm_score"] is None
    assert body["best_of"] == {"n": 4, "aggregation": None, "accuracy": 0.25}
    assert out.with_suffix(".md").read_text() == TABLE
    lines = out.with_suffix(".records.jsonl").read_text().splitlines()
    assert [json.loads(line) for line in lines] == [
        {"id": "toy/test/0", "correct": True, "rm_score": 0.75},
        {"id": "toy/test/1", "correct": False, "rm_score": None},
    ]
    other = tmp_path / "other.json"
    write_outputs(SUMMARY, other, records=False)
    assert other.exists() and not other.with_suffix(".records.jsonl").exists()
