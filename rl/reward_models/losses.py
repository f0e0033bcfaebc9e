"""The reward-model losses, one per kind, as masked (sum, count) pairs (``rl.algo.losses.Masked``).

* **prm**: binary cross-entropy at every labelled step end, on the head's logit; soft labels are
  allowed (BCE against the fraction).
* **orm**: the same BCE on the outcome label, with the logit at the last response token
  (``models.heads.last_token_mask``; the EOS, where ``rl.algo.scoring`` reads the ORM).
* **implicit_prm** (Yuan et al. 2024): outcome reward r(y) = beta * sum over response tokens of
  (log pi - log pi_ref), trained with -[l log sigma(r) + (1 - l) log(1 - sigma(r))]. Its step
  rewards are beta times each step's summed log-ratio (``implicit_step_rewards``), which is
  ``rewards.shaping.implicit_prm``. pi_ref should be the PPO run's reference (the SFT policy): the
  PPO trainer pairs the implicit PRM with its own reference log-probs.

Batches are the dicts of ``rl.reward_models.data.RewardArrays.batch`` (plus ``ref_logp`` for the
implicit PRM). Letters: B batch rows, S sequence tokens, T one sequence's tokens.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import nnx

from models.heads import last_token_mask
from rl.algo import losses as ppo
from rl.reward_models.modeling import head_logits, sequence_logp


def bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> tuple[ppo.Masked, ppo.Masked]:
    """(BCE with logits against soft labels, 0/1 accuracy at threshold 0.5) as masked sums."""
    loss = optax.sigmoid_binary_cross_entropy(logits, labels)
    correct = ((logits > 0) == (labels >= 0.5)).astype(jnp.float32)
    return ppo.masked(loss, mask), ppo.masked(correct, mask)


def prm_loss(logits_BxS: jax.Array, batch: dict[str, jax.Array]):
    return bce(logits_BxS, batch["step_labels"], batch["label_mask"])


def orm_logit(logits_BxS: jax.Array, attention_mask_BxS: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(last_token_mask(attention_mask_BxS), logits_BxS, 0.0), axis=-1)


def orm_loss(logits_BxS: jax.Array, batch: dict[str, jax.Array]):
    return bce(
        orm_logit(logits_BxS, batch["attention_mask"]), batch["outcome"], batch["outcome_mask"]
    )


def implicit_reward(
    logp_BxS: jax.Array, ref_logp_BxS: jax.Array, response_BxS: jax.Array, beta: float
) -> jax.Array:
    """r(y) = beta * sum over response tokens of log pi - log pi_ref: [B]."""
    return beta * jnp.sum(jnp.where(response_BxS, logp_BxS - ref_logp_BxS, 0.0), axis=-1)


def implicit_prm_loss(logp_BxS: jax.Array, batch: dict[str, jax.Array], beta: float):
    r_B = implicit_reward(logp_BxS, batch["ref_logp"], batch["response_mask"], beta)
    return bce(r_B, batch["outcome"], batch["outcome_mask"])


def implicit_step_rewards(
    logp_T: jax.Array,
    ref_logp_T: jax.Array,
    step_end_T: jax.Array,
    response_T: jax.Array,
    beta: float,
) -> jax.Array:
    """beta x the summed log-ratio of each step's tokens, on the step's last token; 0 elsewhere.

    One sequence ([T]; ``jax.vmap`` for a batch). A step's tokens run from after the previous step
    end to its own end; response tokens after the last step end belong to no step. Computed as
    per-step segment sums (not as differences of a running sum, as ``rewards.shaping.implicit_prm``
    does), so the two can check each other.
    """
    step_end_T = step_end_T.astype(jnp.bool_)
    ends = step_end_T.astype(jnp.int32)
    step_of_T = jnp.cumsum(ends) - ends  # index of the step each token belongs to
    ratio_T = jnp.where(response_T, logp_T - ref_logp_T, 0.0)
    t = ratio_T.shape[0]
    sums = jax.ops.segment_sum(ratio_T, step_of_T, num_segments=t + 1)
    return jnp.where(step_end_T, beta * sums[step_of_T], 0.0).astype(logp_T.dtype)


def make_loss_fn(kind: str, graphdef: Any, rest: Any, beta: float) -> Callable:
    """``loss(params, batch) -> (mean loss, (loss Masked, accuracy Masked))`` for one kind."""

    def model_of(params):
        return nnx.merge(graphdef, params, rest)

    if kind == "implicit_prm":

        def terms(params, batch):
            logp = sequence_logp(model_of(params), batch["tokens"], batch["attention_mask"])
            return implicit_prm_loss(logp, batch, beta)
    else:
        per_kind = prm_loss if kind == "prm" else orm_loss

        def terms(params, batch):
            logits = head_logits(model_of(params), batch["tokens"], batch["attention_mask"])
            return per_kind(logits, batch)

    def loss(params, batch):
        loss_sums, correct = terms(params, batch)
        return loss_sums.mean, (loss_sums, correct)

    return loss
