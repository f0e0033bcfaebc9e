"""The functional KV cache used by `CausalLM.decode` (prefill and token-by-token sampling).

A pytree of fixed shapes, so a sampler can carry it through `lax.while_loop` and donate it to `jit`:
  k, v   [L, B, S, K, Dh]  rotated keys and values, compute dtype;
  mask   [B, S] bool       True where a slot holds a real token (False for pads and unwritten
  slots); index  int32 scalar      next slot to write; all rows share it because prompts are
  left-padded so
                           that their ends align.
"""

from __future__ import annotations

import dataclasses
from typing import ClassVar

import jax
import jax.numpy as jnp

from models.config import ModelConfig
from models.sharding import Rules, array_sharding


@jax.tree_util.register_dataclass
@dataclasses.dataclass(frozen=True)
class KVCache:
    k: jax.Array
    v: jax.Array
    mask: jax.Array
    index: jax.Array

    # Logical axes for `models.sharding.array_sharding`: batch is sharded like the activations.
    KV_AXES: ClassVar[tuple[str | None, ...]] = (
        "layers",
        "batch",
        "cache_length",
        "kv_heads",
        None,
    )
    MASK_AXES: ClassVar[tuple[str | None, ...]] = ("batch", "cache_length")

    @property
    def max_length(self) -> int:
        return self.k.shape[2]

    def replace(self, **changes) -> KVCache:
        return dataclasses.replace(self, **changes)


def init_cache(
    config: ModelConfig, batch: int, max_length: int, dtype: jnp.dtype | None = None
) -> KVCache:
    """An empty cache of `max_length` slots per row, in the compute dtype unless `dtype` is given.

    Writes past `max_length` are clamped by `dynamic_update_slice` (they overwrite the last slots),
    so size it for prompt + generation.
    """
    dtype = config.dtype if dtype is None else dtype
    shape = (config.num_layers, batch, max_length, config.num_kv_heads, config.head_dim)
    return KVCache(
        k=jnp.zeros(shape, dtype),
        v=jnp.zeros(shape, dtype),
        mask=jnp.zeros((batch, max_length), jnp.bool_),
        index=jnp.zeros((), jnp.int32),
    )


def cache_shardings(cache: KVCache, mesh: jax.sharding.Mesh, rules: Rules) -> KVCache:
    """NamedShardings for a cache (or an abstract one from `jax.eval_shape(init_cache, ...)`)."""
    return KVCache(
        k=array_sharding(KVCache.KV_AXES, cache.k.shape, mesh, rules),
        v=array_sharding(KVCache.KV_AXES, cache.v.shape, mesh, rules),
        mask=array_sharding(KVCache.MASK_AXES, cache.mask.shape, mesh, rules),
        index=array_sharding((), (), mesh, rules),
    )
