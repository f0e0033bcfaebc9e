"""Response widths for scoring and the update: the batch's longest response, rounded up to a bucket.

A rollout's response arrays are ``[B, R]`` with R = ``rollout.max_new_tokens``, but everything after
the batch's longest response is padding: masked in every loss and reward, and never attended to by
the real tokens before it (causal attention). Scoring, shaping + GAE and the update therefore give
the same values on ``[:, :W]`` for any W at least that long, for a fraction of the work (on the toy
task responses average 47 of 112 tokens). Each distinct W is one more compiled program per phase,
so W is taken from a small fixed set of widths: a run compiles each phase at most ``len(widths)``
times and then never again.

Host-side numpy: the trainer slices its arrays before they enter the device programs.
"""

from __future__ import annotations

import math

import numpy as np

DEFAULT_COUNT = 4
DEFAULT_MULTIPLE = 8


def width_buckets(
    max_width: int, count: int = DEFAULT_COUNT, multiple: int = DEFAULT_MULTIPLE
) -> tuple[int, ...]:
    """``count`` widths evenly spaced up to ``max_width`` (the last), each rounded up to a multiple
    of ``multiple`` (at most ``max_width``); duplicates merged. Evenly spaced bounds the padding
    computed to ``max_width / count`` columns; 4 buckets: at most 4 compiles per phase."""
    if max_width < 1 or count < 1 or multiple < 1:
        raise ValueError(
            f"width_buckets(max_width={max_width}, count={count}, multiple={multiple}): each must "
            "be >= 1"
        )
    step = min(multiple, max_width)
    widths = {
        min(max_width, step * math.ceil(math.ceil(k * max_width / count) / step))
        for k in range(1, count + 1)
    }
    return tuple(sorted(widths))


def bucket_width(response_BxR: np.ndarray, widths: tuple[int, ...]) -> int:
    """The smallest of ``widths`` that holds every row's response (``response_BxR``: the response
    mask, real tokens first); the largest width must be the arrays' own width R."""
    response_BxR = np.asarray(response_BxR, bool)
    if not widths or widths[-1] != response_BxR.shape[1]:
        raise ValueError(
            f"widths={widths} must end at the response arrays' width {response_BxR.shape[1]}"
        )
    real = np.flatnonzero(response_BxR.any(axis=0))
    longest = int(real[-1]) + 1 if real.size else 0
    return next(w for w in widths if w >= longest)


def trim(width: int, *arrays_BxR: np.ndarray) -> tuple[np.ndarray, ...]:
    """Each ``[B, R, ...]`` array cut to its first ``width`` columns."""
    return tuple(np.asarray(a)[:, :width] for a in arrays_BxR)


def trim_to_bucket(
    tokens_BxR: np.ndarray, response_BxR: np.ndarray, max_width: int, count: int = DEFAULT_COUNT
) -> tuple[np.ndarray, np.ndarray]:
    """A rollout's response tokens and mask cut to the bucket of its longest response, among
    ``width_buckets(max_width, count)`` (the trainer's one call)."""
    response_BxR = np.asarray(response_BxR, bool)
    width = bucket_width(response_BxR, width_buckets(max_width, count))
    return trim(width, tokens_BxR, response_BxR)
