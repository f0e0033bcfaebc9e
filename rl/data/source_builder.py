"""The TFDS builder shared by the datasets read from files shipped in ``rl/data/files``.

Why TFDS with ``file_format="array_record"``: the prepared splits are random-access files that
``builder.as_data_source()`` (or ``tfds.data_source(name, data_dir=...)``) reads with no TensorFlow
installed, the same way on a laptop and on every host of a TPU pod.

Every dataset here has the fields the trainer and evaluator need, ``id``, ``question``, ``solution``
(the reference worked solution, "" when the source has none) and ``answer`` (the final answer the
verifier compares against), plus whatever a subclass adds (MATH500's subject and level). Rows keep
their file order (``disable_shuffling``): row i of a split is item i of the file, less rejected
rows. Ids are unique within a split; a row repeating an earlier row's id is malformed.

Caching. The build lands in ``data_dir/<name>/<config>/<version>``, where the config name is a
fingerprint of the source files' bytes (and of ``allow_malformed``): editing a source file, or
pointing ``sources`` at another file, gives a fresh build instead of a stale cached one. ``VERSION``
must be bumped when the parsing code changes what is stored.

A build's per-split report (rows kept, rows rejected and why) is stored with it in
``info.metadata[split]``.
"""

from __future__ import annotations

import abc
import functools
import hashlib
import os
import pathlib
from collections.abc import Callable, Iterator, Mapping
from typing import Any, ClassVar

import tensorflow_datasets as tfds

from rl.data import paths, rows
from rl.data.local_builder import LocalBuilder

TEXT_FIELDS = ("id", "question", "solution", "answer")


class SourceFileBuilder(LocalBuilder, skip_registration=True):
    """Base builder: one source file per split, parsed and validated by ``parse_row``.

    Args of the constructor:
      sources: split -> file, replacing ``SOURCES`` (paths relative to ``rl/data/files`` or
      absolute). allow_malformed: skip malformed rows with a logged count instead of raising
      ``DataError``. data_dir: the cache root (see ``rl.data.paths``).
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES: ClassVar[dict[str, str]] = {"1.0.0": "First version."}
    SOURCES: ClassVar[Mapping[str, str]] = {}
    EXTRA_FEATURES: ClassVar[Mapping[str, Any]] = {}
    HOMEPAGE: ClassVar[str] = ""

    def __init__(
        self,
        *,
        sources: Mapping[str, str | os.PathLike] | None = None,
        allow_malformed: bool = False,
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ):
        # Set before TFDS's constructor, which calls _info() and get_default_builder_config().
        self._sources = {
            split: paths.FILES_DIR / p for split, p in (sources or self.SOURCES).items()
        }
        for split, path in self._sources.items():
            if not path.is_file():
                raise rows.DataError(
                    f"{type(self).__name__}: source file for split {split!r} not found: {path}"
                )
        self._allow_malformed = allow_malformed
        super().__init__(data_dir=data_dir, **kwargs)

    @abc.abstractmethod
    def parse_row(self, row: Mapping[str, Any], index: int, split: str) -> dict[str, Any]:
        """The stored fields of one source row; raises ``rows.RowError`` naming the bad field."""

    def read_rows(self, path: pathlib.Path) -> Iterator[rows.RawRow]:
        """The raw rows of a source file; JSON Lines unless a subclass says otherwise."""
        return rows.read_jsonl(path)

    def get_default_builder_config(self) -> tfds.core.BuilderConfig:
        digest = hashlib.sha256()
        for split, path in sorted(self._sources.items()):
            digest.update(f"{split}={_file_sha256(path)};".encode())
        name = "src-" + digest.hexdigest()[:16] + ("-lenient" if self._allow_malformed else "")
        files = ", ".join(f"{split}: {path.name}" for split, path in sorted(self._sources.items()))
        return tfds.core.BuilderConfig(name=name, description=f"Built from {files}.")

    def _info(self) -> tfds.core.DatasetInfo:
        features = {name: tfds.features.Text() for name in TEXT_FIELDS} | dict(self.EXTRA_FEATURES)
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            homepage=self.HOMEPAGE or None,
            features=tfds.features.FeaturesDict(features),
            disable_shuffling=True,
            metadata=tfds.core.MetadataDict(),
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict[str, Any]]]]:
        del dl_manager  # Sources are local files.
        generators = {}
        for split, path in self._sources.items():
            parsed = rows.parse_file(path, self.read_rows(path), _unique_ids(self.parse_row, split))
            rows.check_rejections(parsed, allow_malformed=self._allow_malformed)
            if not parsed.rows:
                raise rows.DataError(f"{path}: no usable rows for split {split!r}")
            self.info.metadata[split] = parsed.report()
            generators[split] = self._generate_examples(parsed.rows)
        return generators

    def _generate_examples(
        self, parsed_rows: list[tuple[int, dict[str, Any]]]
    ) -> Iterator[tuple[int, dict[str, Any]]]:
        # The key is the row's index in its file: with shuffling disabled, rows are stored in key
        # order.
        yield from parsed_rows


def _unique_ids(
    parse_row: Callable[..., dict[str, Any]], split: str
) -> Callable[[Mapping[str, Any], int], dict[str, Any]]:
    """``parse_row`` for one split, also rejecting a row whose ``id`` an earlier row already has."""
    first_index: dict[str, int] = {}

    def parse(row: Mapping[str, Any], index: int) -> dict[str, Any]:
        parsed = parse_row(row, index, split)
        if (first := first_index.setdefault(parsed["id"], index)) != index:
            raise rows.RowError(
                "id", f"{parsed['id']!r} repeats the id of the row at index {first}"
            )
        return parsed

    return parse


@functools.cache
def _file_sha256_cached(path: str, size: int, mtime_ns: int) -> str:
    del size, mtime_ns  # Part of the cache key only.
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def _file_sha256(path: pathlib.Path) -> str:
    stat = path.stat()
    return _file_sha256_cached(os.fspath(path.resolve()), stat.st_size, stat.st_mtime_ns)
