"""The rollout engine: prefill and the whole decode loop in ONE jitted program, N samples per
prompt.

    sampler = Sampler(policy, SamplerConfig(max_new_tokens=512, temperature=1.0, eos_ids=(151643,),
                                            samples_per_prompt=8), mesh=mesh, rules=RULES)
    out = sampler(nnx.state(policy), prompt_ids_BxP, prompt_mask_BxP, jax.random.key(step))
    out.tokens   # [B*N, R]; rows b*N .. b*N+N-1 are prompt b's samples

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

Stopping, per row: a token in `eos_ids`; or a stop string; or `max_new_tokens`. Stop strings are
matched exactly, inside the loop, on the response's text: the UTF-8 bytes of its tokens
concatenated, special tokens contributing nothing (what `tokenizer.decode(ids,
skip_special_tokens=True)` gives for byte-level BPE), the prompt not included, across any token
boundaries (an automaton over bytes, precomputed per token: see `stop_table`). The row stops at the
token whose bytes complete the first occurrence of any stop string; that token is part of the
response (its text may run past the string's end: cut the decoded text at the string if needed). EOS
wins when one token does both.

Randomness: step t draws one uniform per row from `fold_in(key, t)`, so a fixed key reproduces the
samples exactly, and row r's sample does not depend on how the batch is sharded (threefry keys are
partitionable) or, for the same rows, on whether prompts were shared (N > 1) or repeated (N = 1).

Letters: B prompts, N samples per prompt, P prompt length, R max new tokens, S = R-1 decode slots,
L layers, K kv heads, G query heads per kv head, Dh head width, D width, V vocabulary.
"""

from __future__ import annotations

import dataclasses
import enum
import math
from typing import Any, NamedTuple, Sequence

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.decoder import CausalLM, init_cache
from models.kv_cache import KVCache
from models.sharding import Rules, array_sharding, constrain, use_mesh
from rl.rollout import token_selection as sampling
from rl.runtime.distributed import to_global

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


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """What to sample. Every field is a compile-time constant of the sampling program.

    temperature: 0 means greedy; top_k: 0 means off; top_p: 1 means off. top_p_candidates: how many
    of the largest logits the fast top-p path inspects before falling back to an exact bisection
    over the vocabulary (see `rl.rollout.token_selection`). samples_per_prompt: N rows per prompt
    sharing its prefill. pad_id: the token written after a row stopped.
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    samples_per_prompt: int = 1
    pad_id: int = 0
    top_p_candidates: int = 128

    def __post_init__(self):
        def fail(name, why):
            raise ValueError(f"SamplerConfig.{name}={getattr(self, name)!r}: {why}")

        def whole(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                fail(name, f"must be an int >= {low}")
            object.__setattr__(self, name, int(value))

        whole("max_new_tokens", 1)
        whole("top_k", 0)
        whole("samples_per_prompt", 1)
        whole("pad_id", 0)
        whole("top_p_candidates", 1)
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            fail("temperature", "must be a finite number >= 0 (0 means greedy)")
        object.__setattr__(self, "temperature", float(t))
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            fail("top_p", "must be in (0, 1]")
        object.__setattr__(self, "top_p", float(p))
        eos = (self.eos_ids,) if isinstance(self.eos_ids, (int, np.integer)) else self.eos_ids
        if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in eos):
            fail("eos_ids", "must be non-negative token ids")
        object.__setattr__(self, "eos_ids", tuple(int(i) for i in eos))
        stops = (self.stop_strings,) if isinstance(self.stop_strings, str) else self.stop_strings
        if any(not isinstance(s, str) or not s for s in stops):
            fail("stop_strings", "must be non-empty strings")
        object.__setattr__(self, "stop_strings", tuple(stops))


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


# --- The program ---------------------------------------------------------------------------------


def prefill(model: CausalLM, prompt_ids_BxP: jax.Array, prompt_mask_BxP: jax.Array) -> Prefix:
    """The model's cached forward over left-padded prompts; the head only at the last position."""
    b, p = prompt_ids_BxP.shape
    cache = init_cache(model.config, b, p)
    cache = cache.replace(
        k=constrain(cache.k, KVCache.KV_AXES),
        v=constrain(cache.v, KVCache.KV_AXES),
        mask=constrain(cache.mask, KVCache.MASK_AXES),
    )
    hidden_BxPxD, cache = model.backbone.decode(prompt_ids_BxP, None, cache, prompt_mask_BxP)
    logits_BxV = model.logits_from_hidden(hidden_BxPxD[:, -1:])[:, 0]
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
    model: CausalLM, tokens_BN, positions_BN, prefix: _SharedCache, kt_dec, v_dec, slot
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
    logits = model.logits_from_hidden(model.backbone.norm(x))[:, 0]
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
        put = lambda buf, col: jax.lax.dynamic_update_slice(buf, col[:, None], (0, c.t))
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
    empty = lambda shape, axes: tuple(
        constrain(jnp.zeros(shape, dtype), axes) for _ in range(mc.num_layers)
    )
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

    def body(c: _Carry):
        logits, k_dec, v_dec = decode_step(
            model, c.last_BN, positions_BN + c.t - 1, shared, c.k_dec, c.v_dec, c.t - 1
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


# --- The user-facing object --------------------------------------------------------------------


class Sampler:
    """Compiled sampling for one model structure and one `SamplerConfig`; parameters are arguments.

    `model` is a `CausalLM` (only its graph is kept) or its `nnx.GraphDef`. Call with the parameters
    (`nnx.state(model)`, or the trainer's current policy state: no rebuild, no recompile),
    left-padded prompts [B, P] (every row's last column real), their mask, and a `jax.random` key.
    One compiled program per (B, P); `num_traces` counts compilations.

    With `mesh`/`rules`, prompts and outputs are sharded over the batch axes and the parameters must
    already live on the mesh (e.g. `hf_io.load_causal_lm(path, mesh=..., rules=...)`). Stop strings
    need the text of every token: pass `tokenizer` (transformers) or `token_bytes` (see
    `stop_table`).
    """

    def __init__(
        self,
        model: Any,
        config: SamplerConfig,
        *,
        mesh: jax.sharding.Mesh | None = None,
        rules: Rules | None = None,
        tokenizer: Any = None,
        token_bytes: Sequence[bytes] | None = None,
    ):
        if (mesh is None) != (rules is None):
            raise ValueError(
                "Sampler: give both mesh= and rules= (e.g. configs.sharding.RULES) or neither"
            )
        self.graphdef = model if isinstance(model, nnx.GraphDef) else nnx.graphdef(model)
        self.config = config
        self.mesh, self.rules = mesh, rules
        self.num_traces = 0
        self._stop_table = None
        self._token_bytes = None
        if config.stop_strings:
            if token_bytes is None:
                if tokenizer is None:
                    raise ValueError(
                        f"SamplerConfig.stop_strings={config.stop_strings!r} needs "
                        "Sampler(tokenizer=...) or token_bytes=..."
                    )
                token_bytes = token_bytes_from_tokenizer(tokenizer)
            self._token_bytes = list(token_bytes)
            if isinstance(model, nnx.Module):
                self._build_stop_table(model.config.vocab_size)
        self._generate = jax.jit(self._generate_fn)
        self._prefill = jax.jit(self._prefill_fn)
        self._decode = jax.jit(self._decode_fn)

    def _build_stop_table(self, vocab_size: int) -> None:
        table = stop_table(
            self.config.stop_strings, self._token_bytes, max(vocab_size, len(self._token_bytes))
        )
        self._stop_table = (
            jnp.asarray(table)
            if self.mesh is None
            else jax.device_put(
                table, array_sharding((None, None), table.shape, self.mesh, self.rules)
            )
        )

    def _stops(self, state) -> jax.Array | None:
        if self._token_bytes is not None and self._stop_table is None:  # built from a GraphDef
            self._build_stop_table(nnx.merge(self.graphdef, state).config.vocab_size)
        return self._stop_table

    # Pure functions (traced under the mesh context in `_call`).

    def _generate_fn(self, state, prompt_ids_BxP, prompt_mask_BxP, key, stop_table_QxV):
        self.num_traces += 1
        model = nnx.merge(self.graphdef, state)
        prefix = prefill(model, prompt_ids_BxP, prompt_mask_BxP)
        return decode(model, prefix, key, self.config, stop_table_QxV)

    def _prefill_fn(self, state, prompt_ids_BxP, prompt_mask_BxP):
        return prefill(nnx.merge(self.graphdef, state), prompt_ids_BxP, prompt_mask_BxP)

    def _decode_fn(self, state, prefix, key, stop_table_QxV):
        return decode(nnx.merge(self.graphdef, state), prefix, key, self.config, stop_table_QxV)

    def _call(self, fn, *args):
        if self.mesh is None:
            return fn(*args)
        with use_mesh(self.mesh, self.rules):
            return fn(*args)

    def _prompts(self, prompt_ids_BxP, prompt_mask_BxP):
        if isinstance(prompt_mask_BxP, np.ndarray) and not prompt_mask_BxP[:, -1].all():
            raise ValueError(
                "Sampler: prompts must be left-padded (every row's last column is a real token)"
            )
        as_array = np.asarray if isinstance(prompt_ids_BxP, np.ndarray) else jnp.asarray
        ids = as_array(prompt_ids_BxP).astype(np.int32)
        mask = as_array(prompt_mask_BxP).astype(np.bool_)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"Sampler: prompt ids {ids.shape} and mask {mask.shape} must be the same "
                "[B, P] shape"
            )
        if self.mesh is not None:  # Host arrays go straight to their shards (on every process).
            sharding = array_sharding(("batch", None), ids.shape, self.mesh, self.rules)
            return to_global((ids, mask), sharding)
        return jnp.asarray(ids), jnp.asarray(mask)

    def __call__(self, state: Any, prompt_ids_BxP, prompt_mask_BxP, key: jax.Array) -> SampleOutput:
        """B prompts → B·N samples (rows b·N .. b·N+N-1 belong to prompt b)."""
        ids, mask = self._prompts(prompt_ids_BxP, prompt_mask_BxP)
        return self._call(self._generate, state, ids, mask, key, self._stops(state))

    def prefill(self, state: Any, prompt_ids_BxP, prompt_mask_BxP) -> Prefix:
        """Only the prefill (separately compiled); `decode` continues from it. For
        benchmarks/tools."""
        return self._call(self._prefill, state, *self._prompts(prompt_ids_BxP, prompt_mask_BxP))

    def decode(self, state: Any, prefix: Prefix, key: jax.Array) -> SampleOutput:
        return self._call(self._decode, state, prefix, key, self._stops(state))


# --- Stop strings --------------------------------------------------------------------------------


def stop_table(
    stop_strings: Sequence[str], token_bytes: Sequence[bytes], vocab_size: int
) -> np.ndarray:
    """Transition table [Q, V] int32 of a matcher of `stop_strings` over the response's bytes.

    States 0..Q-2 are those of an Aho-Corasick automaton of the strings' UTF-8 bytes (state 0:
    nothing matched yet); Q-1 is MATCH, absorbing. table[q, tok] is the state after feeding token
    `tok`'s bytes from state q; MATCH as soon as any string ends inside them. So in the loop the
    check is one gather per row per step, exact across token boundaries whatever the tokenization.
    UTF-8 being self-synchronising, a byte match is a match in the decoded text. Ids >=
    len(token_bytes) have no bytes (as special tokens, which decoding with skip_special_tokens
    drops).
    """
    patterns = [s.encode("utf-8") for s in stop_strings]
    goto: list[dict[int, int]] = [{}]
    accept = [False]
    for pat in patterns:
        q = 0
        for byte in pat:
            if byte not in goto[q]:
                goto.append({})
                accept.append(False)
                goto[q][byte] = len(goto) - 1
            q = goto[q][byte]
        accept[q] = True
    n = len(goto)
    delta = np.zeros((n, 256), np.int32)
    fail = [0] * n
    queue = []
    for byte, q in goto[0].items():
        delta[0, byte] = q
        queue.append(q)
    while queue:  # Breadth-first: a state's failure link is finished before its children's.
        q = queue.pop(0)
        accept[q] = accept[q] or accept[fail[q]]
        delta[q] = delta[fail[q]]
        for byte, child in goto[q].items():
            delta[q, byte] = child
            fail[child] = delta[fail[q], byte] if q else 0
            queue.append(child)
    accept_arr = np.asarray(accept)

    lens = np.zeros(vocab_size, np.int64)
    lens[: len(token_bytes)] = [len(t) for t in token_bytes[:vocab_size]]
    order = np.argsort(-lens, kind="stable")  # Longest first: the tokens still active at byte j
    max_len = int(lens.max(initial=0))  # are a prefix of this order.
    buf = np.zeros((vocab_size, max(max_len, 1)), np.uint8)
    for row, tok in enumerate(order[: np.count_nonzero(lens)]):
        buf[row, : lens[tok]] = np.frombuffer(token_bytes[tok], np.uint8)
    sorted_lens = lens[order]
    cur = np.repeat(np.arange(n, dtype=np.int32)[:, None], vocab_size, axis=1)
    matched = np.zeros((n, vocab_size), bool)
    for j in range(max_len):
        active = int(np.count_nonzero(sorted_lens > j))
        nxt = delta[cur[:, :active], buf[None, :active, j]]
        cur[:, :active] = nxt
        matched[:, :active] |= accept_arr[nxt]
    table = np.empty((n + 1, vocab_size), np.int32)
    table[:n, order] = np.where(matched, n, cur)
    table[n] = n
    return table


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte ↔ printable-character map used by byte-level BPE vocabularies (Qwen2, Llama
    3)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars)))


def token_bytes_from_tokenizer(tokenizer: Any) -> list[bytes]:
    """The UTF-8 bytes every token id contributes to decoded text (skip_special_tokens semantics).

    Byte-level BPE vocabularies (GPT-2 / Qwen2 / Llama 3) map back through the byte alphabet;
    SentencePiece ones through `▁` → space and `<0xNN>` byte tokens. Special tokens give b""; other
    added tokens their content.
    """
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {i: t for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if i < size}
    special = set(getattr(tokenizer, "all_special_ids", ()))
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    plain = [p for i, p in enumerate(pieces) if i not in added and p is not None]
    byte_level = all(c in byte_of for p in plain for c in p)
    out = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None or (i in added and added[i].special):
            out.append(b"")
        elif i in added:
            out.append(added[i].content.encode("utf-8"))
        elif byte_level:
            out.append(bytes(byte_of[c] for c in piece))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out
