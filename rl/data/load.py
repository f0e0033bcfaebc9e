"""``load(name, split)``: the one call the trainer and evaluator make to get a dataset's examples.

    load("gsm8k", "test")                 # 1,319 Examples
    load("math", "train")                 # 7,498: the 2 rows without an answer are left out, logged
    load("toy", "train", seed=1, train_size=2_000)
    load("gsm8k", "test", sources={"test": "my.jsonl"}, allow_malformed=True)
    load_files("my_problems/", "train", question_field="problem")   # your own files
    load_split(run_config.data, "train")  # data.path's files for data.split, else the dataset's

The first call for a (dataset, parameters) pair builds it into the cache (``rl.data.paths``); later
calls read the prepared array_record files. Datasets are small (at most tens of thousands of short
texts), so a split is returned as a list in file order; random access and shuffling are the
``PromptIterator``'s job.
"""

from __future__ import annotations

import logging
import os
from collections.abc import Mapping
from typing import Any

import numpy as np

from rl.config import ConfigError, DataConfig
from rl.data.example import Example
from rl.data.gsm8k import Gsm8k
from rl.data.local_builder import LocalBuilder
from rl.data.math500 import Math500
from rl.data.math_train import MathTrain
from rl.data.rows import DataError
from rl.data.source_builder import TEXT_FIELDS
from rl.data.toy_builder import ToyArithmetic
from rl.data.user_files import UserFiles, check_seam_provenance

log = logging.getLogger(__name__)

DATASETS: Mapping[str, type[LocalBuilder]] = {
    "gsm8k": Gsm8k,
    "math500": Math500,
    "math": MathTrain,
    "toy": ToyArithmetic,
}
# How many ids a log message lists before "...".
_SHOWN = 10


def builder(
    name: str, *, data_dir: str | os.PathLike | None = None, **builder_kwargs: Any
) -> LocalBuilder:
    """The prepared TFDS builder of dataset ``name`` (built on first use)."""
    if name not in DATASETS:
        raise DataError(f"dataset={name!r}: must be one of {sorted(DATASETS)}")
    return DATASETS[name](data_dir=data_dir, **builder_kwargs).prepared()


def load(
    name: str,
    split: str,
    *,
    data_dir: str | os.PathLike | None = None,
    require_answer: bool = True,
    **builder_kwargs: Any,
) -> list[Example]:
    """The examples of one split of dataset ``name``, in file order.

    Args:
      name: "gsm8k" (train, test), "math500" (test), "math" (train), "toy" (train, test).
      split: the split's name.
      data_dir: the build cache root; default ``rl.data.paths.default_data_dir()``.
      require_answer: leave out (and log, naming them) examples with an empty answer, which no
        verifier can reward: the right thing for RL prompts and for evaluation. False keeps every
        row.
      **builder_kwargs: passed to the dataset's builder (toy: seed, train_size, test_size, spec;
        file datasets: sources, allow_malformed).
    """
    built = builder(name, data_dir=data_dir, **builder_kwargs)
    if split not in built.info.splits:
        raise DataError(
            f"dataset {name!r} has no split={split!r}; its splits are {sorted(built.info.splits)}"
        )
    _log_rejections(name, split, built)
    source = built.as_data_source(split)
    examples = [_to_example(record) for record in source.__getitems__(range(len(source)))]
    if require_answer:
        examples = _drop_unanswered(name, split, examples)
    return examples


def load_files(
    path: str | os.PathLike,
    split: str = "train",
    *,
    data_dir: str | os.PathLike | None = None,
    **fields: Any,
) -> list[Example]:
    """The examples of your own JSONL / Parquet file or directory (``rl.data.user_files``), in file
    order, as split ``split``; ``fields``: question_field, answer_field, id_field,
    allow_malformed."""
    built = UserFiles(path=path, split=split, data_dir=data_dir, **fields).prepared()
    name = f"files:{os.fspath(path)}"
    _log_rejections(name, split, built)
    source = built.as_data_source(split)
    return [_to_example(record) for record in source.__getitems__(range(len(source)))]


def load_split(
    d: DataConfig, split: str, *, data_dir: str | os.PathLike | None = None
) -> list[Example]:
    """What a run's ``data`` section names for ``split``: the files of ``data.path`` when it is set
    and ``split`` is ``data.split`` (the training split), else the dataset's own split (evaluation
    splits always come from ``data.dataset``)."""
    if not d.path or split != d.split:
        return load(d.dataset, split, data_dir=data_dir, **d.builder_kwargs())
    check_seam_provenance(d.path, d.dataset)
    examples = load_files(
        d.path,
        split,
        data_dir=data_dir,
        question_field=d.question_field,
        answer_field=d.answer_field,
        id_field=d.id_field,
        allow_malformed=d.allow_malformed,
    )
    if len(examples) < d.prompts_per_batch:
        raise ConfigError(
            f"config.data.path={d.path!r}: {len(examples)} usable problem(s), fewer than one batch "
            f"of config.data.prompts_per_batch={d.prompts_per_batch}"
        )
    return examples


def _to_example(record: Mapping[str, Any]) -> Example:
    fields = {key: _decode(value) for key, value in record.items()}
    return Example(**{key: fields.pop(key) for key in TEXT_FIELDS}, meta=fields)


def _decode(value: Any) -> Any:
    # Without TensorFlow, TFDS hands text features back as UTF-8 bytes and scalars as numpy values.
    if isinstance(value, bytes):
        return value.decode("utf-8")
    if isinstance(value, np.generic):
        return value.item()
    return value


def _drop_unanswered(name: str, split: str, examples: list[Example]) -> list[Example]:
    dropped = [ex.id for ex in examples if not ex.answer]
    if dropped:
        more = ", ..." if len(dropped) > _SHOWN else ""
        log.warning(
            "%s/%s: leaving out %d of %d examples with an empty answer (nothing to verify): %s%s",
            name,
            split,
            len(dropped),
            len(examples),
            ", ".join(dropped[:_SHOWN]),
            more,
        )
    return [ex for ex in examples if ex.answer]


def _log_rejections(name: str, split: str, built: LocalBuilder) -> None:
    report = (built.info.metadata or {}).get(split)
    if report and report["rejected"]:
        log.warning(
            "%s/%s was built with %d malformed row(s) of %s skipped (allow_malformed=True); "
            "first: %s",
            name,
            split,
            report["rejected"],
            report["file"],
            report["rejections"][:3],
        )
