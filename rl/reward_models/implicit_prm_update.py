"""PRIME's online implicit-PRM step: one pure function ``(state, batch) -> (state, metrics)``.

PRIME (Cui et al. 2025, arXiv 2502.01456) keeps training the implicit PRM during RL, on the
rollouts of each iteration labelled by the verifier: the loss is the same cross-entropy the
implicit PRM was trained with offline (``rl.reward_models.losses.implicit_prm_loss``),
``BCE(sigmoid(beta * sum_t (log pi(y_t) - log pi_ref(y_t))), label)`` averaged over the rows, with
coefficient 1: verl's recipe ``recipe/prime/prime_core_algos.py`` (``compute_ce_dpo_loss_rm``)
called by ``recipe/prime/prime_dp_rm.py`` (``DataParallelPRIMERewardModel.update_rm``:
``loss_type: ce``, the loss of each micro batch divided by the gradient-accumulation count). The
optimizer is the implicit PRM's own (``make_optimizer``): AdamW, PRIME's learning rate 1e-6,
gradient clipping at 10, no weight decay, constant rate (``recipe/prime/config/prime_trainer.yaml``,
``reward_model.model.optim``; betas are torch's AdamW defaults there, 0.9 / 0.999).

The step takes one minibatch (the trainer passes the iteration's rows in
``reward.implicit_prm_minibatches`` contiguous minibatches, one optimizer step each, as verl's
``update_rm`` splits its batch by ``mini_batch_size``), accumulates the gradient over
``microbatches`` strided microbatches with ``lax.scan`` (the loss is a row *sum* divided by the
minibatch's rows, so the accumulated gradient equals the minibatch's), and skips a step whose loss
or gradient norm is not finite (the state is returned unchanged, ``skipped`` = 1).

Batch (``[B, ...]``, response-aligned as in ``rl.algo.update``): ``tokens``, ``attention_mask``
(``[B, S]``: prompt of length P, then the response), ``response_mask`` and ``ref_logp`` (``[B, R]``:
the reference's log-probs of the response tokens) and ``outcome`` (``[B]``, the label in [0, 1]).
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from rl.algo import losses as ppo
from rl.algo import token_stats
from rl.algo import update as upd
from rl.config import OptimConfig
from rl.reward_models.losses import implicit_prm_loss
from rl.reward_models.training import RMState

BATCH_KEYS = ("tokens", "attention_mask", "response_mask", "ref_logp", "outcome")


def make_optimizer(learning_rate: float, grad_clip: float) -> optax.GradientTransformation:
    """PRIME's implicit-PRM optimizer: clip the global gradient norm, then AdamW (betas 0.9 /
    0.999, no weight decay) at a constant rate."""
    cfg = OptimConfig(
        learning_rate=learning_rate, max_grad_norm=grad_clip, weight_decay=0.0, b1=0.9, b2=0.999
    )
    return upd.make_optimizer(cfg, learning_rate, total_steps=1)


def response_logp(
    graphdef: Any, params: Any, tokens_BxS, attention_mask_BxS, prompt_len: int, temperature: float
) -> jax.Array:
    """``[B, R]``: log pi of each response token, at the temperature the rollout's implicit rewards
    are read at, computed as the score pass computes them (``rl.algo.scoring``: the response
    positions' hidden states through the chunked head, ``rl.algo.token_stats``; no ``[B, R, V]``
    logits forward or backward)."""
    model = nnx.merge(graphdef, params)
    logp, _ = token_stats.response_token_stats(
        model,
        tokens_BxS,
        attention_mask_BxS,
        prompt_len,
        temperature=temperature,
        with_entropy=False,
    )
    return logp


def loss_terms(
    graphdef: Any,
    params: Any,
    batch: dict[str, jax.Array],
    prompt_len: int,
    beta: float,
    temperature: float,
) -> tuple[ppo.Masked, ppo.Masked]:
    """(BCE, sign accuracy) of the rows as masked sums (``losses.implicit_prm_loss``)."""
    logp = response_logp(
        graphdef, params, batch["tokens"], batch["attention_mask"], prompt_len, temperature
    )
    labelled = dict(batch, outcome_mask=jnp.ones_like(batch["outcome"], dtype=bool))
    return implicit_prm_loss(logp, labelled, beta)


def _microbatches(batch: dict[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """[B, ...] -> [n, B/n, ...], rows i, i+n, ... in microbatch i (each device keeps its rows)."""

    def split(x):
        return jnp.swapaxes(x.reshape((x.shape[0] // n, n) + x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def make_update_fn(
    graphdef: Any,
    tx: optax.GradientTransformation,
    prompt_len: int,
    beta: float,
    *,
    temperature: float = 1.0,
    microbatches: int = 1,
):
    """``update(state: RMState, batch) -> (state, metrics)`` (not jitted). Metrics: ``loss`` (the
    minibatch's mean BCE before the step), ``accuracy`` (the fraction of rows whose implicit reward
    has the label's sign, before the step), ``grad_norm``, ``skipped``."""

    def micro_loss(params, mb, rows):
        loss, correct = loss_terms(graphdef, params, mb, prompt_len, beta, temperature)
        return loss.total / rows, (loss.total, correct.total)

    grad_fn = jax.grad(micro_loss, has_aux=True)

    def update(state: RMState, batch: dict[str, jax.Array]):
        batch = {k: batch[k] for k in BATCH_KEYS}
        rows = batch["outcome"].shape[0]

        def body(carry, mb):
            grads, loss_sum, correct_sum = carry
            g, (loss, correct) = grad_fn(state.params, mb, rows)
            return (jax.tree.map(jnp.add, grads, g), loss_sum + loss, correct_sum + correct), None

        zero = jnp.zeros((), jnp.float32)
        init = (jax.tree.map(jnp.zeros_like, state.params), zero, zero)
        (grads, loss_sum, correct_sum), _ = jax.lax.scan(
            body, init, _microbatches(batch, microbatches)
        )
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = RMState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
        grad_norm = optax.global_norm(grads)
        ok = jnp.isfinite(loss_sum) & jnp.isfinite(grad_norm)
        new = jax.tree.map(lambda n, o: jnp.where(ok, n, o), new, state)
        metrics = {
            "loss": loss_sum / rows,
            "accuracy": correct_sum / rows,
            "grad_norm": grad_norm,
            "skipped": 1.0 - ok.astype(jnp.float32),
        }
        return new, metrics

    return update
