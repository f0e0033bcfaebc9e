"""Metrics of each iteration: one JSON object per line in ``metrics.jsonl``, TensorBoard events
(tensorboardX, no TensorFlow), and a progress line on stdout. Only process 0 writes.

A resumed run appends: lines of iterations after the restored checkpoint (written before a crash)
are dropped first, so the file holds each iteration exactly once.

The run directory may be ``gs://``: TPU VMs are ephemeral, so the metrics belong next to the
checkpoints in the bucket (TensorBoard reads ``gs://`` logdirs directly). Cloud storage objects
cannot be appended to, so there the file is rewritten whole each iteration (one short line per
iteration; each rewrite is atomic); tensorboardX writes ``gs://`` event files itself.
"""

from __future__ import annotations

import json
import math
import os
import sys
from typing import Any

import numpy as np
from tensorboardX import SummaryWriter

from rl.runtime.distributed import is_main_process, is_remote, run_path

PROGRESS_KEYS = (
    ("reward/success", "acc"),
    ("reward/total", "R"),
    ("reward/prm_raw", "prm"),
    ("reward/kl", "kl"),
    ("rollout/response_length", "len"),
    ("rollout/steps_per_response", "steps"),
    ("rollout/repeated_step_fraction", "rep"),
    ("update/policy_loss", "pg"),
    ("update/value_loss", "vf"),
    ("time/iteration", "s"),
)


def _plain(value: Any) -> Any:
    value = np.asarray(value).item() if np.ndim(value) == 0 else np.asarray(value).tolist()
    if isinstance(value, float) and not math.isfinite(value):
        return str(value)  # JSON has no NaN/inf; keep it visible as a string
    return value


class MetricsWriter:
    def __init__(self, workdir: str | os.PathLike, resume_step: int = 0):
        self.enabled = is_main_process()
        workdir = run_path(workdir)
        self.path = workdir / "metrics.jsonl"
        self._tb = None
        self._lines: list[str] | None = None  # the whole file, kept only for remote rewrites
        if not self.enabled:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        kept = []
        if self.path.exists():
            kept = [
                line + "\n"
                for line in self.path.read_text().splitlines()
                if line.strip() and json.loads(line).get("step", 0) <= resume_step
            ]
            self.path.write_text("".join(kept))
        if is_remote(self.path):
            self._lines = kept
        self._tb = SummaryWriter(os.fspath(workdir / "tensorboard"))

    def write(self, step: int, metrics: dict[str, Any]) -> None:
        if not self.enabled:
            return
        record = {"step": int(step), **{k: _plain(v) for k, v in sorted(metrics.items())}}
        line = json.dumps(record) + "\n"
        if self._lines is None:
            with self.path.open("a") as f:
                f.write(line)
        else:
            self._lines.append(line)
            self.path.write_text("".join(self._lines))
        for key, value in record.items():
            if key != "step" and isinstance(value, (int, float)):
                self._tb.add_scalar(key, value, step)
        self._tb.flush()
        shown = " ".join(
            f"{short}={record[k]:.3g}"
            for k, short in PROGRESS_KEYS
            if isinstance(record.get(k), (int, float))
        )
        print(f"[iter {step}] {shown}", file=sys.stdout, flush=True)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
