"""Your own problems as a dataset: JSON Lines or Parquet files, read through the same TFDS path as
the shipped datasets (config: ``data.path``, ``data.question_field``, ``data.answer_field``,
``data.id_field``, ``data.allow_malformed``).

    built = UserFiles(path="my_problems.jsonl", split="train", question_field="problem").prepared()
    rl.data.load_files("my_dir/", "train", answer_field="final", allow_malformed=True)

Why a TFDS builder and not a plain reader: the trainer's one data path (array_record files read
with ``as_data_source``, no TensorFlow) then serves every source alike, on every host of a pod, and
the build is cached under a fingerprint of the files' bytes and the field mapping, so an edited file
is rebuilt, never read stale.

A path is a ``.jsonl`` or ``.parquet`` file, or a directory whose ``.jsonl`` / ``.parquet`` files
(not its subdirectories; other files are ignored, and named in a log line) are read in name order
as one split. A row is malformed, as in the shipped datasets (``rl.data.rows``), when it is not a
JSON object, lacks the question or answer field, has an empty or non-text question, an empty answer
(numbers are answers: ``42`` is stored as ``"42"``), or an id that an earlier row of the split
already has; the error names the file, the line (JSONL, 1-based) or row (Parquet, 0-based) and the
field. ``allow_malformed`` skips them instead: counted, logged, kept in the build's report.

A file written by ``rl.seam`` sits next to that run's ``seam.json``; ``check_seam_provenance``
refuses to train on it under another task than the one it was selected for.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import pathlib
from collections.abc import Iterator, Mapping
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import tensorflow_datasets as tfds

from rl.config import DATA_FILE_SUFFIXES, ConfigError
from rl.data import rows
from rl.data.local_builder import LocalBuilder
from rl.data.source_builder import TEXT_FIELDS, _file_sha256

log = logging.getLogger(__name__)

# The manifest rl.seam writes next to the prompts it keeps (rl.eval.seam_stage).
SEAM_MANIFEST = "seam.json"
# Example keys: file index in the high bits, row index in the low ones (stored in key order).
_ROW_BITS = 40


def data_files(path: str | os.PathLike) -> list[pathlib.Path]:
    """The files ``path`` names: itself, or a directory's ``.jsonl`` / ``.parquet`` files in name
    order; ``DataError`` when there are none."""
    p = pathlib.Path(path).expanduser().resolve()
    if p.is_file():
        if p.suffix not in DATA_FILE_SUFFIXES:
            raise rows.DataError(f"{p}: a {p.suffix!r} file; data files are {DATA_FILE_SUFFIXES}")
        return [p]
    if not p.is_dir():
        raise rows.DataError(f"{p}: no such file or directory")
    found = sorted(f for f in p.iterdir() if f.is_file() and f.suffix in DATA_FILE_SUFFIXES)
    others = sorted(f.name for f in p.iterdir() if f not in found and not f.name.startswith("."))
    if not found:
        raise rows.DataError(f"{p}: a directory without {' or '.join(DATA_FILE_SUFFIXES)} files")
    if others:
        log.info("%s: reading %d data file(s), ignoring %s", p, len(found), ", ".join(others))
    return found


def read_parquet(path: pathlib.Path) -> Iterator[rows.RawRow]:
    """Rows of a Parquet file as dicts; ``index`` and "row N" are 0-based."""
    try:
        parquet = pq.ParquetFile(path)
    except (pa.ArrowException, OSError) as e:
        raise rows.DataError(f"{path}: not a readable Parquet file ({e})") from e
    index = 0
    for batch in parquet.iter_batches(batch_size=4096):
        for value in batch.to_pylist():
            yield rows.RawRow(index, f"row {index}", value=value)
            index += 1


def answer_text(row: Mapping[str, Any], name: str) -> str:
    """``row[name]`` as the answer string: text stripped, or an integer / finite number written
    out; missing, empty and other types are errors."""
    if name not in row:
        raise rows.RowError(name, "missing")
    value = row[name]
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        if value != value or value in (float("inf"), float("-inf")):
            raise rows.RowError(name, f"not a finite number ({value!r})")
        return str(value)
    return rows.text_field(row, name).strip()


class UserFiles(LocalBuilder):
    """Problems from your own JSON Lines / Parquet files, mapped to id, question, answer."""

    name = "rlreward_user_files"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(
        self,
        *,
        path: str | os.PathLike,
        split: str = "train",
        question_field: str = "question",
        answer_field: str = "answer",
        id_field: str = "",
        allow_malformed: bool = False,
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ):
        # Set before TFDS's constructor, which calls _info() and get_default_builder_config().
        self._root = pathlib.Path(path).expanduser().resolve()
        self._files = data_files(self._root)
        self._split = split
        self._fields = {"question": question_field, "answer": answer_field, "id": id_field}
        self._allow_malformed = allow_malformed
        super().__init__(data_dir=data_dir, **kwargs)

    def get_default_builder_config(self) -> tfds.core.BuilderConfig:
        digest = hashlib.sha256(json.dumps([self._split, self._fields], sort_keys=True).encode())
        for f in self._files:
            digest.update(f"{f.name}={_file_sha256(f)};".encode())
        name = "files-" + digest.hexdigest()[:16] + ("-lenient" if self._allow_malformed else "")
        files = ", ".join(f.name for f in self._files)
        return tfds.core.BuilderConfig(name=name, description=f"{self._split}: {files}")

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict({k: tfds.features.Text() for k in TEXT_FIELDS}),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        del dl_manager  # Local files.
        first_seen: dict[str, str] = {}  # id -> "file line N": ids are unique across the split
        kept, rejections = [], []
        for number, f in enumerate(self._files):
            raw = read_parquet(f) if f.suffix == ".parquet" else rows.read_jsonl(f)
            parsed = rows.parse_file(f, raw, self._row_parser(f, first_seen))
            kept += [((number << _ROW_BITS) + i, row) for i, row in parsed.rows]
            rejections += parsed.rejections
        combined = rows.ParsedFile(self._root, kept, rejections)
        rows.check_rejections(combined, allow_malformed=self._allow_malformed)
        if not kept:
            raise rows.DataError(f"{self._root}: no usable rows for split {self._split!r}")
        self.info.metadata[self._split] = combined.report()
        return {self._split: self._generate_examples(kept)}

    def _generate_examples(self, kept: list[tuple[int, dict]]) -> Iterator[tuple[int, dict]]:
        yield from kept  # keys: file number, then row: stored in that order

    def _row_parser(self, f: pathlib.Path, first_seen: dict[str, str]):
        fields = self._fields
        parquet = f.suffix == ".parquet"

        def parse(row: Mapping[str, Any], index: int) -> dict[str, str]:
            question = rows.text_field(row, fields["question"]).strip()
            answer = answer_text(row, fields["answer"])
            # An id field holds a string or a number, non-empty; without one: FILE/ROW.
            example_id = answer_text(row, fields["id"]) if fields["id"] else f"{f.name}/{index}"
            where = f"{f.name} row {index}" if parquet else f"{f.name} line {index + 1}"
            if (first := first_seen.setdefault(example_id, where)) != where:
                raise rows.RowError(
                    fields["id"] or "id", f"{example_id!r} repeats the id of {first}"
                )
            return {"id": example_id, "question": question, "answer": answer, "solution": ""}

        return parse


def check_seam_provenance(path: str | os.PathLike, dataset: str) -> None:
    """``ConfigError`` naming ``config.data.dataset`` when ``path`` is prompts that ``rl.seam``
    selected on another dataset (its ``seam.json`` sits next to them): their prompt format, step
    separator and answers belong to that task."""
    p = pathlib.Path(path).expanduser()
    manifest = (p if p.is_dir() else p.parent) / SEAM_MANIFEST
    if not manifest.is_file():
        return
    made_for = json.loads(manifest.read_text()).get("dataset")
    if made_for is not None and made_for != dataset:
        raise ConfigError(
            f"config.data.dataset={dataset!r}: config.data.path={os.fspath(path)!r} holds prompts "
            f"rl.seam selected from dataset {made_for!r} ({manifest}); set "
            f"config.data.dataset={made_for!r}"
        )
