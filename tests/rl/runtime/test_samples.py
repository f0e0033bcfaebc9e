"""samples/ITERATION.jsonl: the first N rows of each iteration, one file per iteration (a resumed
run rewrites the iteration it repeats), nothing when N is 0."""

import json

import pytest

from rl.runtime.samples import rollout_text_stats, sample_path, write_samples

COLUMNS = {"text": ["a", "b", "c"], "success": [1.0, 0.0, 0.5]}


def _read(path):
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_first_rows_of_each_iteration_go_to_their_own_file(tmp_path):
    write_samples(tmp_path, 3, 2, COLUMNS)
    path = sample_path(tmp_path, 3)
    assert path.name == "000003.jsonl" and path.parent.name == "samples"
    assert _read(path) == [
        {"row": 0, "text": "a", "success": 1.0},
        {"row": 1, "text": "b", "success": 0.0},
    ]
    # A larger limit takes every row; writing iteration 3 again replaces its file.
    write_samples(tmp_path, 3, 10, {"text": ["x"], "success": [0.25]})
    assert _read(path) == [{"row": 0, "text": "x", "success": 0.25}]


def test_no_samples_when_off_and_unequal_columns_are_refused(tmp_path):
    write_samples(tmp_path, 1, 0, COLUMNS)
    assert not (tmp_path / "samples").exists()
    with pytest.raises(ValueError, match="unequal lengths"):
        write_samples(tmp_path, 1, 2, {"text": ["a"], "success": [1.0, 0.0]})


def test_rollout_text_stats_counts_steps_and_repeats_per_response():
    # "a / b / a": 3 steps, one a repeat (1/3); "c": 1 step, none; means 2 and 1/6.
    stats = rollout_text_stats(["a\nb\na", "c"], "\n")
    assert stats["rollout/steps_per_response"] == 2.0
    assert stats["rollout/repeated_step_fraction"] == pytest.approx(1 / 6)
    assert rollout_text_stats([], "\n") == {
        "rollout/steps_per_response": 0.0,
        "rollout/repeated_step_fraction": 0.0,
    }
