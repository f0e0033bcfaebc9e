"""What the SEAM stage leaves: the kept prompts as a data file ``data.path`` reads, what was dropped
and why, and a summary (counts, kept fraction, the SEAM histogram as numbers and as a plot).

    OUT/kept.jsonl     id, question, answer, solution, seam: train on it with
                       --config.data.path=OUT/kept.jsonl --config.data.id_field=id
    OUT/dropped.jsonl  id, seam, reason
    OUT/summary.json   prompts, kept, kept_fraction, undefined, selection, histogram, plot
    OUT/summary.md     the same as a table (the command prints it)
    OUT/seam_hist.png  all and kept prompts' SEAM scores (when matplotlib is installed)

The selection (``Selection``) is one of: ``keep``, the fraction of prompts with the lowest SEAM
(``mode="low"``: where the reward judges the policy's responses as the policy does; ``"high"``:
the opposite), exactly ``rl.eval.seam.filter_prompts``; or ``band``, every prompt whose SEAM lies in
[lo, hi]. An undefined SEAM (no response pair that both the policy and the reward rank: e.g. every
response right, or every one wrong) counts as ``undefined`` (0.5, no evidence either way) or, with
None, is dropped. A selection that keeps no prompt is an error naming its flag, never an empty
file; one that can be known to keep none from the counts alone is refused before anything is scored.
"""

from __future__ import annotations

import dataclasses
import json
import math
import os
import pathlib
from collections.abc import Sequence
from typing import Any

import numpy as np

from rl.eval.seam import MODES, filter_prompts
from rl.eval.seam_stage import SeamStageError

try:  # The plot is optional: without matplotlib the summary says so and keeps the counts.
    from matplotlib.figure import Figure
except ImportError:  # pragma: no cover - matplotlib is pinned in requirements.txt
    Figure = None

KEPT, DROPPED = "kept.jsonl", "dropped.jsonl"
SUMMARY_JSON, SUMMARY_MD, PLOT = "summary.json", "summary.md", "seam_hist.png"
BINS = 20


@dataclasses.dataclass(frozen=True)
class Selection:
    keep: float | None = None
    band: tuple[float, float] | None = None
    mode: str = "low"
    undefined: float | None = 0.5  # None: prompts with an undefined SEAM are dropped

    def check(self, num_examples: int) -> Selection:
        """``SeamStageError`` naming the flag for settings that cannot keep a prompt, before any
        scoring: the fraction of ``num_examples`` rounds to 0, an empty or inverted band."""
        if (self.keep is None) == (self.band is None):
            raise SeamStageError(
                f"--keep={self.keep!r}, --band={self.band!r}: give exactly one of them"
            )
        if self.keep is not None:
            if not (isinstance(self.keep, (int, float)) and 0 < self.keep <= 1):
                raise SeamStageError(f"--keep={self.keep!r}: must be a fraction in (0, 1]")
            if round(self.keep * num_examples) < 1:
                raise SeamStageError(
                    f"--keep={self.keep!r} keeps no prompt of the {num_examples}: "
                    f"round({self.keep} x {num_examples}) = 0"
                )
        else:
            lo, hi = self.band
            if not 0 <= lo <= hi <= 1:
                raise SeamStageError(f"--band={lo},{hi}: must be LO,HI with 0 <= LO <= HI <= 1")
        if self.mode not in MODES:
            raise SeamStageError(f"--mode={self.mode!r}: must be one of {MODES}")
        if self.undefined is not None and not 0 <= self.undefined <= 1:
            raise SeamStageError(f"--undefined={self.undefined!r}: must be in [0, 1] or 'drop'")
        return self

    def describe(self) -> str:
        if self.keep is not None:
            return f"the {'lowest' if self.mode == 'low' else 'highest'} {self.keep:.0%} SEAM"
        return f"SEAM in [{self.band[0]}, {self.band[1]}]"


def _scores(records: Sequence[dict[str, Any]]) -> np.ndarray:
    return np.array([np.nan if r["seam"] is None else r["seam"] for r in records], np.float64)


def select(records: Sequence[dict[str, Any]], sel: Selection) -> np.ndarray:
    """[E] bool: the prompts kept; ``SeamStageError`` naming the flag when none is."""
    s = _scores(records)
    undefined = np.isnan(s)
    if sel.keep is not None:
        kept = filter_prompts(
            list(range(len(s))),
            s,
            keep_fraction=sel.keep,
            mode=sel.mode,
            undefined_as=sel.undefined,
        )
        keep = np.zeros(len(s), bool)
        keep[kept] = True
    else:
        filled = np.where(undefined, np.nan if sel.undefined is None else sel.undefined, s)
        with np.errstate(invalid="ignore"):
            keep = (filled >= sel.band[0]) & (filled <= sel.band[1])
    if keep.any():
        return keep
    defined = s[~undefined]
    if sel.undefined is None and not defined.size:
        raise SeamStageError(
            f"--undefined=drop: all {len(s)} prompts have an undefined SEAM (no response pair "
            "ranked by both policy and reward), so none is kept; count them as 0.5 instead"
        )
    seen = f"[{defined.min():.3f}, {defined.max():.3f}]" if defined.size else "none defined"
    raise SeamStageError(
        f"--band={sel.band[0]},{sel.band[1]} keeps no prompt: the SEAM scores lie in {seen} "
        f"({int(undefined.sum())} undefined); the scores are saved, so re-running with another "
        "--band re-selects without rescoring"
    )


def _reason(score: float, sel: Selection, cut: float | None) -> str:
    if math.isnan(score) and sel.undefined is None:
        return "SEAM undefined (dropped: --undefined=drop)"
    shown = f"{sel.undefined} (undefined)" if math.isnan(score) else f"{score:.3f}"
    if sel.band is not None:
        return f"SEAM {shown} outside [{sel.band[0]}, {sel.band[1]}]"
    side = "above" if sel.mode == "low" else "below"
    return f"SEAM {shown}: not in {sel.describe()} ({side} the cut at {cut:.3f})"


def _histogram(values: np.ndarray) -> list[int]:
    return np.histogram(values, bins=BINS, range=(0.0, 1.0))[0].astype(int).tolist()


def _plot(path: pathlib.Path, all_s: np.ndarray, kept_s: np.ndarray, undefined: int) -> str:
    if Figure is None:
        return "matplotlib is not installed: no plot (the counts are in summary.json)"
    fig = Figure(figsize=(6.4, 3.6))
    ax = fig.subplots()
    edges = np.linspace(0.0, 1.0, BINS + 1)
    width = 1.0 / BINS
    ax.bar(edges[:-1], _histogram(all_s), width, align="edge", color="0.8", label="all prompts")
    ax.bar(edges[:-1], _histogram(kept_s), width, align="edge", color="C0", label="kept")
    ax.set_xlabel("SEAM (0: policy and reward rank responses alike; 1: reversed)")
    ax.set_ylabel("prompts")
    ax.set_title(f"SEAM of {all_s.size} prompts with a defined score ({undefined} undefined)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    return path.name


def _write_jsonl(path: pathlib.Path, rows: list[dict[str, Any]]) -> None:
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    os.replace(tmp, path)


def write_outputs(
    out_dir: str | os.PathLike, records: Sequence[dict[str, Any]], sel: Selection
) -> dict[str, Any]:
    """Selects, writes kept.jsonl, dropped.jsonl, summary.json, summary.md and the plot; returns
    the summary."""
    out = pathlib.Path(out_dir)
    keep = select(records, sel)
    s = _scores(records)
    undefined = np.isnan(s)
    filled = np.where(undefined, np.nan if sel.undefined is None else sel.undefined, s)
    kept_filled = filled[keep]
    cut = None
    if sel.keep is not None:
        cut = float(np.max(kept_filled) if sel.mode == "low" else np.min(kept_filled))
    kept_rows = [
        {k: r[k] for k in ("id", "question", "answer", "solution", "seam")}
        for r, k in zip(records, keep)
        if k
    ]
    dropped_rows = [
        {"id": r["id"], "seam": r["seam"], "reason": _reason(float(v), sel, cut)}
        for r, v, k in zip(records, s, keep)
        if not k
    ]
    _write_jsonl(out / KEPT, kept_rows)
    _write_jsonl(out / DROPPED, dropped_rows)
    defined = ~undefined
    summary = {
        "prompts": len(records),
        "kept": int(keep.sum()),
        "kept_fraction": float(keep.mean()),
        "dropped": int((~keep).sum()),
        "undefined": int(undefined.sum()),
        "undefined_kept": int((undefined & keep).sum()),
        "selection": {**dataclasses.asdict(sel), "describe": sel.describe(), "cut": cut},
        "seam_mean": _mean(s[defined]),
        "seam_mean_kept": _mean(s[defined & keep]),
        "seam_mean_dropped": _mean(s[defined & ~keep]),
        "histogram": {
            "edges": np.linspace(0.0, 1.0, BINS + 1).round(4).tolist(),
            "all": _histogram(s[defined]),
            "kept": _histogram(s[defined & keep]),
        },
        "plot": _plot(out / PLOT, s[defined], s[defined & keep], int(undefined.sum())),
        "kept_file": KEPT,
    }
    (out / SUMMARY_JSON).write_text(json.dumps(summary, indent=2) + "\n")
    (out / SUMMARY_MD).write_text(markdown(summary))
    return summary


def _mean(x: np.ndarray) -> float | None:
    return float(np.mean(x)) if x.size else None


def _fmt(x: float | None) -> str:
    return "–" if x is None else f"{x:.3f}"


def markdown(summary: dict[str, Any]) -> str:
    sel = summary["selection"]
    undefined_as = "dropped" if sel["undefined"] is None else f"counted as {sel['undefined']}"
    rows = [
        ("prompts scored", summary["prompts"]),
        ("kept", f"{summary['kept']} ({summary['kept_fraction']:.1%}), {sel['describe']}"),
        ("dropped", f"{summary['dropped']} (reasons in {DROPPED})"),
        (
            "undefined SEAM",
            f"{summary['undefined']} ({undefined_as}; {summary['undefined_kept']} kept)",
        ),
        (
            "mean SEAM: all / kept / dropped",
            " / ".join(
                _fmt(summary[k]) for k in ("seam_mean", "seam_mean_kept", "seam_mean_dropped")
            ),
        ),
        ("histogram", summary["plot"]),
        ("train on", f"--config.data.path=OUT/{KEPT} --config.data.id_field=id"),
    ]
    lines = ["| SEAM selection | |", "|---|---|"] + [f"| {k} | {v} |" for k, v in rows]
    return "\n".join(lines) + "\n"
