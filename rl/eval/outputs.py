"""Writing an evaluation's summary: the JSON file, its markdown table and the per-response records
(``rl.evaluate``'s FILE, the table beside it with suffix .md, and FILE.records.jsonl)."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


def jsonable(value: Any) -> Any:
    """NaN/inf → None (JSON has neither), numpy scalars → Python."""
    if isinstance(value, dict):
        return {k: jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [jsonable(v) for v in value]
    if isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float) and not math.isfinite(value):
        return None
    return value


def markdown_table(summary: dict[str, Any]) -> str:
    """The summary as a two-column markdown table."""

    def fmt(v):
        return (
            "n/a"
            if v is None or (isinstance(v, float) and math.isnan(v))
            else (f"{v:.4f}" if isinstance(v, float) else str(v))
        )

    rows = [("n", summary["n"]), ("greedy accuracy", summary["accuracy"])]
    rows += [(f"greedy {k}", v) for k, v in summary["greedy"].items() if k != "accuracy"]
    for section in ("sampled", "best_of"):
        for k, v in summary.get(section, {}).items():
            rows.append((f"{section} {k}", v))
    lines = [f"## Evaluation: {summary['dataset']}", "", "| metric | value |", "|---|---|"]
    lines += [f"| {k} | {fmt(v)} |" for k, v in rows]
    return "\n".join(lines) + "\n"


def write_outputs(summary: dict[str, Any], output: str | Path, *, records: bool = True) -> str:
    """Writes FILE (JSON summary), FILE's .md table and, with `records`, FILE's .records.jsonl;
    returns the table."""
    output = Path(output)
    output.parent.mkdir(parents=True, exist_ok=True)
    body = {k: v for k, v in summary.items() if k != "records"}
    output.write_text(json.dumps(jsonable(body), indent=2) + "\n")
    table = markdown_table(body)
    output.with_suffix(".md").write_text(table)
    if records:
        with output.with_suffix(".records.jsonl").open("w") as f:
            for r in summary.get("records", []):
                f.write(json.dumps(jsonable(r)) + "\n")
    return table
