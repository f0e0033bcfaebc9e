"""Scoring responses with a published PRM in its own token space, on the run's mesh.

A published PRM (Qwen2.5-Math-PRM, Math-Shepherd, RLHFlow, Skywork's value head: ``models.prm``)
was trained on inputs its authors build from (question, steps) with their tokenizer, template and
step tag; its scores exist only at its tag positions. So the rollout's responses are not scored in
the policy's tokens: on the host, each response's complete steps (``rewards.steps.steps_and_ends``)
are rebuilt into the PRM's input, tokenized with the PRM's tokenizer and padded into one fixed
bucket (``[rows, max_input_len]`` tokens, ``max_steps`` read positions), the jitted PRM forward
scores the bucket on the mesh, and score k is placed on the policy's k-th step end
(``rewards.steps.place_step_scores``). The bucket is fixed for the run, so this compiles once.

Every host builds the same inputs from the same (global) rollout, as the trainer's other host-side
work does, so multi-host runs need nothing more.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import numpy as np

from models import prm as prm_lib
from models import reward_io
from models.sharding import use_mesh
from rewards import steps as steps_lib
from rl.config import ConfigError, ModelSpec
from rl.runtime.distributed import to_global, to_host

# Derived bucket: prompt + response tokens plus the template's fixed part and a tag (or a chat
# turn's markers) per step; rounded up so nearby configs share compiled shapes.
TEMPLATE_TOKENS = 96
TOKENS_PER_STEP = 4
ROUND_TO = 128


def derived_bucket(spec: ModelSpec, max_prompt_len: int, max_new_tokens: int) -> tuple[int, int]:
    """``(max_input_len, max_steps)`` of a PRM section: its own values, else derived from the run
    (one step per 8 response tokens at most, never fewer than 16). Steps past either bound go
    unscored and are counted (``reward/prm_unscored_steps``)."""
    steps = spec.max_steps or max(16, max_new_tokens // 8)
    length = spec.max_input_len or (
        ROUND_TO
        * math.ceil(
            (max_prompt_len + max_new_tokens + TEMPLATE_TOKENS + TOKENS_PER_STEP * steps) / ROUND_TO
        )
    )
    return length, steps


def load_published_prm(spec: ModelSpec, mesh, rules) -> prm_lib.ProcessRewardModel:
    """The PRM of ``spec`` (format given or detected), sharded on ``mesh``; a format/checkpoint
    mismatch is a ConfigError naming ``config.prm.format``. (A random preset carries a published
    format's shapes for ``launch.aot`` only: training needs the checkpoint.)"""
    if not spec.path:
        raise ConfigError(
            f"config.{spec.name}.path='': format {spec.format!r} scores with a published "
            f"checkpoint; set {spec.name}.path (preset {spec.preset!r} has no weights or tokenizer)"
        )
    try:
        return prm_lib.load_prm(
            spec.path,
            spec.format or None,
            dtype=jax.numpy.dtype(spec.dtype),
            mesh=mesh,
            rules=rules,
            key=spec.name,
        )
    except prm_lib.PRMFormatError as e:
        raise ConfigError(str(e)) from None


class PublishedPRMScorer:
    """``scorer(questions, steps, step_end_BxR) -> (prm_BxR, metrics)`` for one rollout batch."""

    def __init__(
        self,
        prm: prm_lib.ProcessRewardModel,
        *,
        max_input_len: int,
        max_steps: int,
        mesh,
        rules,
        batch_sharding,
    ):
        self.prm = prm
        # Sliding-window attention is not implemented (models.prm refuses longer inputs), so the
        # bucket never exceeds the window: what does not fit is cut and its steps go unscored.
        if prm.window is not None:
            max_input_len = min(max_input_len, prm.window)
        self.max_input_len, self.max_steps = max_input_len, max_steps
        self.mesh, self.rules, self.batch_sharding = mesh, rules, batch_sharding
        self.params = prm.params
        self.score_fn = jax.jit(prm.score_fn())

    def __call__(
        self,
        questions: Sequence[str],
        steps: Sequence[Sequence[str]],
        step_end_BxR: np.ndarray,
    ) -> tuple[np.ndarray, dict[str, Any]]:
        enc = self.prm.encode(
            list(questions),
            [list(s) for s in steps],
            max_len=self.max_input_len,
            max_steps=self.max_steps,
        )
        put = lambda x: to_global(np.asarray(x), self.batch_sharding)  # noqa: E731
        with use_mesh(self.mesh, self.rules):
            scores_BxK = to_host(
                self.score_fn(
                    self.params, put(enc.ids_BxL), put(enc.mask_BxL), put(enc.positions_BxK)
                )
            )
        scores_BxK = np.asarray(scores_BxK, np.float32)
        prm_BxR = steps_lib.place_step_scores(scores_BxK, enc.valid_BxK, step_end_BxR)
        n_steps = np.asarray([len(s) for s in steps])
        scored = np.asarray(enc.valid_BxK, bool).sum(axis=1)
        metrics = {
            # Steps the bucket could not hold (their step end gets no PRM reward): raise
            # prm.max_input_len / prm.max_steps if this is not 0.
            "reward/prm_unscored_steps": float(np.sum(np.maximum(n_steps - scored, 0))),
        }
        return prm_BxR, metrics


def uses_published_format(spec: ModelSpec) -> bool:
    """Whether the PRM of ``spec`` is scored in its own token space: its format says so, or (format
    "") its checkpoint is recognisably a published PRM. The project's reward models
    (``reward_model.json``) and random presets are "own"; so is an HF checkpoint whose format
    cannot be told from its files (the reward head then reads the policy's tokens, as configured
    by ``kind``)."""
    if spec.format:
        return spec.published_format
    if not spec.path or (Path(spec.path) / reward_io.META_FILE).exists():
        return False
    return prm_lib.detect_format(spec.path) not in (None, "own")
