"""TFDS builder for the toy task: generated from a seed, no source files.

It goes through TFDS like the real datasets so the trainer has one data path for all of them. The
build's config name spells out every parameter (seed, sizes, spec), so each combination is cached in
its own directory and a changed parameter never reads a stale build. ``VERSION`` must be bumped when
``rl.data.toy``'s generator changes what it writes for the same parameters.
"""

from __future__ import annotations

import os
from collections.abc import Iterator
from typing import Any

import tensorflow_datasets as tfds

from rl.data import toy
from rl.data.local_builder import LocalBuilder
from rl.data.source_builder import TEXT_FIELDS

DEFAULT_TRAIN_SIZE = 20_000
DEFAULT_TEST_SIZE = 512


class ToyArithmetic(LocalBuilder):
    """Toy multi-step arithmetic (rl.data.toy): "Q: 7+5-3+8" solved one "a+d=r" line at a time."""

    name = "rlreward_toy"
    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First version."}

    def __init__(
        self,
        *,
        seed: int = 0,
        train_size: int = DEFAULT_TRAIN_SIZE,
        test_size: int = DEFAULT_TEST_SIZE,
        spec: toy.ToySpec = toy.ToySpec(),
        data_dir: str | os.PathLike | None = None,
        **kwargs: Any,
    ):
        for key, value in (("train_size", train_size), ("test_size", test_size)):
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ValueError(f"ToyArithmetic {key}={value!r}: must be an integer >= 1")
        if not isinstance(seed, int) or isinstance(seed, bool):
            raise ValueError(f"ToyArithmetic seed={seed!r}: must be an integer")
        # Set before TFDS's constructor, which calls _info() and get_default_builder_config().
        self._seed, self._spec = seed, spec
        self._sizes = {"train": train_size, "test": test_size}
        super().__init__(data_dir=data_dir, **kwargs)

    def get_default_builder_config(self) -> tfds.core.BuilderConfig:
        s = self._spec
        name = (
            f"seed{self._seed}-train{self._sizes['train']}-test{self._sizes['test']}"
            f"-ops{s.min_ops}to{s.max_ops}-operand{s.max_operand}-value{s.max_value}"
            f"-redundant{s.redundant_step_prob:g}"
        )
        return tfds.core.BuilderConfig(
            name=name, description=f"seed={self._seed}, sizes={self._sizes}, {s}"
        )

    def _info(self) -> tfds.core.DatasetInfo:
        return tfds.core.DatasetInfo(
            builder=self,
            description=type(self).__doc__,
            features=tfds.features.FeaturesDict(
                {name: tfds.features.Text() for name in TEXT_FIELDS}
            ),
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict[str, str]]]]:
        del dl_manager  # Nothing to download.
        return {split: self._generate_examples(split) for split in toy.SPLITS}

    def _generate_examples(self, split: str) -> Iterator[tuple[int, dict[str, str]]]:
        rows = toy.generate(split, self._sizes[split], seed=self._seed, spec=self._spec)
        for i, row in enumerate(rows):
            yield (
                i,
                {
                    "id": row.id,
                    "question": row.problem.question,
                    "solution": row.solution,
                    "answer": str(row.problem.answer),
                },
            )
