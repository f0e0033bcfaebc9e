"""Grouped-query attention: the pure `attend` function, its masks, and the projection module.

`attend` works on explicit (q, k, v, mask) so other key/value layouts can reuse it: the full forward
passes the sequence's own k/v, decoding passes the KV cache, and a shared-prefix sampler can pass
one prompt's cache plus per-sample suffixes (or call it twice and merge with log-sum-exp). The full
forward (what training differentiates) goes through `attend_lean`: the same values, with a backward
pass that recomputes the probabilities block by block instead of keeping every layer's [B, H, T, S].

Letters: B batch, T query length, S key length, H query heads, K key/value heads, G = H/K query
heads per key/value head, Dh head width, D model width.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.config import ModelConfig
from models.layers import Dense
from models.rope import apply_rope, inverse_frequencies
from models.sharding import constrain

# Masked logits get the most negative fp32 rather than -inf: a row with no visible key (a pad query)
# then softmaxes to a uniform, finite distribution instead of NaN, and its output is ignored anyway.
_MASKED = float(np.finfo(np.float32).min)


def attend(
    q_BxTxHxDh: jax.Array, k_BxSxKxDh: jax.Array, v_BxSxKxDh: jax.Array, mask_BxTxS: jax.Array
) -> jax.Array:
    """softmax(q·kᵀ/√Dh masked)·v with K key/value heads shared by groups of H/K query heads.

    Logits and softmax are fp32 (`preferred_element_type`), probabilities are cast back to v's dtype
    for the second matmul, as transformers does. Returns [B, T, H, Dh] in v's dtype.
    """
    b, t, h, dh = q_BxTxHxDh.shape
    k_heads = k_BxSxKxDh.shape[2]
    q_BxTxKxGxDh = q_BxTxHxDh.reshape(b, t, k_heads, h // k_heads, dh)
    logits_BxKxGxTxS = jnp.einsum(
        "btkgd,bskd->bkgts", q_BxTxKxGxDh, k_BxSxKxDh, preferred_element_type=jnp.float32
    ) * (dh**-0.5)
    logits_BxKxGxTxS = jnp.where(mask_BxTxS[:, None, None], logits_BxKxGxTxS, _MASKED)
    probs_BxKxGxTxS = jax.nn.softmax(logits_BxKxGxTxS, axis=-1).astype(v_BxSxKxDh.dtype)
    out_BxTxKxGxDh = jnp.einsum("bkgts,bskd->btkgd", probs_BxKxGxTxS, v_BxSxKxDh)
    return out_BxTxKxGxDh.reshape(b, t, h, dh)


# Query rows per block of the backward pass of `attend_lean`.
BACKWARD_QUERY_BLOCK = 256


def _scaled_scores(q_BxTxKxGxDh, k_BxSxKxDh, mask_BxTxS):
    dh = q_BxTxKxGxDh.shape[-1]
    logits = jnp.einsum(
        "btkgd,bskd->bkgts", q_BxTxKxGxDh, k_BxSxKxDh, preferred_element_type=jnp.float32
    ) * (dh**-0.5)
    return jnp.where(mask_BxTxS[:, None, None], logits, _MASKED)


@jax.custom_vjp
def attend_lean(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, mask_BxTxS):
    """`attend` whose backward pass holds one block of query rows' probabilities at a time.

    Autodiff of `attend` keeps each layer's [B, H, T, S] fp32 probabilities (and, on XLA:CPU,
    several layout copies of them) from the forward to the backward pass: at 8 x 1024 tokens that
    is most of a training step's memory, and rematerialisation does not help on XLA:CPU, whose
    scheduler hoists the recomputation back next to the forward. Here the forward saves only q, k,
    v, the output and the softmax's row max and sum ([B, H, T]); the backward recomputes the
    probabilities in blocks of `BACKWARD_QUERY_BLOCK` query rows inside a loop that takes the
    output's cotangent as input, so no compiler can move the blocks before it, and at most one
    block's [B, H, block, S] arrays are live. Its values are `attend`'s, differentiated or not;
    its gradients equal autodiff's up to float rounding.
    """
    return attend(q_BxTxHxDh, k_BxSxKxDh, v_BxSxKxDh, mask_BxTxS)


def _attend_lean_fwd(q, k, v, mask):
    """`attend` itself (bit for bit) plus the softmax's row max and sum. Max and sum, not their
    log-sum-exp: a fully masked (pad) row has max = the fp32 minimum, where max + log(sum) rounds
    back to the minimum and loses the uniform 1/S."""
    b, t, h, dh = q.shape
    out = attend(q, k, v, mask)
    logits = _scaled_scores(q.reshape(b, t, k.shape[2], h // k.shape[2], dh), k, mask)
    row_max = jnp.max(logits, axis=-1, keepdims=True)
    row_sum = jnp.sum(jnp.exp(logits - row_max), axis=-1, keepdims=True)
    return out, (q, k, v, mask, out, row_max, row_sum)


def _attend_lean_bwd(residuals, g_BxTxHxDh):
    q, k, v, mask, out, row_max, row_sum = residuals
    b, t, h, dh = q.shape
    kh = k.shape[2]
    q5 = q.reshape(b, t, kh, h // kh, dh)
    out5 = out.reshape(q5.shape)
    g5 = g_BxTxHxDh.reshape(q5.shape)
    # sum_d dO * O per query row: the softmax backward's row term, [B, K, G, T].
    delta = jnp.einsum("btkgd,btkgd->bkgt", g5.astype(jnp.float32), out5.astype(jnp.float32))
    block = min(BACKWARD_QUERY_BLOCK, t)
    n_blocks = -(-t // block)
    pad = n_blocks * block - t
    if pad:
        # Padded query rows: zero cotangent and no visible key, so they add nothing to dk, dv.
        q5 = jnp.pad(q5, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
        g5 = jnp.pad(g5, ((0, 0), (0, pad), (0, 0), (0, 0), (0, 0)))
        mask = jnp.pad(mask, ((0, 0), (0, pad), (0, 0)))
        row_max = jnp.pad(row_max, ((0, 0),) * 3 + ((0, pad), (0, 0)))
        row_sum = jnp.pad(row_sum, ((0, 0),) * 3 + ((0, pad), (0, 0)), constant_values=1.0)
        delta = jnp.pad(delta, ((0, 0),) * 3 + ((0, pad),))

    def body(i, carry):
        dq, dk, dv = carry
        start = i * block
        rows = lambda x, axis: jax.lax.dynamic_slice_in_dim(x, start, block, axis)  # noqa: E731
        q_b, g_b = rows(q5, 1), rows(g5, 1)
        probs = jnp.exp(_scaled_scores(q_b, k, rows(mask, 1)) - rows(row_max, 3)) / rows(row_sum, 3)
        dv = dv + jnp.einsum(
            "bkgts,btkgd->bskd", probs.astype(v.dtype), g_b, preferred_element_type=jnp.float32
        )
        d_probs = jnp.einsum("btkgd,bskd->bkgts", g_b, v, preferred_element_type=jnp.float32)
        d_logits = probs * (d_probs - rows(delta, 3)[..., None])
        d_logits = jnp.where(rows(mask, 1)[:, None, None], d_logits, 0.0) * (dh**-0.5)
        d_logits = d_logits.astype(q.dtype)
        dq_b = jnp.einsum("bkgts,bskd->btkgd", d_logits, k, preferred_element_type=jnp.float32)
        dq = jax.lax.dynamic_update_slice_in_dim(dq, dq_b, start, axis=1)
        dk = dk + jnp.einsum("bkgts,btkgd->bskd", d_logits, q_b, preferred_element_type=jnp.float32)
        return dq, dk, dv

    zeros = lambda x: jnp.zeros(x.shape, jnp.float32)  # noqa: E731
    dq, dk, dv = jax.lax.fori_loop(0, n_blocks, body, (zeros(q5), zeros(k), zeros(v)))
    dq = dq[:, :t].reshape(q.shape)
    return dq.astype(q.dtype), dk.astype(k.dtype), dv.astype(v.dtype), None


attend_lean.defvjp(_attend_lean_fwd, _attend_lean_bwd)


def causal_mask(
    attention_mask_BxT: jax.Array | None,
    batch: int,
    length: int,
    segment_ids_BxT: jax.Array | None = None,
) -> jax.Array:
    """[B, T, T] bool: query t sees key s iff s <= t and s is a real (non-pad) token, and, for rows
    that pack several sequences (``segment_ids``: which sequence each token belongs to), only keys
    of its own sequence."""
    causal_TxT = jnp.tril(jnp.ones((length, length), dtype=jnp.bool_))
    mask = jnp.broadcast_to(causal_TxT, (batch, length, length))
    if attention_mask_BxT is not None:
        mask = mask & attention_mask_BxT.astype(jnp.bool_)[:, None, :]
    if segment_ids_BxT is not None:
        mask = mask & (segment_ids_BxT[:, :, None] == segment_ids_BxT[:, None, :])
    return mask


def cache_mask(valid_BxS: jax.Array, index: jax.Array, length: int) -> jax.Array:
    """[B, T, S] bool for T new tokens written at slots [index, index+T) of an S-slot cache.

    Slots are in time order, so causality is slot order: query t sees slot s iff s <= index + t and
    the slot holds a real token (`valid_BxS`, which already includes the new tokens' own mask).
    """
    slots_S = jnp.arange(valid_BxS.shape[1], dtype=jnp.int32)
    query_slots_T = index + jnp.arange(length, dtype=jnp.int32)
    causal_TxS = slots_S[None, :] <= query_slots_T[:, None]
    return causal_TxS[None] & valid_BxS[:, None, :]


class Attention(nnx.Module):
    """Projections + RoPE + `attend` + output projection; q/k/v bias per `config.attention_bias`."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, h, k, dh = config.hidden_size, config.num_heads, config.num_kv_heads, config.head_dim
        self.config = config
        kw = dict(config=config, rngs=rngs)
        self.q_proj = Dense(
            (d,),
            (h, dh),
            in_axes=("embed",),
            out_axes=("heads", "head_dim"),
            use_bias=config.attention_bias,
            **kw,
        )
        self.k_proj = Dense(
            (d,),
            (k, dh),
            in_axes=("embed",),
            out_axes=("kv_heads", "head_dim"),
            use_bias=config.attention_bias,
            **kw,
        )
        self.v_proj = Dense(
            (d,),
            (k, dh),
            in_axes=("embed",),
            out_axes=("kv_heads", "head_dim"),
            use_bias=config.attention_bias,
            **kw,
        )
        self.o_proj = Dense(
            (h, dh),
            (d,),
            in_axes=("heads", "head_dim"),
            out_axes=("embed",),
            use_bias=config.attention_out_bias,
            **kw,
        )

    def qkv(self, x_BxTxD: jax.Array, positions_BxT: jax.Array):
        """Rotated queries and keys, and values, of the T input tokens."""
        inv_freq = inverse_frequencies(self.config)
        q = apply_rope(self.q_proj(x_BxTxD), positions_BxT, inv_freq)
        k = apply_rope(self.k_proj(x_BxTxD), positions_BxT, inv_freq)
        v = self.v_proj(x_BxTxD)
        q = constrain(q, ("batch", "length", "act_heads", None))
        k = constrain(k, ("batch", "length", "act_kv_heads", None))
        v = constrain(v, ("batch", "length", "act_kv_heads", None))
        return q, k, v

    def __call__(
        self, x_BxTxD: jax.Array, positions_BxT: jax.Array, mask_BxTxT: jax.Array
    ) -> jax.Array:
        q, k, v = self.qkv(x_BxTxD, positions_BxT)
        return self.o_proj(attend_lean(q, k, v, mask_BxTxT))

    def decode(
        self,
        x_BxTxD: jax.Array,
        positions_BxT: jax.Array,
        mask_BxTxS: jax.Array,
        k_LxBxSxKxDh: jax.Array,
        v_LxBxSxKxDh: jax.Array,
        layer: int,
        index: jax.Array,
    ):
        """Writes this layer's new k/v at slots [index, index+T) of the stacked cache, attends over
        it.

        The update is a `dynamic_update_slice` into the whole [L, ...] buffer, so with the cache
        donated XLA writes in place and `index` may be traced (inside `lax.while_loop`).
        """
        q, k, v = self.qkv(x_BxTxD, positions_BxT)
        start = (layer, 0, index, 0, 0)
        k_LxBxSxKxDh = jax.lax.dynamic_update_slice(
            k_LxBxSxKxDh, k[None].astype(k_LxBxSxKxDh.dtype), start
        )
        v_LxBxSxKxDh = jax.lax.dynamic_update_slice(
            v_LxBxSxKxDh, v[None].astype(v_LxBxSxKxDh.dtype), start
        )
        out = attend(q, k_LxBxSxKxDh[layer], v_LxBxSxKxDh[layer], mask_BxTxS)
        return self.o_proj(out), k_LxBxSxKxDh, v_LxBxSxKxDh
