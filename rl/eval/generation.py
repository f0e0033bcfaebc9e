"""Generating an evaluation's responses: every prompt through the one sampler PPO uses, in batches
of exactly ``batch_size`` prompts, so one compiled program serves every call. The last batch is
padded with repeats of its last prompt, whose responses are dropped.

Letters: E prompts, N responses per prompt, M = E·N response rows, P prompt length, R max new
tokens.
"""

from __future__ import annotations

import dataclasses
import sys
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from rl.rollout.sampler import Sampler
from rl.rollout.tokenizer import cut_at_stop


@dataclasses.dataclass
class Generations:
    """Host arrays of E prompts × N responses; rows e·N .. e·N+N-1 belong to prompt e."""

    tokens: np.ndarray  # [M, R] int32
    response_mask: np.ndarray  # [M, R] bool
    logp: np.ndarray  # [M, R] fp32: the model's untempered log-probs of the sampled tokens
    lengths: np.ndarray  # [M]
    finish_reason: np.ndarray  # [M], FinishReason
    texts: list[str]
    samples_per_prompt: int


def _progress(total: int, desc: str, enabled: bool) -> tqdm:
    """A progress bar over prompts on stderr (stdout carries the CLI's table); inert when not
    `enabled`."""
    return tqdm(
        total=total,
        desc=desc,
        unit="prompt",
        file=sys.stderr,
        disable=not enabled,
        dynamic_ncols=True,
    )


def generate(
    sampler: Sampler,
    params: Any,
    prompt_ids_ExP: np.ndarray,
    prompt_mask_ExP: np.ndarray,
    tokenizer: Any,
    *,
    batch_size: int,
    key: jax.Array,
    progress: bool = False,
    desc: str = "generate",
) -> Generations:
    """All E prompts through `sampler` in batches of exactly `batch_size` (one compiled program)."""
    e = prompt_ids_ExP.shape[0]
    n = sampler.config.samples_per_prompt
    parts = []
    with _progress(e, desc, progress) as bar:
        for i, start in enumerate(range(0, e, batch_size)):
            idx = np.minimum(np.arange(start, start + batch_size), e - 1)
            out = sampler(
                params, prompt_ids_ExP[idx], prompt_mask_ExP[idx], jax.random.fold_in(key, i)
            )
            real = min(batch_size, e - start) * n
            host = jax.device_get(
                (out.tokens, out.response_mask, out.logp, out.lengths, out.finish_reason)
            )
            parts.append(tuple(np.asarray(x)[:real] for x in host))
            bar.update(real // n)
    tokens, mask, logp, lengths, finish = (np.concatenate(x) for x in zip(*parts, strict=True))
    mask = mask.astype(bool)
    texts = tokenizer.batch_decode(
        [row[m] for row, m in zip(tokens, mask, strict=True)], skip_special_tokens=True
    )
    stops = sampler.config.stop_strings
    texts = [cut_at_stop(t, stops) for t in texts] if stops else list(texts)
    return Generations(tokens, mask, logp, lengths, finish, texts, n)
