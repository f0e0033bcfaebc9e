"""Generalized advantage estimation over response tokens.

Shape letters: B rows (responses), T response tokens. ``mask_BxT`` marks real response tokens;
padding after a response is False. The value after a response's last token is 0: the episode ends
there (the success reward sits on that token), so no bootstrap crosses into padding.

    delta_t = r_t + gamma * V_{t+1} * m_{t+1} - V_t
    A_t     = delta_t + gamma * lam * A_{t+1} * m_{t+1}
    R_t     = A_t + V_t           (the critic's regression target)
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def gae(
    rewards_BxT: jax.Array, values_BxT: jax.Array, mask_BxT: jax.Array, gamma: float, lam: float
) -> tuple[jax.Array, jax.Array]:
    """Advantages and returns ``[B, T]`` (zero outside the mask). Works for any leading shape."""
    m = mask_BxT.astype(rewards_BxT.dtype)
    r = rewards_BxT * m
    v = values_BxT * m
    # Shift by one token: V_{t+1} * m_{t+1}, zero after the last position.
    v_next = jnp.concatenate([v[..., 1:], jnp.zeros_like(v[..., :1])], axis=-1)
    m_next = jnp.concatenate([m[..., 1:], jnp.zeros_like(m[..., :1])], axis=-1)
    delta = (r + gamma * v_next - v) * m

    def step(carry, x):
        delta_t, m_next_t = x
        adv_t = delta_t + gamma * lam * m_next_t * carry
        return adv_t, adv_t

    # Scan backwards over time with the batch as the carry's shape: T sequential steps of B-wide
    # vector work, rather than B separate scans.
    xs = (jnp.moveaxis(delta, -1, 0), jnp.moveaxis(m_next, -1, 0))
    _, adv_TxB = jax.lax.scan(step, jnp.zeros(delta.shape[:-1], delta.dtype), xs, reverse=True)
    adv = jnp.moveaxis(adv_TxB, 0, -1) * m
    return adv, (adv + v) * m
