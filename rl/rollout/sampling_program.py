"""The sampling program: prefill and the whole decode loop, traced into ONE jitted function by
`rl.rollout.sampler.Sampler`, N samples per prompt.

Shape of the program (one `jax.jit`, compiled once per (B, P) and cached):
  1. **prefill**: the model's own `backbone.decode` over the left-padded prompts into a P-slot cache
     of B rows (the "prefix"); the LM head runs on the last position only.
  2. **decode**: `lax.while_loop` over new tokens for B·N rows, exiting as soon as every row is
     done. Row b·N+n attends to (a) the prefix cache row b, never repeated N times (one relayout for
     the loop, made before it), and (b) its own per-sample cache of R-1 slots; one softmax over the
     concatenated scores. The step is assembled from the model's own submodules (norms, `qkv` with
     RoPE, `o_proj`, MLP, head), so its numerics are the model's; only the attention over the two
     caches is written here (the math of `models.attention.attend`). Caches have fixed sizes, are
     created inside the program and updated in place (`dynamic_update_slice` on the loop carry):
     they never cross the jit boundary, so there is nothing to donate, and no step copies them.
  3. **selection** (`rl.rollout.token_selection`): greedy / temperature / top-k / top-p, never
     sorting the vocab.

Outputs (`SampleOutput`), all [B·N, ...] sharded over the batch axes:
  * tokens [R]: response tokens, `pad_id` after the row stopped;
  * logp [R]: log softmax of the model's logits (temperature 1, no top-k/top-p) at the sampled
    token: the behaviour log-probs PPO's ratio uses; 0 after the row stopped;
  * sample_logp [R]: log-prob under the distribution actually sampled from (tempered, filtered,
    renormalised); 0 for greedy and after the stop;
  * response_mask [R]: True for generated tokens, the EOS / stop-completing token included;
  * lengths: number of response tokens; finish_reason: `FinishReason` (EOS, STOP, LENGTH);
  * steps: token positions the loop ran: max_new_tokens, or fewer when every row stopped earlier
    (the loop exits as soon as all rows are done; then steps == max(lengths)).

Stopping, per row: a token in `eos_ids`; or a stop string (one gather per row per step in the
transition table of `rl.rollout.stop_strings.stop_table`); or `max_new_tokens`. The row stops at
the token that completes the stop string, that token included; EOS wins when one token does both.

Randomness: step t draws one uniform per row from `fold_in(key, t)`, so a fixed key reproduces the
samples exactly, and row r's sample does not depend on how the batch is sharded (threefry keys are
partitionable) or, for the same rows, on whether prompts were shared (N > 1) or repeated (N = 1).

Letters: B prompts, N samples per prompt, P prompt length, R max new tokens, S = R-1 decode slots,
L layers, K kv heads, G query heads per kv head, Dh head width, D width, V vocabulary.
"""

from __future__ import annotations

import enum
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from models.decoder import CausalLM, init_cache
from models.kv_cache import KVCache
from models.layers import project_to_vocab
from models.sharding import constrain
from rl.rollout import token_selection as sampling
from rl.rollout.sampler_config import SamplerConfig

# As in `models.attention`: masked scores get the most negative fp32 (a fully masked row stays
# finite).
_MASKED = float(np.finfo(np.float32).min)
_ACT = ("batch", "length", "act_embed")
# Decode-time cache layouts (see `attend_shared`): keys [rows, K, Dh, slots], values
# [rows, K, slots, Dh].
_KT_AXES = ("batch", "kv_heads", None, "cache_length")
_V_AXES = ("batch", "kv_heads", "cache_length", None)


class FinishReason(enum.IntEnum):
    LENGTH = 0
    EOS = 1
    STOP = 2


class SampleOutput(NamedTuple):
    tokens: jax.Array  # [B·N, R] int32
    logp: jax.Array  # [B·N, R] fp32, the model's untempered log-probs
    sample_logp: jax.Array  # [B·N, R] fp32, under the sampling distribution
    response_mask: jax.Array  # [B·N, R] bool
    lengths: jax.Array  # [B·N] int32
    finish_reason: jax.Array  # [B·N] int32, FinishReason
    steps: jax.Array  # int32 scalar


class Prefix(NamedTuple):
    """The prompts' prefilled state: B rows, shared by their N samples."""

    cache: KVCache  # k, v [L, B, P, K, Dh]; mask [B, P]
    positions_B: jax.Array  # position of the first new token (= real prompt tokens)
    logits_BxV: jax.Array  # fp32 logits after the last prompt token


class _Carry(NamedTuple):
    t: jax.Array  # index of the token selected next
    last_BN: jax.Array  # token selected at t-1, fed at step t
    k_dec: tuple[jax.Array, ...]  # per layer [B·N, K, Dh, S] (transposed keys)
    v_dec: tuple[jax.Array, ...]  # per layer [B·N, K, S, Dh]
    done_BN: jax.Array
    stop_state_BN: jax.Array
    lengths_BN: jax.Array
    finish_BN: jax.Array
    tokens_BNxR: jax.Array
    logp_BNxR: jax.Array
    sample_logp_BNxR: jax.Array


def head_logits(model: CausalLM, hidden_BxTxD: jax.Array, head_VxD: jax.Array | None):
    """fp32 logits of normed hidden states: the model's own head, or ``head_VxD`` (its output
    matrix in another dtype, made once by the caller; operands in that dtype, fp32 accumulation)."""
    if head_VxD is None:
        return model.logits_from_hidden(hidden_BxTxD)
    return project_to_vocab(hidden_BxTxD.astype(head_VxD.dtype), head_VxD)


def head_matrix(model: CausalLM, head_dtype: str) -> jax.Array | None:
    """The LM head's [V, D] matrix cast to ``head_dtype`` ("" or the compute dtype: None, the
    model's own head)."""
    if not head_dtype or jnp.dtype(head_dtype) == jnp.dtype(model.config.dtype):
        return None
    return model.output_embedding().astype(jnp.dtype(head_dtype))


def prefill(
    model: CausalLM,
    prompt_ids_BxP: jax.Array,
    prompt_mask_BxP: jax.Array,
    head_dtype: str = "",
) -> Prefix:
    """The model's cached forward over left-padded prompts; the head only at the last position."""
    b, p = prompt_ids_BxP.shape
    cache = init_cache(model.config, b, p)
    cache = cache.replace(
        k=constrain(cache.k, KVCache.KV_AXES),
        v=constrain(cache.v, KVCache.KV_AXES),
        mask=constrain(cache.mask, KVCache.MASK_AXES),
    )
    hidden_BxPxD, cache = model.backbone.decode(prompt_ids_BxP, None, cache, prompt_mask_BxP)
    logits_BxV = head_logits(model, hidden_BxPxD[:, -1:], head_matrix(model, head_dtype))[:, 0]
    positions_B = jnp.sum(prompt_mask_BxP.astype(jnp.int32), axis=-1)
    return Prefix(cache, positions_B, logits_BxV)


def attend_shared(
    q_BNxHxDh,
    kt_pre_BxKxDhxP,
    v_pre_BxKxPxDh,
    pre_valid_BxP,
    kt_dec_BNxKxDhxS,
    v_dec_BNxKxSxDh,
    dec_valid_S,
) -> jax.Array:
    """One query token per row over its prompt's shared prefix and its own decode slots.

    Same math as `models.attention.attend` (fp32 scores scaled after the product, masked with the
    most negative float, fp32 softmax over the concatenation [prefix | own slots], probabilities
    cast to v's dtype). The N samples of prompt b are batched against its single prefix copy: no
    repeat.

    Layouts are chosen for the batched matmuls, not copied into them every step: keys are stored
    transposed ([.., Dh, S]) so both products contract the lhs's last dim with the rhs's
    second-last; XLA:CPU otherwise transposes the whole cache on every step (2-3x slower attention).
    """
    b, kh, dh, p = kt_pre_BxKxDhxP.shape
    bn, h, _ = q_BNxHxDh.shape
    n, g = bn // b, h // kh
    scale = dh**-0.5

    def by_prompt(x_BNxKxGxX):  # [B·N, K, G, X] -> [B, K, N·G, X]
        x = x_BNxKxGxX.reshape(b, n, kh, g, -1).transpose(0, 2, 1, 3, 4)
        return x.reshape(b, kh, n * g, x.shape[-1])

    def by_row(x_BxKxNGxX):  # inverse of by_prompt
        x = x_BxKxNGxX.reshape(b, kh, n, g, -1).transpose(0, 2, 1, 3, 4)
        return x.reshape(bn, kh, g, x.shape[-1])

    q_BNxKxGxDh = q_BNxHxDh.reshape(bn, kh, g, dh)
    pre = (
        jnp.einsum(
            "bkqd,bkdp->bkqp",
            by_prompt(q_BNxKxGxDh),
            kt_pre_BxKxDhxP,
            preferred_element_type=jnp.float32,
        )
        * scale
    )
    pre_BNxKxGxP = by_row(jnp.where(pre_valid_BxP[:, None, None, :], pre, _MASKED))
    dec = (
        jnp.einsum(
            "rkgd,rkds->rkgs", q_BNxKxGxDh, kt_dec_BNxKxDhxS, preferred_element_type=jnp.float32
        )
        * scale
    )
    dec_BNxKxGxS = jnp.where(dec_valid_S, dec, _MASKED)
    probs = jax.nn.softmax(jnp.concatenate([pre_BNxKxGxP, dec_BNxKxGxS], axis=-1), axis=-1)
    probs = probs.astype(v_pre_BxKxPxDh.dtype)
    # The two partial products are summed in fp32 and rounded once, like attend's single product.
    out_pre = by_row(
        jnp.einsum(
            "bkqp,bkpd->bkqd",
            by_prompt(probs[..., :p]),
            v_pre_BxKxPxDh,
            preferred_element_type=jnp.float32,
        )
    )
    out_dec = jnp.einsum(
        "rkgs,rksd->rkgd", probs[..., p:], v_dec_BNxKxSxDh, preferred_element_type=jnp.float32
    )
    return (out_pre + out_dec).astype(v_pre_BxKxPxDh.dtype).reshape(bn, h, dh)


class _SharedCache(NamedTuple):
    """The prefix cache in the layouts `attend_shared` reads (relaid once, before the loop)."""

    kt_LxBxKxDhxP: jax.Array
    v_LxBxKxPxDh: jax.Array
    valid_BxP: jax.Array


def decode_step(
    model: CausalLM, tokens_BN, positions_BN, prefix: _SharedCache, kt_dec, v_dec, slot, head=None
):
    """Logits [B·N, V] of the next token after `tokens_BN`, whose k/v are written at `slot`."""
    x = constrain(model.backbone.embed_tokens(tokens_BN[:, None]), _ACT)
    s = v_dec[0].shape[2]
    dec_valid_S = jnp.arange(s, dtype=jnp.int32) <= slot
    new_k, new_v = [], []
    for i, layer in enumerate(model.backbone.layers):
        attn = layer.self_attn
        q, k, v = attn.qkv(layer.input_layernorm(x), positions_BN[:, None])  # [B·N, 1, ., Dh]
        kt_i = jax.lax.dynamic_update_slice(
            kt_dec[i], k[:, 0, :, :, None].astype(kt_dec[i].dtype), (0, 0, 0, slot)
        )
        v_i = jax.lax.dynamic_update_slice(
            v_dec[i], v.transpose(0, 2, 1, 3).astype(v_dec[i].dtype), (0, 0, slot, 0)
        )
        out = attend_shared(
            q[:, 0],
            prefix.kt_LxBxKxDhxP[i],
            prefix.v_LxBxKxPxDh[i],
            prefix.valid_BxP,
            kt_i,
            v_i,
            dec_valid_S,
        )
        h = x + attn.o_proj(out[:, None])
        x = constrain(h + layer.mlp(layer.post_attention_layernorm(h)), _ACT)
        new_k.append(kt_i)
        new_v.append(v_i)
    logits = head_logits(model, model.backbone.norm(x), head)[:, 0]
    return logits, tuple(new_k), tuple(new_v)


def decode(
    model: CausalLM,
    prefix: Prefix,
    key: jax.Array,
    config: SamplerConfig,
    stop_table_QxV: jax.Array | None = None,
) -> SampleOutput:
    """The sampling loop from a prefilled prefix: B prompts → B·N response rows."""
    n, r = config.samples_per_prompt, config.max_new_tokens
    b = prefix.logits_BxV.shape[0]
    bn, s = b * n, max(r - 1, 1)
    mc = model.config
    dtype = prefix.cache.k.dtype
    positions_BN = jnp.repeat(prefix.positions_B, n)
    eos = jnp.asarray(config.eos_ids or (-1,), jnp.int32)
    match_state = None if stop_table_QxV is None else stop_table_QxV.shape[0] - 1

    def select(logits_BNxV, t):
        return sampling.select(
            logits_BNxV,
            jax.random.fold_in(key, t),
            temperature=config.temperature,
            top_k=config.top_k,
            top_p=config.top_p,
            candidates=config.top_p_candidates,
        )

    def record(c: _Carry, sel: sampling.Selection) -> _Carry:
        active = ~c.done_BN
        tok = jnp.where(active, sel.tokens_B, config.pad_id)

        def put(buf, col):
            return jax.lax.dynamic_update_slice(buf, col[:, None], (0, c.t))

        is_eos = active & jnp.any(tok[:, None] == eos[None, :], axis=-1)
        is_stop = jnp.zeros_like(is_eos)
        stop_state = c.stop_state_BN
        if stop_table_QxV is not None:
            stop_state = jnp.where(active, stop_table_QxV[stop_state, tok], stop_state)
            is_stop = active & ~is_eos & (stop_state == match_state)
        finish = jnp.where(
            is_eos, FinishReason.EOS, jnp.where(is_stop, FinishReason.STOP, c.finish_BN)
        ).astype(jnp.int32)
        return c._replace(
            t=c.t + 1,
            last_BN=tok,
            done_BN=c.done_BN | is_eos | is_stop,
            stop_state_BN=stop_state,
            lengths_BN=c.lengths_BN + active.astype(jnp.int32),
            finish_BN=finish,
            tokens_BNxR=put(c.tokens_BNxR, tok),
            logp_BNxR=put(c.logp_BNxR, jnp.where(active, sel.logp_B, 0.0)),
            sample_logp_BNxR=put(c.sample_logp_BNxR, jnp.where(active, sel.sample_logp_B, 0.0)),
        )

    def rows(x, axes=("batch", None)):
        return constrain(x, axes)

    kh, dh = mc.num_kv_heads, mc.head_dim

    def empty(shape, axes):
        return tuple(constrain(jnp.zeros(shape, dtype), axes) for _ in range(mc.num_layers))

    shared = _SharedCache(
        kt_LxBxKxDhxP=constrain(prefix.cache.k.transpose(0, 1, 3, 4, 2), ("layers",) + _KT_AXES),
        v_LxBxKxPxDh=constrain(prefix.cache.v.transpose(0, 1, 3, 2, 4), ("layers",) + _V_AXES),
        valid_BxP=prefix.cache.mask,
    )
    zeros_BN = rows(jnp.zeros((bn,), jnp.int32), ("batch",))
    carry = _Carry(
        t=jnp.zeros((), jnp.int32),
        last_BN=zeros_BN,
        k_dec=empty((bn, kh, dh, s), _KT_AXES),
        v_dec=empty((bn, kh, s, dh), _V_AXES),
        done_BN=zeros_BN.astype(bool),
        stop_state_BN=zeros_BN,
        lengths_BN=zeros_BN,
        finish_BN=zeros_BN + FinishReason.LENGTH,
        tokens_BNxR=rows(jnp.full((bn, r), config.pad_id, jnp.int32)),
        logp_BNxR=rows(jnp.zeros((bn, r), jnp.float32)),
        sample_logp_BNxR=rows(jnp.zeros((bn, r), jnp.float32)),
    )
    # The first token comes from the prefill's logits, one copy per sample.
    carry = record(carry, select(rows(jnp.repeat(prefix.logits_BxV, n, axis=0)), 0))

    def cond(c: _Carry):
        return (c.t < r) & ~jnp.all(c.done_BN)

    head = head_matrix(model, config.head_dtype)  # cast once: a loop constant

    def body(c: _Carry):
        logits, k_dec, v_dec = decode_step(
            model, c.last_BN, positions_BN + c.t - 1, shared, c.k_dec, c.v_dec, c.t - 1, head
        )
        return record(c._replace(k_dec=k_dec, v_dec=v_dec), select(logits, c.t))

    c = jax.lax.while_loop(cond, body, carry)
    mask = jnp.arange(r, dtype=jnp.int32)[None, :] < c.lengths_BN[:, None]
    return SampleOutput(
        tokens=c.tokens_BNxR,
        logp=c.logp_BNxR,
        sample_logp=c.sample_logp_BNxR,
        response_mask=rows(mask),
        lengths=c.lengths_BN,
        finish_reason=c.finish_BN,
        steps=c.t,
    )
