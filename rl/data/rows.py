"""Reading a shipped data file row by row, where a malformed row is reported, never lost quietly.

A benchmark's size is part of its meaning (GSM8K test has 1,319 problems; an accuracy over 1,312 is
not comparable), so a row that cannot be used stops the build by default, with a message naming the
file, the row and the field. ``allow_malformed=True`` is for a researcher's own, messier files: the
bad rows are then skipped, counted, logged, and kept in the built dataset's report.

Row numbers are 1-based line numbers for JSON Lines files (what an editor shows) and 0-based item
indices for JSON lists (what ``json.load(f)[i]`` takes); each message says which.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any

log = logging.getLogger(__name__)

# How many rejections an error message lists before "... and N more".
_SHOWN = 5


class DataError(ValueError):
    """A data file, row or request is unusable; the message names the file, row, field and value."""


class RowError(ValueError):
    """Raised by a row parser: ``field`` is the offending key (None for the row as a whole)."""

    def __init__(self, field: str | None, reason: str):
        super().__init__(f"field {field!r}: {reason}" if field else reason)
        self.field = field
        self.reason = reason


@dataclasses.dataclass(frozen=True)
class Rejection:
    """One malformed row: where it is and what is wrong with it."""

    file: str
    where: str  # "line 12" or "item 2300"
    field: str | None
    reason: str

    def __str__(self) -> str:
        field = f" field {self.field!r}:" if self.field else ""
        return f"{self.file} {self.where}:{field} {self.reason}"


@dataclasses.dataclass(frozen=True)
class RawRow:
    """A row as read: its 0-based index in the file, where it is, and the decoded JSON (or why
    not)."""

    index: int
    where: str
    value: Any = None
    error: str | None = None


def read_jsonl(path: pathlib.Path) -> Iterator[RawRow]:
    """Rows of a JSON Lines file; blank lines are not rows. ``index`` is the 0-based line number."""
    with open(path, encoding="utf-8") as f:
        for index, line in enumerate(f):
            if not line.strip():
                continue
            try:
                yield RawRow(index, f"line {index + 1}", value=json.loads(line))
            except json.JSONDecodeError as e:
                yield RawRow(
                    index, f"line {index + 1}", error=f"not valid JSON ({e.msg}, column {e.colno})"
                )


def read_json_list(path: pathlib.Path) -> Iterator[RawRow]:
    """Items of a file holding one JSON list."""
    try:
        with open(path, encoding="utf-8") as f:
            items = json.load(f)
    except json.JSONDecodeError as e:
        raise DataError(
            f"{path}: not valid JSON ({e.msg}, line {e.lineno} column {e.colno})"
        ) from e
    if not isinstance(items, list):
        raise DataError(f"{path}: expected a JSON list of rows, got {type(items).__name__}")
    for index, item in enumerate(items):
        yield RawRow(index, f"item {index}", value=item)


def text_field(row: Mapping[str, Any], name: str, *, allow_empty: bool = False) -> str:
    """``row[name]`` as a string; missing, non-string and (unless allowed) blank values are
    errors."""
    if name not in row:
        raise RowError(name, "missing")
    value = row[name]
    if not isinstance(value, str):
        raise RowError(name, f"expected a string, got {type(value).__name__} {_short(value)}")
    if not allow_empty and not value.strip():
        raise RowError(name, f"empty ({value!r})")
    return value


def int_field(row: Mapping[str, Any], name: str) -> int:
    """``row[name]`` as an integer (not a bool, not a float)."""
    if name not in row:
        raise RowError(name, "missing")
    value = row[name]
    if not isinstance(value, int) or isinstance(value, bool):
        raise RowError(name, f"expected an integer, got {type(value).__name__} {_short(value)}")
    return value


@dataclasses.dataclass(frozen=True)
class ParsedFile:
    """The usable rows of one file, in file order, each with its source index; and the
    rejections."""

    path: pathlib.Path
    rows: list[tuple[int, dict[str, Any]]]
    rejections: list[Rejection]

    def report(self) -> dict[str, Any]:
        """JSON-able summary, stored with the built dataset so a later reader can see what was
        skipped."""
        return {
            "file": self.path.name,
            "rows": len(self.rows),
            "rejected": len(self.rejections),
            "rejections": [str(r) for r in self.rejections[:100]],
        }


def parse_file(
    path: pathlib.Path,
    raw_rows: Iterator[RawRow],
    parse_row: Callable[[Mapping[str, Any], int], dict[str, Any]],
) -> ParsedFile:
    """Applies ``parse_row(json_object, index)`` to every row, collecting ``RowError``s as
    rejections."""
    rows, rejections = [], []
    for raw in raw_rows:
        try:
            if raw.error is not None:
                raise RowError(None, raw.error)
            if not isinstance(raw.value, dict):
                raise RowError(
                    None,
                    f"expected a JSON object, got {type(raw.value).__name__} {_short(raw.value)}",
                )
            rows.append((raw.index, parse_row(raw.value, raw.index)))
        except RowError as e:
            rejections.append(Rejection(path.name, raw.where, e.field, e.reason))
    return ParsedFile(path, rows, rejections)


def check_rejections(parsed: ParsedFile, *, allow_malformed: bool) -> None:
    """Raises ``DataError`` listing the first bad rows, or (when allowed) logs how many are
    skipped."""
    if not parsed.rejections:
        return
    n = len(parsed.rejections)
    shown = "\n  ".join(str(r) for r in parsed.rejections[:_SHOWN])
    more = f"\n  ... and {n - _SHOWN} more" if n > _SHOWN else ""
    if not allow_malformed:
        raise DataError(
            f"{parsed.path}: {n} malformed row(s):\n  {shown}{more}\n"
            "Fix the file, or pass allow_malformed=True to skip them "
            "(they are then counted and logged)."
        )
    log.warning(
        "%s: skipping %d malformed row(s) (allow_malformed=True), keeping %d:\n  %s%s",
        parsed.path,
        n,
        len(parsed.rows),
        shown,
        more,
    )


def _short(value: Any, limit: int = 60) -> str:
    text = repr(value)
    return text if len(text) <= limit else text[:limit] + "..."
