"""Rotary position embeddings (RoPE), HF's "rotate half" layout, with default/linear/llama3 scaling.

Positions are explicit `[B, T]` integers rather than implied by the slot index, because prompts are
left-padded: a row's first real token has position 0 wherever it sits (see `positions_from_mask`).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from models.config import ModelConfig


@functools.lru_cache(maxsize=32)
def inverse_frequencies(config: ModelConfig) -> np.ndarray:
    """inv_freq[Dh/2] in fp32, as transformers computes it for the config's rope type.

    Computed in float64 on the host and rounded once, so it matches torch's fp32 values to the last
    ulp or better; it becomes a compile-time constant.
    """
    dim = config.head_dim
    inv = 1.0 / (config.rope_theta ** (np.arange(0, dim, 2, dtype=np.float64) / dim))
    if config.rope_type == "linear":
        inv = inv / config.rope_factor
    elif config.rope_type == "llama3":
        # Llama 3.1: long wavelengths are slowed by `factor`, short ones kept, the band between them
        # interpolated smoothly.
        factor = config.rope_factor
        low, high = config.rope_low_freq_factor, config.rope_high_freq_factor
        old_len = config.rope_original_max_position
        low_freq_wavelen, high_freq_wavelen = old_len / low, old_len / high
        inv = inv.astype(np.float32).astype(np.float64)  # HF rounds to fp32 before scaling.
        wavelen = 2 * math.pi / inv
        scaled = np.where(wavelen > low_freq_wavelen, inv / factor, inv)
        smooth = (old_len / wavelen - low) / (high - low)
        smoothed = (1 - smooth) * scaled / factor + smooth * scaled
        medium = (wavelen >= high_freq_wavelen) & (wavelen <= low_freq_wavelen)
        inv = np.where(medium, smoothed, scaled)
    return inv.astype(np.float32)


def apply_rope(x_BxTxHxDh: jax.Array, positions_BxT: jax.Array, inv_freq: np.ndarray) -> jax.Array:
    """Rotates feature pairs (i, i + Dh/2) by angle position · inv_freq[i]; keeps x's dtype.

    Angles, cos and sin are computed in fp32 and cast to x's dtype before the products, as
    transformers does, so bf16 runs round the same way.
    """
    freqs_BxTxF = positions_BxT[..., None].astype(jnp.float32) * jnp.asarray(inv_freq)
    emb_BxTxDh = jnp.concatenate([freqs_BxTxF, freqs_BxTxF], axis=-1)
    cos = jnp.cos(emb_BxTxDh).astype(x_BxTxHxDh.dtype)[:, :, None, :]
    sin = jnp.sin(emb_BxTxDh).astype(x_BxTxHxDh.dtype)[:, :, None, :]
    x1, x2 = jnp.split(x_BxTxHxDh, 2, axis=-1)
    rotated = jnp.concatenate([-x2, x1], axis=-1)
    return x_BxTxHxDh * cos + rotated * sin


def positions_from_mask(attention_mask_BxT: jax.Array) -> jax.Array:
    """Position ids for left-padded rows: cumsum(mask) - 1, clipped at 0 (pads get 0)."""
    mask = attention_mask_BxT.astype(jnp.int32)
    return jnp.maximum(jnp.cumsum(mask, axis=-1) - 1, 0)
