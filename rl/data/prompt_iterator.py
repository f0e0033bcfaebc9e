"""``PromptIterator``: the RL loop's endless, deterministic, resumable stream of prompt batches.

Why resumable: a PPO run that restarts from a checkpoint must see the prompts it would have seen
had it not stopped, or a resumed run is not the same experiment. The iterator's whole state is
``(epoch, position)``; ``state()`` returns it (with checks of what it was made for) as a JSON-able
dict to save next to the model, and ``from_state`` continues at that exact example.

Order: epoch e visits the examples in the permutation drawn from ``numpy.random.default_rng([seed,
e])``, a pure function of (seed, epoch), so nothing but the state needs saving. Batches never
straddle epochs: each epoch yields ``len(examples) // batch_size`` full batches and leaves out its
last ``len(examples) % batch_size`` shuffled examples (a different few each epoch), so every batch
has the one shape the compiled step expects.

Multi-host: with ``process_count > 1``, ``batch_size`` is the global batch and each process gets the
``process_index``-th contiguous slice of every global batch, so all hosts stay in lockstep on one
state.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator, Mapping, Sequence
from typing import Any

import numpy as np

from rl.data.example import Example
from rl.data.rows import DataError

_STATE_KEYS = ("epoch", "position", "seed", "batch_size", "num_examples", "examples_sha256")


class PromptIterator(Iterator[list[Example]]):
    """Endless batches of examples, reshuffled every epoch from (seed, epoch).

    Args:
      examples: the dataset split (e.g. ``rl.data.load("gsm8k", "train")``).
      batch_size: examples per global batch; at most ``len(examples)``.
      seed: the shuffling seed.
      process_index, process_count: this host's slice of each global batch (``jax.process_index()``,
        ``jax.process_count()``); ``batch_size`` must be divisible by ``process_count``.
    """

    def __init__(
        self,
        examples: Sequence[Example],
        batch_size: int,
        seed: int,
        *,
        process_index: int = 0,
        process_count: int = 1,
    ):
        if not examples:
            raise DataError("PromptIterator: examples is empty")
        if not isinstance(seed, int) or isinstance(seed, bool) or seed < 0:
            raise DataError(f"PromptIterator seed={seed!r}: must be an integer >= 0")
        if not isinstance(batch_size, int) or not 1 <= batch_size <= len(examples):
            raise DataError(
                f"PromptIterator batch_size={batch_size!r}: must be an integer in "
                f"[1, len(examples)={len(examples)}]"
            )
        if not isinstance(process_count, int) or process_count < 1 or batch_size % process_count:
            raise DataError(
                f"PromptIterator process_count={process_count!r}: must be an integer >= 1 "
                f"dividing batch_size={batch_size}"
            )
        if not isinstance(process_index, int) or not 0 <= process_index < process_count:
            raise DataError(
                f"PromptIterator process_index={process_index!r}: must be in [0, {process_count})"
            )
        self._examples = list(examples)
        self._batch_size = batch_size
        self._seed = seed
        self._local = slice(
            process_index * batch_size // process_count,
            (process_index + 1) * batch_size // process_count,
        )
        self._batches_per_epoch = len(self._examples) // batch_size
        self._examples_sha256 = _fingerprint(self._examples)
        self._epoch = 0
        self._position = 0  # Batches already taken from the current epoch.
        self._order = self._permutation(0)

    @property
    def batches_per_epoch(self) -> int:
        return self._batches_per_epoch

    def __next__(self) -> list[Example]:
        if self._position == self._batches_per_epoch:
            self._epoch, self._position = self._epoch + 1, 0
            self._order = self._permutation(self._epoch)
        start = self._position * self._batch_size
        indices = self._order[start : start + self._batch_size][self._local]
        self._position += 1
        return [self._examples[i] for i in indices]

    def state(self) -> dict[str, Any]:
        """JSON-able state: where the next batch starts, and what the iterator was made for."""
        return {
            "epoch": self._epoch,
            "position": self._position,
            "seed": self._seed,
            "batch_size": self._batch_size,
            "num_examples": len(self._examples),
            "examples_sha256": self._examples_sha256,
        }

    @classmethod
    def from_state(
        cls,
        examples: Sequence[Example],
        state: Mapping[str, Any],
        *,
        process_index: int = 0,
        process_count: int = 1,
    ) -> PromptIterator:
        """The iterator that continues exactly where the one that produced ``state`` was.

        Raises ``DataError`` naming the field when ``examples`` is not the list it was made for.
        """
        missing = [key for key in _STATE_KEYS if key not in state]
        if missing:
            raise DataError(f"PromptIterator state is missing {missing}; got keys {sorted(state)}")
        it = cls(
            examples,
            state["batch_size"],
            state["seed"],
            process_index=process_index,
            process_count=process_count,
        )
        for key in ("num_examples", "examples_sha256"):
            if it.state()[key] != state[key]:
                raise DataError(
                    f"PromptIterator state {key}={state[key]!r} does not match the examples "
                    f"given ({it.state()[key]!r}): resuming on different data"
                )
        epoch, position = state["epoch"], state["position"]
        if not (isinstance(epoch, int) and epoch >= 0):
            raise DataError(f"PromptIterator state epoch={epoch!r}: must be an integer >= 0")
        if not (isinstance(position, int) and 0 <= position <= it.batches_per_epoch):
            raise DataError(
                f"PromptIterator state position={position!r}: must be in "
                f"[0, {it.batches_per_epoch}]"
            )
        it._epoch, it._position, it._order = epoch, position, it._permutation(epoch)
        return it

    def _permutation(self, epoch: int) -> np.ndarray:
        return np.random.default_rng([self._seed, epoch]).permutation(len(self._examples))


def _fingerprint(examples: Sequence[Example]) -> str:
    """SHA-256 of the ids in order: resuming on a reordered or different list is caught."""
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.id.encode() + b"\0")
    return digest.hexdigest()
