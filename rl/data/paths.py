"""Where the data layer reads shipped files from and caches built datasets.

Built datasets are cached so that a run (and each host of a multi-host run) reads prepared
array_record files instead of re-parsing sources. The cache location is, in order: an explicit
``data_dir`` argument, the ``RLREWARD_DATA_DIR`` environment variable (point it at shared storage on
a TPU pod), ``~/.cache/rlreward/tfds``.
"""

from __future__ import annotations

import os
import pathlib

FILES_DIR = pathlib.Path(__file__).resolve().parent / "files"
DATA_DIR_ENV = "RLREWARD_DATA_DIR"


def default_data_dir() -> pathlib.Path:
    """The cache directory used when no ``data_dir`` is given."""
    env = os.environ.get(DATA_DIR_ENV)
    if env:
        return pathlib.Path(env).expanduser()
    return pathlib.Path("~/.cache/rlreward/tfds").expanduser()


def resolve_data_dir(data_dir: str | os.PathLike | None) -> pathlib.Path:
    """``data_dir`` if given, else the default; as an absolute path."""
    return (
        pathlib.Path(data_dir).expanduser() if data_dir is not None else default_data_dir()
    ).resolve()
