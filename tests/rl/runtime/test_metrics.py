"""``MetricsWriter``: one JSON object per iteration in metrics.jsonl, TensorBoard scalars, a
progress line; a resumed run drops the rows after its checkpoint; remote files are rewritten."""

import json
import struct

import jax.numpy as jnp
import numpy as np
import pytest
from tensorboardX.proto import event_pb2

import rl.runtime.metrics
from rl.runtime import distributed
from rl.runtime.metrics import MetricsWriter


def _metrics(workdir):
    path = workdir / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _tensorboard_scalars(workdir) -> dict[str, list[tuple[int, float]]]:
    """Every scalar in the run's event files, read record by record (TFRecord framing: length,
    its CRC, the Event proto, its CRC)."""
    out: dict[str, list[tuple[int, float]]] = {}
    for path in sorted((workdir / "tensorboard").glob("events.out.tfevents.*")):
        data = path.read_bytes()
        i = 0
        while i < len(data):
            (length,) = struct.unpack("<Q", data[i : i + 8])
            event = event_pb2.Event.FromString(data[i + 12 : i + 12 + length])
            i += 12 + length + 4
            for value in event.summary.value:
                out.setdefault(value.tag, []).append((event.step, value.simple_value))
    return out


def test_rows_are_plain_json_with_step_first_and_sorted_keys(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(
        np.int64(1),
        {
            "update/value_loss": np.float32(0.25),
            "reward/total": jnp.float32(2.0),
            "rollout/response_length": np.int64(12),
            "hist": np.array([1, 2, 3]),
            "bad/nan": float("nan"),
            "bad/inf": np.float32(np.inf),
        },
    )
    writer.write(2, {"reward/total": 3.5})
    writer.close()
    lines = (tmp_path / "metrics.jsonl").read_text().splitlines()
    assert len(lines) == 2
    assert list(json.loads(lines[0])) == [
        "step",
        "bad/inf",
        "bad/nan",
        "hist",
        "reward/total",
        "rollout/response_length",
        "update/value_loss",
    ]
    first, second = _metrics(tmp_path)
    assert first == {
        "step": 1,
        "bad/inf": "inf",  # JSON has no NaN/inf: kept visible as strings
        "bad/nan": "nan",
        "hist": [1, 2, 3],
        "reward/total": 2.0,
        "rollout/response_length": 12,
        "update/value_loss": 0.25,
    }
    assert second == {"step": 2, "reward/total": 3.5}


def test_numbers_go_to_tensorboard(tmp_path):
    writer = MetricsWriter(tmp_path)
    writer.write(1, {"reward/total": 0.5, "n": 3, "hist": [1.0, 2.0], "bad": float("nan")})
    writer.write(2, {"reward/total": 0.75, "n": 4})
    writer.close()
    scalars = _tensorboard_scalars(tmp_path)
    assert scalars == {"reward/total": [(1, 0.5), (2, 0.75)], "n": [(1, 3.0), (2, 4.0)]}


def test_progress_line_names_the_headline_metrics(tmp_path, capsys):
    writer = MetricsWriter(tmp_path)
    writer.write(
        7,
        {
            "reward/success": 0.25,
            "reward/total": 1.23456,
            "update/policy_loss": -0.000123,
            "time/iteration": 12.0,
            "other": 5.0,
        },
    )
    writer.close()
    assert capsys.readouterr().out.splitlines()[-1] == "[iter 7] acc=0.25 R=1.23 pg=-0.000123 s=12"


def test_a_resumed_run_drops_the_rows_after_its_checkpoint_then_appends(tmp_path):
    writer = MetricsWriter(tmp_path)
    for step in (1, 2, 3, 4):
        writer.write(step, {"reward/total": float(step)})
    writer.close()
    # Killed after writing iteration 4 but with its last checkpoint at iteration 2.
    writer = MetricsWriter(tmp_path, resume_step=2)
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2]
    writer.write(3, {"reward/total": 30.0})
    writer.close()
    assert [(r["step"], r["reward/total"]) for r in _metrics(tmp_path)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]
    # A fresh run (resume_step 0) in the same directory starts the file over.
    MetricsWriter(tmp_path).close()
    assert _metrics(tmp_path) == []


def test_blank_lines_are_dropped_on_resume(tmp_path):
    (tmp_path / "metrics.jsonl").write_text('{"step": 1, "a": 1}\n\n{"step": 2, "a": 2}\n')
    MetricsWriter(tmp_path, resume_step=5).close()
    assert (tmp_path / "metrics.jsonl").read_text() == '{"step": 1, "a": 1}\n{"step": 2, "a": 2}\n'


def test_metrics_on_remote_storage_rewrite_the_whole_file(tmp_path, monkeypatch):
    """Cloud storage cannot append: the file is rewritten with every line each iteration, and a
    resumed run drops the lines after its checkpoint first (a local dir stands in for gs://)."""
    monkeypatch.setattr(rl.runtime.metrics, "is_remote", lambda path: True)
    path_type = type(distributed.run_path(tmp_path))
    original_open = path_type.open

    def no_append(self, mode="r", *args, **kwargs):
        assert "a" not in mode, f"{self} opened for appending"
        return original_open(self, mode, *args, **kwargs)

    monkeypatch.setattr(path_type, "open", no_append)
    writer = MetricsWriter(tmp_path)
    for step in (1, 2, 3):
        writer.write(step, {"reward/total": float(step)})
    writer.close()
    assert [r["step"] for r in _metrics(tmp_path)] == [1, 2, 3]
    writer = MetricsWriter(tmp_path, resume_step=2)
    writer.write(3, {"reward/total": 30.0})
    writer.close()
    assert [(r["step"], r["reward/total"]) for r in _metrics(tmp_path)] == [
        (1, 1.0),
        (2, 2.0),
        (3, 30.0),
    ]


@pytest.mark.parametrize("value", [0.1, -3, 1e30, 7.0])
def test_finite_numbers_round_trip_exactly(tmp_path, value):
    writer = MetricsWriter(tmp_path)
    writer.write(1, {"x": value, "x32": np.float32(value)})
    writer.close()
    (row,) = _metrics(tmp_path)
    assert row["x"] == value and row["x32"] == float(np.float32(value))
