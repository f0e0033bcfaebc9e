"""Choosing the next token from logits: greedy, temperature, top-k, top-p; never sorting the vocab.

Why not the textbook version: on the CPU this project benchmarks on, with a 152k vocabulary, one
step of `jax.random.categorical` (a Gumbel draw per vocabulary entry) costs about 3x the LM head's
matmul, and a full sort for top-p ~50x. Here every step does O(V) work in a few fused passes:

  * **sampling** is inverse-CDF in vocabulary order with ONE uniform per row: the vocabulary is
    viewed as `nb` blocks of `bs` tokens; a block is found from the cumulative block masses, then a
    token inside that one block. This is an exact draw from the (filtered, tempered) softmax.
  * **top-k** keeps the tokens whose tempered logit is >= the k-th largest (`lax.top_k`), ties
    included, as transformers' `TopKLogitsWarper` does.
  * **top-p** keeps the smallest set of most probable tokens whose mass reaches `top_p` (after
    top-k, renormalised over the top-k set as transformers does), expressed as a logit threshold:
    all tokens tied with the last kept one are kept too. The threshold comes from the `candidates`
    largest logits when the nucleus provably lies inside them (the usual case for a trained model);
    otherwise the step falls back, under `lax.cond`, to an exact 32-step bisection on the logits'
    float bit patterns over the whole vocabulary (slower, still no sort).

Because the token depends only on (its row's logits, its uniform) and not on which top-p branch ran,
a row's sample does not depend on the other rows of the batch (up to float rounding at a CDF
boundary).

Returned per row: the token, its log-prob under the model's untempered, unfiltered distribution
(`log_softmax(logits)[token]`, what PPO's ratio needs) and its log-prob under the distribution
actually sampled from (tempered, filtered, renormalised; 0 for greedy).

Letters: B rows, V vocabulary, K candidates, nb blocks of bs tokens.
"""

from __future__ import annotations

import math
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np


class Selection(NamedTuple):
    tokens_B: jax.Array  # int32
    logp_B: jax.Array  # fp32, log softmax(logits)[token]: the model's, temperature 1, unfiltered
    sample_logp_B: jax.Array  # fp32, log-prob under the sampling distribution (0 for greedy)


def select(
    logits_BxV: jax.Array,
    key: jax.Array,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    candidates: int = 128,
) -> Selection:
    """The next token of every row. `temperature == 0` means greedy (top_k/top_p are then moot).

    temperature, top_k, top_p and candidates are Python numbers (compile-time constants).
    """
    logits_BxV = logits_BxV.astype(jnp.float32)
    if temperature == 0:
        return greedy(logits_BxV)
    return sample(
        logits_BxV, key, temperature=temperature, top_k=top_k, top_p=top_p, candidates=candidates
    )


def greedy(logits_BxV: jax.Array) -> Selection:
    """argmax (lowest index on ties, like torch.argmax) and its log-prob.

    Blocked: the big pass is a plain max over blocks of the vocabulary, then `argmax` runs over the
    block maxima and inside the winning block only. On XLA:CPU a full-width `jnp.argmax` (a variadic
    value/index reduce) or `lax.top_k(·, 1)` adds about a third of the LM head's time at 152k
    tokens; the blocked form costs about one plain max pass. The log-sum-exp is a second pass (one
    exp per logit): the price of returning log-probs.
    """
    b, v = logits_BxV.shape
    l_BxNbxBs, bs = _blocks(logits_BxV)
    max_BxNb = jnp.max(l_BxNbxBs, axis=-1)
    blk_B = jnp.argmax(max_BxNb, axis=-1).astype(jnp.int32)
    m_B = jnp.take_along_axis(max_BxNb, blk_B[:, None], axis=1)[:, 0]
    in_block_BxBs = jnp.take_along_axis(l_BxNbxBs, blk_B[:, None, None], axis=1)[:, 0]
    tokens_B = blk_B * bs + jnp.argmax(in_block_BxBs, axis=-1).astype(jnp.int32)
    lse_B = _logsumexp(logits_BxV, m_B)
    return Selection(tokens_B, m_B - lse_B, jnp.zeros_like(lse_B))


def _top_k(x_BxV: jax.Array, k: int):
    """`lax.top_k` behind an optimization barrier.

    XLA:CPU implements TopK by a sort that its TopK rewriter turns back into the fast TopK kernel
    only when the sort's outputs are used whole; slicing single columns out of them (as the
    threshold code does) defeats the rewrite and leaves a full sort of the vocabulary (~1 s per step
    at 152k). The barrier keeps the outputs whole.
    """
    return jax.lax.optimization_barrier(jax.lax.top_k(x_BxV, k))


def _blocks(x_BxV: jax.Array):
    """x viewed as [B, nb, bs] vocabulary blocks (padded with -inf when bs does not divide V)."""
    b, v = x_BxV.shape
    bs = block_size(v)
    nb = -(-v // bs)
    if nb * bs != v:
        x_BxV = jnp.pad(x_BxV, ((0, 0), (0, nb * bs - v)), constant_values=-jnp.inf)
    return x_BxV.reshape(b, nb, bs), bs


def sample(
    logits_BxV: jax.Array,
    key: jax.Array,
    *,
    temperature: float,
    top_k: int = 0,
    top_p: float = 1.0,
    candidates: int = 128,
) -> Selection:
    """One exact draw per row from softmax(logits / temperature) filtered by top-k then top-p."""
    b, v = logits_BxV.shape
    z_BxV = logits_BxV if temperature == 1 else logits_BxV / temperature
    top_k = top_k if 0 < top_k < v else 0
    filtered = top_k > 0 or top_p < 1
    tau_B = jnp.full((b,), -jnp.inf, jnp.float32)  # keep tokens with z >= tau
    if filtered:
        # One extra candidate serves as a sentinel: everything outside the list is <= its value.
        k_c = min(v, (top_k or candidates) + 1)
        cand_v_BxK, _ = _top_k(z_BxV, k_c)
        m_B = cand_v_BxK[:, 0]
        if top_k:
            tau_B = cand_v_BxK[:, top_k - 1]
        if top_p < 1:
            tau_B = jnp.maximum(tau_B, _top_p_threshold(z_BxV, m_B, cand_v_BxK, top_k, top_p))
    else:
        m_B = jnp.max(z_BxV, axis=-1)
    u_B = jax.random.uniform(key, (b,), jnp.float32)
    tokens_B, z_tok_B, kept_mass_B = inverse_cdf(z_BxV, m_B, tau_B, u_B)
    sample_logp_B = (z_tok_B - m_B) - jnp.log(kept_mass_B)
    if temperature == 1 and not filtered:
        lse_B = m_B + jnp.log(kept_mass_B)
    else:
        # max(z)·T is max(logits) up to rounding: a valid shift for the untempered log-sum-exp.
        lse_B = _logsumexp(logits_BxV, m_B * temperature)
    logit_tok_B = jnp.take_along_axis(logits_BxV, tokens_B[:, None], axis=-1)[:, 0]
    return Selection(tokens_B, logit_tok_B - lse_B, sample_logp_B)


def _logsumexp(x_BxV: jax.Array, shift_B: jax.Array) -> jax.Array:
    return shift_B + jnp.log(jnp.sum(jnp.exp(x_BxV - shift_B[:, None]), axis=-1))


def block_size(v: int) -> int:
    """Tokens per block for `inverse_cdf`: the divisor of v nearest sqrt(v) (log scale).

    If v has no divisor within 8x of sqrt(v) (e.g. a prime vocabulary), returns 128 and the logits
    are padded with -inf to a multiple of it.
    """
    root = math.sqrt(v)
    divisors = [d for d in range(1, int(root) + 1) if v % d == 0]
    divisors += [v // d for d in divisors]
    best = min(divisors, key=lambda d: abs(math.log(d / root)))
    return best if max(best, v // best) <= 8 * root else 128


def inverse_cdf(z_BxV: jax.Array, m_B: jax.Array, tau_B: jax.Array, u_B: jax.Array):
    """Token i with probability exp(z_i - m)·[z_i >= tau] / mass, chosen by the uniform u in [0, 1).

    Vocabulary order: the smallest i whose inclusive cumulative mass exceeds u·mass. Two levels
    (blocks, then inside one block) so that no cumulative sum runs over the whole vocabulary.
    Returns (token, z[token], mass); tokens of zero weight are never returned (indices are clamped
    to the last positive-weight block / token against rounding).
    """
    z_BxNbxBs, bs = _blocks(z_BxV)
    m_Bx1x1, tau_Bx1x1 = m_B[:, None, None], tau_B[:, None, None]
    w_BxNb = jnp.sum(jnp.where(z_BxNbxBs >= tau_Bx1x1, jnp.exp(z_BxNbxBs - m_Bx1x1), 0.0), axis=-1)
    cum_BxNb = jnp.cumsum(w_BxNb, axis=-1)
    mass_B = cum_BxNb[:, -1]
    target_B = u_B * mass_B
    blk_B = jnp.minimum(
        jnp.sum(cum_BxNb <= target_B[:, None], axis=-1, dtype=jnp.int32), _last_positive(w_BxNb)
    )
    z_in_BxBs = jnp.take_along_axis(z_BxNbxBs, blk_B[:, None, None], axis=1)[:, 0]
    w_in_BxBs = jnp.where(z_in_BxBs >= tau_B[:, None], jnp.exp(z_in_BxBs - m_B[:, None]), 0.0)
    base_B = (
        jnp.take_along_axis(cum_BxNb, blk_B[:, None], axis=1)[:, 0]
        - jnp.take_along_axis(w_BxNb, blk_B[:, None], axis=1)[:, 0]
    )
    cum_in_BxBs = jnp.cumsum(w_in_BxBs, axis=-1)
    j_B = jnp.minimum(
        jnp.sum(cum_in_BxBs <= (target_B - base_B)[:, None], axis=-1, dtype=jnp.int32),
        _last_positive(w_in_BxBs),
    )
    z_tok_B = jnp.take_along_axis(z_in_BxBs, j_B[:, None], axis=1)[:, 0]
    return blk_B * bs + j_B, z_tok_B, mass_B


def _last_positive(w_BxN: jax.Array) -> jax.Array:
    iota = jax.lax.broadcasted_iota(jnp.int32, w_BxN.shape, 1)
    return jnp.max(jnp.where(w_BxN > 0, iota, 0), axis=-1)


def _top_p_threshold(z_BxV, m_B, cand_v_BxK, top_k: int, top_p: float) -> jax.Array:
    """The logit threshold of the top-p nucleus (within the top-k set when top_k > 0).

    The nucleus is {z >= tau} for the largest tau whose kept mass reaches top_p of the (top-k) mass.
    Fast path: cumulative mass over the sorted candidates. It is exact when, for every row, the mass
    is reached before the sentinel (last) candidate at a value strictly above the sentinel's, since
    all tokens outside the list are <= the sentinel; for top-k, the top-k set must also lie inside
    the list (no tie with the k-th value beyond it) so that its mass is known. Otherwise: exact
    bisection.
    """
    k_c = cand_v_BxK.shape[1]
    whole_vocab = k_c == z_BxV.shape[1]
    w_BxK = jnp.exp(cand_v_BxK - m_B[:, None])
    if top_k:
        tau_k_B = cand_v_BxK[:, top_k - 1]
        mass_B = jnp.sum(w_BxK[:, :top_k], axis=-1)
        topk_known_B = (cand_v_BxK[:, top_k] < tau_k_B) if not whole_vocab else True
    else:
        tau_k_B = jnp.full_like(m_B, -jnp.inf)
        mass_B = jnp.sum(jnp.exp(z_BxV - m_B[:, None]), axis=-1)
        topk_known_B = True
    cum_BxK = jnp.cumsum(w_BxK, axis=-1)
    reach_BxK = cum_BxK >= top_p * mass_B[:, None]
    first_B = jnp.argmax(reach_BxK, axis=-1)
    tau_p_B = jnp.take_along_axis(cand_v_BxK, first_B[:, None], axis=1)[:, 0]
    if whole_vocab:
        covered_B = jnp.any(reach_BxK, axis=-1)
    else:
        covered_B = jnp.any(reach_BxK[:, :-1], axis=-1) & (tau_p_B > cand_v_BxK[:, -1])
    covered_B = covered_B & topk_known_B
    return jax.lax.cond(
        jnp.all(covered_B), lambda: tau_p_B, lambda: bisect_top_p(z_BxV, m_B, tau_k_B, top_p)
    )


def _ordered_key(x: jax.Array) -> jax.Array:
    """uint32 keys with the same order as the float32 values (sign-magnitude to offset binary)."""
    bits = jax.lax.bitcast_convert_type(x, jnp.uint32)
    return jnp.where(bits >> 31 == 1, ~bits, bits | np.uint32(0x80000000))


def bisect_top_p(z_BxV, m_B, tau_k_B, top_p: float) -> jax.Array:
    """Exact top-p threshold over the whole vocabulary: 32 halvings of the float32 key range.

    Finds the largest key t with mass(key(z) >= t) >= top_p·mass(kept by top-k); returns the
    smallest logit at or above it (so the kept set is {z >= tau}).
    """
    w_BxV = jnp.where(z_BxV >= tau_k_B[:, None], jnp.exp(z_BxV - m_B[:, None]), 0.0)
    target_B = top_p * jnp.sum(w_BxV, axis=-1)
    keys_BxV = _ordered_key(z_BxV)

    def halve(_, lo_hi):
        lo, hi = lo_hi
        mid = lo + (hi - lo) // 2
        ok = jnp.sum(jnp.where(keys_BxV >= mid[:, None], w_BxV, 0.0), axis=-1) >= target_B
        return jnp.where(ok, mid, lo), jnp.where(ok, hi, mid)

    lo = jnp.zeros_like(m_B, jnp.uint32)  # mass(key >= 0) is everything: satisfies the condition.
    hi = _ordered_key(m_B) + np.uint32(1)  # nothing lies above the max: fails it.
    lo, _ = jax.lax.fori_loop(0, 32, halve, (lo, hi))
    return jnp.min(jnp.where(keys_BxV >= lo[:, None], z_BxV, jnp.inf), axis=-1)
