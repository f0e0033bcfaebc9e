"""A TFDS builder for data made on this machine: array_record files, no TensorFlow, no downloads.

TFDS 4.9.10 needs neither TensorFlow nor network access to build and read array_record datasets,
with one exception worked around here: ``DatasetBuilder.code_path`` touches the
``importlib_resources`` backport, which TFDS declares only for Python < 3.9 and so is not installed
on 3.11 (upstream bug tensorflow/datasets#11212, "required dependency on importlib_resources
missing"). For a builder in an ordinary package, TFDS's own answer is the class's source file, which
is what ``code_path`` returns here without that import. (Installing ``importlib_resources`` also
fixes it; this keeps the data layer working whether or not it is installed.)
"""

from __future__ import annotations

import inspect
import os
from typing import Any

import tensorflow_datasets as tfds
from etils import epath

from rl.data import paths


class LocalBuilder(tfds.core.GeneratorBasedBuilder, skip_registration=True):
    """Writes array_record splits under ``data_dir`` (default
    ``rl.data.paths.default_data_dir()``)."""

    def __init__(self, *, data_dir: str | os.PathLike | None = None, **kwargs: Any):
        super().__init__(
            data_dir=os.fspath(paths.resolve_data_dir(data_dir)),
            file_format="array_record",
            **kwargs,
        )

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        return epath.Path(inspect.getfile(cls))

    def prepared(self) -> LocalBuilder:
        """Builds the splits unless a build is already cached; returns self for chaining.

        TFDS's progress bars are switched off: a build takes seconds, and the bars' carriage returns
        would fill the training logs.
        """
        tfds.display_progress_bar(False)
        self.download_and_prepare()
        return self
