"""Log-probs of given tokens and entropies, from hidden states and the LM head, without logits.

The plain computation, ``log_softmax(hidden @ table.T / T)``, holds ``[B, T, V]`` fp32 logits (and
autodiff keeps several more of that size for the backward pass): at 8 x 1024 tokens and a 32k
vocabulary that is 1 GiB per copy, and at Qwen's 151,936-token vocabulary the LM head dominates a
small model's memory. Everything PPO needs from the vocabulary is per token: the log-prob of the
sampled token (the ratio and every sampled-token KL estimate, k1/k2/k3) and the entropy. Both come
from three running sums over vocabulary chunks, an online log-sum-exp:

    m = max_j z_j,   s = sum_j e^(z_j - m),   u = sum_j e^(z_j - m) (z_j - m),   z = logits / T
    log p(token) = z_token - m - log s,        H = log s - u / s

so the forward pass holds one ``[..., C]`` chunk at a time. The backward pass (``jax.custom_vjp``)
recomputes each chunk's logits from the saved hidden states and the final ``log-sum-exp`` and
``H``: with ``p = softmax(z)``,

    d log p(token) / dz_j = [j = token] - p_j,        dH / dz_j = -p_j (log p_j + H),

then ``dz = dlogits / T`` goes to the hidden states (``dz @ W_c``) and to the head's rows
(``dz^T @ hidden``), chunk by chunk: no buffer is ``[..., V]`` in either direction. The price is
one extra LM-head matmul in the backward pass (the recomputed logits).

Numerics follow ``models.layers.project_to_vocab``: matmul operands in the hidden states' compute
dtype, accumulation and every softmax statistic in fp32, whatever the compute dtype. The head
``table_VxD`` is whatever scores tokens (``CausalLM.output_embedding()``: the input embedding when
tied); its gradient here adds to the embedding-lookup gradient through ordinary autodiff.

Chunks are contiguous ranges of rows, at most ``chunk_size`` wide: the largest divisor of V not
below half of it (``pick_chunk``: equal chunks need no masking); when none divides V the last
chunk is clamped to end at V and its columns already counted are masked out.

Letters: N any leading (token) dims, D model width, V vocabulary, C chunk; B rows, S = P + R
sequence (prompt + response).
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

DEFAULT_CHUNK = 8192  # Qwen2's 151,936: 32 chunks of 4,748
_NEG = -1e30  # finite "minus infinity" for the running max: (m_old - m_new) * 0 stays 0


def _chunk_logits(hidden, table_VxD, c, chunk: int, temperature: float):
    """Chunk ``c``'s scaled logits [..., C] in fp32, its start row, and its valid columns."""
    v = table_VxD.shape[0]
    start = jnp.minimum(c * chunk, v - chunk)
    rows_CxD = jax.lax.dynamic_slice_in_dim(table_VxD, start, chunk, axis=0)
    z = jnp.einsum(
        "...d,cd->...c",
        hidden,
        rows_CxD.astype(hidden.dtype),
        preferred_element_type=jnp.float32,
    )
    if temperature != 1.0:
        z = z / temperature
    cols = start + jnp.arange(chunk)
    # The clamped last chunk re-reads rows already counted; with equal chunks nothing is masked.
    valid = True if v % chunk == 0 else cols >= c * chunk
    return z, start, rows_CxD, cols, valid


def pick_chunk(vocab: int, requested: int) -> int:
    """The chunk width used for ``requested``: the largest divisor of the vocabulary in
    [requested / 2, requested] when there is one (equal chunks need no masking: Qwen2's
    151,936 = 32 x 4,748), else ``requested`` with the last chunk clamped and masked. Never wider
    than ``requested``, so it bounds the chunk's memory."""
    if requested >= vocab:
        return vocab
    for d in range(requested, (requested + 1) // 2 - 1, -1):
        if vocab % d == 0:
            return d
    return requested


def _forward(hidden, table_VxD, tokens, chunk: int, temperature: float, with_entropy: bool):
    n_chunks = math.ceil(table_VxD.shape[0] / chunk)
    lead = tokens.shape
    zeros = jnp.zeros(lead, jnp.float32)

    def body(c, carry):
        m, s, u, target = carry
        z, _, _, cols, valid = _chunk_logits(hidden, table_VxD, c, chunk, temperature)
        m_new = jnp.maximum(m, jnp.max(jnp.where(valid, z, _NEG), axis=-1))
        scale = jnp.exp(m - m_new)
        shifted = z - m_new[..., None]
        e = jnp.where(valid, jnp.exp(shifted), 0.0)
        s_new = s * scale + jnp.sum(e, axis=-1)
        u_new = u
        if with_entropy:
            # sum e^(z-m_new)(z-m_new) over old terms = scale * (u + (m - m_new) * s).
            u_new = scale * (u + (m - m_new) * s) + jnp.sum(e * jnp.where(valid, shifted, 0.0), -1)
        hit = valid & (cols == tokens[..., None])
        target = target + jnp.sum(jnp.where(hit, z, 0.0), axis=-1)
        return m_new, s_new, u_new, target

    m, s, u, target = jax.lax.fori_loop(
        0, n_chunks, body, (jnp.full(lead, _NEG, jnp.float32), zeros, zeros, zeros)
    )
    lse = m + jnp.log(s)
    logp = target - lse
    ent = jnp.log(s) - u / s if with_entropy else zeros
    return logp, ent, lse


@functools.partial(jax.custom_vjp, nondiff_argnums=(3, 4, 5, 6))
def _stats(hidden, table_VxD, tokens, chunk, temperature, with_entropy, entropy_grad):
    logp, ent, _ = _forward(hidden, table_VxD, tokens, chunk, temperature, with_entropy)
    return logp, ent


def _stats_fwd(hidden, table_VxD, tokens, chunk, temperature, with_entropy, entropy_grad):
    logp, ent, lse = _forward(hidden, table_VxD, tokens, chunk, temperature, with_entropy)
    return (logp, ent), (hidden, table_VxD, tokens, lse, ent)


def _stats_bwd(chunk, temperature, with_entropy, entropy_grad, residuals, cotangents):
    hidden, table_VxD, tokens, lse, ent = residuals
    g_logp, g_ent = cotangents
    n_chunks = math.ceil(table_VxD.shape[0] / chunk)
    # Flat [N, D] rows, and their transpose made once: the head's gradient per chunk is then
    # (hidden^T @ dz)^T, a plain [D, N] x [N, C] product. Contracting dz over its leading axis
    # instead makes XLA:CPU write a transposed copy of every [N, C] chunk (measured: 4x the
    # chunk's matmul time at N = 1,024, C = 4,096).
    h_NxD = hidden.reshape(-1, hidden.shape[-1])
    h_DxN = h_NxD.T
    tokens_N, lse_N, ent_N = tokens.reshape(-1), lse.reshape(-1), ent.reshape(-1)
    g_logp_N, g_ent_N = g_logp.reshape(-1), g_ent.reshape(-1)

    def body(c, carry):
        g_hidden, g_table = carry
        z, start, rows_CxD, cols, valid = _chunk_logits(h_NxD, table_VxD, c, chunk, temperature)
        logp_z = jnp.where(valid, z - lse_N[:, None], 0.0)
        p = jnp.where(valid, jnp.exp(logp_z), 0.0)
        onehot = (valid & (cols == tokens_N[:, None])).astype(jnp.float32)
        g_z = g_logp_N[:, None] * (onehot - p)
        if with_entropy and entropy_grad:
            g_z = g_z - g_ent_N[:, None] * p * (logp_z + ent_N[:, None])
        if temperature != 1.0:
            g_z = g_z / temperature
        g_z = g_z.astype(hidden.dtype)
        g_hidden = g_hidden + jnp.einsum(
            "nc,cd->nd", g_z, rows_CxD.astype(hidden.dtype), preferred_element_type=jnp.float32
        )
        g_rows_DxC = jnp.einsum("dn,nc->dc", h_DxN, g_z, preferred_element_type=jnp.float32)
        old = jax.lax.dynamic_slice_in_dim(g_table, start, chunk, axis=0)
        g_table = jax.lax.dynamic_update_slice_in_dim(g_table, old + g_rows_DxC.T, start, axis=0)
        return g_hidden, g_table

    g_hidden, g_table = jax.lax.fori_loop(
        0,
        n_chunks,
        body,
        (jnp.zeros(h_NxD.shape, jnp.float32), jnp.zeros(table_VxD.shape, jnp.float32)),
    )
    g_hidden = g_hidden.reshape(hidden.shape)
    return g_hidden.astype(hidden.dtype), g_table.astype(table_VxD.dtype), None


_stats.defvjp(_stats_fwd, _stats_bwd)


def token_logp_and_entropy(
    hidden: jax.Array,
    table_VxD: jax.Array,
    tokens: jax.Array,
    *,
    temperature: float = 1.0,
    chunk_size: int = DEFAULT_CHUNK,
    with_entropy: bool = True,
    entropy_grad: bool = True,
) -> tuple[jax.Array, jax.Array | None]:
    """``(log p(tokens), entropy)`` in fp32, each shaped like ``tokens``, of the distributions
    ``softmax(hidden @ table_VxD.T / temperature)``, without materialising the logits.

    ``hidden`` is ``[..., D]`` (compute dtype) and ``tokens`` its leading shape; differentiable in
    ``hidden`` and ``table_VxD``. ``with_entropy=False`` skips the entropy's running sum and
    returns ``None`` for it (scoring needs log-probs only). ``entropy_grad=False``: the entropy is
    a metric only, its cotangent is taken as zero (exact when the loss's entropy coefficient is 0)
    and the backward pass skips its term.
    """
    if hidden.shape[:-1] != tokens.shape:
        raise ValueError(f"hidden {hidden.shape} and tokens {tokens.shape}: leading dims differ")
    if table_VxD.ndim != 2 or table_VxD.shape[1] != hidden.shape[-1]:
        raise ValueError(f"table {table_VxD.shape} must be [V, {hidden.shape[-1]}]")
    if not isinstance(chunk_size, int) or chunk_size < 1:
        raise ValueError(f"chunk_size={chunk_size!r} must be a positive int")
    if not temperature > 0:
        raise ValueError(f"temperature={temperature!r} must be > 0")
    chunk = pick_chunk(table_VxD.shape[0], chunk_size)
    logp, ent = _stats(
        hidden,
        table_VxD,
        tokens,
        chunk,
        float(temperature),
        bool(with_entropy),
        bool(entropy_grad),
    )
    return logp, (ent if with_entropy else None)


def token_logp(hidden, table_VxD, tokens, *, temperature: float = 1.0, chunk_size=DEFAULT_CHUNK):
    """log p(tokens) alone (see ``token_logp_and_entropy``)."""
    logp, _ = token_logp_and_entropy(
        hidden,
        table_VxD,
        tokens,
        temperature=temperature,
        chunk_size=chunk_size,
        with_entropy=False,
    )
    return logp


def response_token_stats(
    model,
    tokens_BxS: jax.Array,
    attention_mask_BxS: jax.Array,
    prompt_len: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = True,
    entropy_grad: bool = True,
    chunk_size: int = DEFAULT_CHUNK,
) -> tuple[jax.Array, jax.Array | None]:
    """``(logp_BxR, entropy_BxR)`` of a ``CausalLM``'s distributions over the response tokens.

    Layout as in ``rl.algo.update``: ``tokens_BxS`` = prompt (P) + response (R); response token i is
    predicted at position P + i - 1. The hidden states are cut to those R positions before the head,
    so the prompt's positions never reach the vocabulary projection.
    """
    hidden_BxRxD = model.hidden(tokens_BxS, attention_mask_BxS)[:, prompt_len - 1 : -1]
    return token_logp_and_entropy(
        hidden_BxRxD,
        model.output_embedding(),
        tokens_BxS[:, prompt_len:],
        temperature=temperature,
        chunk_size=chunk_size,
        with_entropy=with_entropy,
        entropy_grad=entropy_grad,
    )
