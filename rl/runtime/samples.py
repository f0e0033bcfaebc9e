"""A few responses of each iteration with their rewards, as text: ``samples/ITERATION.jsonl`` in the
run directory (``train.log_samples`` rows; only process 0 writes).

Why: ``metrics.jsonl`` holds batch means, which cannot show what the policy writes nor let anyone
check a text reward against the text it was computed from (the reasoning-pattern reward is
recomputed from these lines in the tests). One file per iteration, written whole: a resumed run
rewrites the iterations it repeats instead of appending duplicates, and a ``gs://`` run directory
(whose objects cannot be appended to) works the same way.

    for line in open("RUN/samples/000003.jsonl"): json.loads(line)
    # {"row": 0, "prompt_id": "toy/train/17", "answer": "42", "text": "...", "truncated": false,
    #  "success": 0.0, "pattern": 0.35, "outcome": 0.35}

``rollout_text_stats`` reduces the same texts to the hacking diagnostics each iteration's metrics
carry (steps per response, the fraction of steps that repeat an earlier one).
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from rewards import steps as steps_lib
from rl.runtime.distributed import is_main_process, run_path

DIR = "samples"


def sample_path(workdir: str | os.PathLike, step: int):
    """Where iteration ``step``'s samples go (an ``epath.Path``)."""
    return run_path(workdir) / DIR / f"{int(step):06d}.jsonl"


def write_samples(
    workdir: str | os.PathLike, step: int, limit: int, columns: Mapping[str, Sequence[Any]]
) -> None:
    """The first ``limit`` rows of ``columns`` (equal-length per-row lists), one JSON object per
    line with its ``row`` index; nothing when ``limit`` is 0 or off process 0."""
    if limit <= 0 or not is_main_process():
        return
    lengths = {len(v) for v in columns.values()}
    if len(lengths) > 1:
        raise ValueError(f"columns of unequal lengths: { {k: len(v) for k, v in columns.items()} }")
    count = min(limit, lengths.pop() if lengths else 0)
    lines = [
        json.dumps({"row": i, **{k: v[i] for k, v in columns.items()}}, ensure_ascii=False)
        for i in range(count)
    ]
    path = sample_path(workdir, step)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(line + "\n" for line in lines))


def rollout_text_stats(texts: list[str], sep: str) -> dict[str, float]:
    """Steps per response and the repeated-step fraction: the hacking diagnostics."""
    per = [steps_lib.step_texts(t, sep) for t in texts]
    return {
        "rollout/steps_per_response": float(np.mean([len(s) for s in per])) if per else 0.0,
        "rollout/repeated_step_fraction": (
            float(np.mean([steps_lib.repeated_step_fraction(s) for s in per])) if per else 0.0
        ),
    }
