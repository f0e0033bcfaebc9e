"""The Qwen2/Llama decoder (`Decoder`, the backbone every head shares) and `CausalLM`.

Two entry points with the same numerics:
  * `__call__` — full sequences (training, scoring, reference log-probs): causal + padding mask,
    position ids from the mask so left padding does not shift positions;
  * `decode` — against a `KVCache` (prefill = decode of the whole padded prompt; then one or more
    tokens per step), pure and jit-able with a traced cache index.

Letters: B batch, T new tokens, S cache slots, D model width, V vocabulary, L layers.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models.attention import Attention, cache_mask, causal_mask
from models.config import ModelConfig
from models.kv_cache import KVCache, cache_shardings, init_cache  # noqa: F401  (re-exported API)
from models.layers import MLP, Embed, LMHead, RMSNorm, project_to_vocab
from models.rope import positions_from_mask
from models.sharding import constrain

_ACT = ("batch", "length", "act_embed")


class DecoderLayer(nnx.Module):
    """Pre-norm block: x + attn(norm(x)), then h + mlp(norm(h))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.input_layernorm = RMSNorm(config, rngs=rngs)
        self.self_attn = Attention(config, rngs=rngs)
        self.post_attention_layernorm = RMSNorm(config, rngs=rngs)
        self.mlp = MLP(config, rngs=rngs)

    def __call__(
        self, x_BxTxD: jax.Array, positions_BxT: jax.Array, mask_BxTxT: jax.Array
    ) -> jax.Array:
        h = x_BxTxD + self.self_attn(self.input_layernorm(x_BxTxD), positions_BxT, mask_BxTxT)
        out = h + self.mlp(self.post_attention_layernorm(h))
        return constrain(out, _ACT)

    def decode(self, x_BxTxD, positions_BxT, mask_BxTxS, k_cache, v_cache, layer: int, index):
        attn, k_cache, v_cache = self.self_attn.decode(
            self.input_layernorm(x_BxTxD), positions_BxT, mask_BxTxS, k_cache, v_cache, layer, index
        )
        h = x_BxTxD + attn
        out = h + self.mlp(self.post_attention_layernorm(h))
        return constrain(out, _ACT), k_cache, v_cache


def _layer_forward(layer: DecoderLayer, x, positions, mask):
    return layer(x, positions, mask)


class Decoder(nnx.Module):
    """Embedding, decoder layers and the final norm: returns final-normed hidden states [B, T, D].

    Layers are a Python list (unrolled): parameter names then match HF's `model.layers.{i}` one to
    one and the KV cache indexes layers statically. `config.remat` wraps each layer in `nnx.remat`.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.embed_tokens = Embed(config, rngs=rngs)
        self.layers = nnx.List([DecoderLayer(config, rngs=rngs) for _ in range(config.num_layers)])
        self.norm = RMSNorm(config, rngs=rngs)

    def __call__(
        self,
        input_ids_BxT: jax.Array,
        attention_mask_BxT: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
        segment_ids_BxT: jax.Array | None = None,
    ) -> jax.Array:
        """Final-normed hidden states. ``segment_ids_BxT``: rows packing several sequences, each
        attending only within its own (pass each one's ``positions_BxT`` too)."""
        b, t = input_ids_BxT.shape
        if positions_BxT is None:
            positions_BxT = (
                jnp.broadcast_to(jnp.arange(t, dtype=jnp.int32), (b, t))
                if attention_mask_BxT is None
                else positions_from_mask(attention_mask_BxT)
            )
        mask_BxTxT = causal_mask(attention_mask_BxT, b, t, segment_ids_BxT)
        x = constrain(self.embed_tokens(input_ids_BxT), _ACT)
        layer_fn = _layer_forward
        if self.config.remat:
            policy = getattr(jax.checkpoint_policies, self.config.remat_policy)
            layer_fn = nnx.remat(_layer_forward, policy=policy, prevent_cse=True)
        for layer in self.layers:
            x = layer_fn(layer, x, positions_BxT, mask_BxTxT)
        return self.norm(x)

    def decode(
        self,
        input_ids_BxT: jax.Array,
        positions_BxT: jax.Array | None,
        cache: KVCache,
        attention_mask_BxT: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """Hidden states of T new tokens written at cache slots [index, index+T), and the new cache.

        `positions_BxT=None` continues each row's positions from the number of real tokens it
        already has in the cache (equal to `positions_from_mask` for a prefill).
        """
        b, t = input_ids_BxT.shape
        new_BxT = (
            jnp.ones((b, t), jnp.bool_)
            if attention_mask_BxT is None
            else attention_mask_BxT.astype(jnp.bool_)
        )
        if positions_BxT is None:
            seen_B = jnp.sum(cache.mask, axis=-1, dtype=jnp.int32)
            positions_BxT = jnp.maximum(
                seen_B[:, None] + jnp.cumsum(new_BxT.astype(jnp.int32), axis=-1) - 1, 0
            )
        valid_BxS = jax.lax.dynamic_update_slice(cache.mask, new_BxT, (0, cache.index))
        mask_BxTxS = cache_mask(valid_BxS, cache.index, t)
        x = constrain(self.embed_tokens(input_ids_BxT), _ACT)
        k, v = cache.k, cache.v
        for i, layer in enumerate(self.layers):
            x, k, v = layer.decode(x, positions_BxT, mask_BxTxS, k, v, i, cache.index)
        new_cache = KVCache(k=k, v=v, mask=valid_BxS, index=cache.index + t)
        return self.norm(x), new_cache


class CausalLM(nnx.Module):
    """Decoder + language-model head (tied to the embedding or untied); logits are fp32.

    The policy and the frozen reference are both this class.
    """

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.config = config
        self.backbone = Decoder(config, rngs=rngs)
        self.lm_head = None if config.tie_word_embeddings else LMHead(config, rngs=rngs)

    def hidden(
        self,
        input_ids_BxT: jax.Array,
        attention_mask_BxT: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
        segment_ids_BxT: jax.Array | None = None,
    ) -> jax.Array:
        """Final-normed hidden states [B, T, D] (compute dtype), the input of any head."""
        return self.backbone(input_ids_BxT, attention_mask_BxT, positions_BxT, segment_ids_BxT)

    def logits_from_hidden(self, hidden_BxTxD: jax.Array) -> jax.Array:
        if self.lm_head is None:
            return project_to_vocab(hidden_BxTxD, self.backbone.embed_tokens.embedding[...])
        return self.lm_head(hidden_BxTxD)

    def output_embedding(self) -> jax.Array:
        """The [V, D] matrix whose rows score tokens (tied: the input embedding)."""
        if self.lm_head is None:
            return self.backbone.embed_tokens.embedding[...]
        return self.lm_head.embedding[...]

    def __call__(
        self,
        input_ids_BxT: jax.Array,
        attention_mask_BxT: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
        segment_ids_BxT: jax.Array | None = None,
    ) -> jax.Array:
        """logits_BxTxV (fp32) of every position; pads get garbage that callers mask."""
        return self.logits_from_hidden(
            self.hidden(input_ids_BxT, attention_mask_BxT, positions_BxT, segment_ids_BxT)
        )

    def decode(
        self,
        input_ids_BxT: jax.Array,
        positions_BxT: jax.Array | None,
        cache: KVCache,
        attention_mask_BxT: jax.Array | None = None,
    ) -> tuple[jax.Array, KVCache]:
        """(logits_BxTxV, new_cache) for T new tokens; see `Decoder.decode`."""
        hidden, cache = self.backbone.decode(
            input_ids_BxT, positions_BxT, cache, attention_mask_BxT
        )
        return self.logits_from_hidden(hidden), cache
