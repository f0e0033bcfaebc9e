"""PRIME's prompt filter: which prompts of the sampled ones an iteration trains on.

Why: a prompt whose N samples are all right (or all wrong) gives the group estimators no signal and
the online implicit PRM labels of one class only; PRIME (Cui et al. 2025, arXiv 2502.01456) trains
only on prompts whose sampled accuracy lies in a band, [0.2, 0.8] in its runs. A prompt is in the
band when ``low <= k / N <= high`` (k of its N samples correct; bounds included), as in
PRIME-RL/PRIME ``training/verl/trainer/ppo/ray_trainer.py`` (``RayPRIMETrainer.filter``:
``acc >= accuracy_lower_bound & acc <= accuracy_upper_bound``) and verl's recipe
``recipe/prime/prime_ray_trainer.py`` (``filter_and_downsample`` drops ``acc > upper | acc <
lower``).

Filling the batch. The trainer samples batches of prompts, up to ``data.filter_rounds`` of them per
iteration, until ``needed`` in-band prompts are found (PRIME-RL's loop: sample, filter, repeat until
the batch is full; verl's recipe samples ``oversample_factor`` = 4 batches at once and keeps the
in-band ones first). When the rounds run out short, the batch is filled with out-of-band prompts,
nearest the band first (verl's recipe fills too, in no particular order; PRIME-RL samples on until
the epoch ends): every iteration trains on a full batch of the compiled shape, and the shortfall is
logged (``filter/out_of_band``). In-band prompts beyond ``needed`` are dropped with their samples.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np


def prompt_accuracy(correct_rows: np.ndarray, samples_per_prompt: int) -> np.ndarray:
    """``[P]``: the fraction of each prompt's samples judged correct (rows ``p*N .. p*N+N-1``
    belong to prompt p), computed as ``count / N`` so that it equals a band bound written as the
    same fraction (0.25, 0.2, ...)."""
    correct = np.asarray(correct_rows, np.float64).reshape(-1, samples_per_prompt)
    return correct.sum(axis=1) / samples_per_prompt


def in_band(accuracy_P: np.ndarray, band: Sequence[float]) -> np.ndarray:
    """``[P]`` bool: ``low <= accuracy <= high``."""
    low, high = band
    accuracy_P = np.asarray(accuracy_P, np.float64)
    return (accuracy_P >= low) & (accuracy_P <= high)


def select(accuracy_P: np.ndarray, band: Sequence[float], needed: int) -> np.ndarray:
    """Indices of the ``needed`` prompts to train on, in the order sampled: the first ``needed``
    in-band prompts; if there are fewer, all of them plus the out-of-band prompts nearest the band
    (ties: the earlier sampled)."""
    accuracy_P = np.asarray(accuracy_P, np.float64)
    if needed > len(accuracy_P):
        raise ValueError(f"select: needed={needed} prompts, only {len(accuracy_P)} sampled")
    low, high = band
    distance = np.maximum(low - accuracy_P, 0.0) + np.maximum(accuracy_P - high, 0.0)
    order = np.argsort(distance, kind="stable")  # in-band (distance 0) first, in sampled order
    return np.sort(order[:needed])
