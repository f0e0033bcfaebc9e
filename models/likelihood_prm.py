"""A PRM that also reads a frozen language model's likelihood of the steps it scores.

    prm = LikelihoodPRM(trained_prm, sft_policy, weights=(a, b, c))
    scores_BxS = prm.step_scores(ids_BxS, attention_BxS, response_BxS, step_end_BxS)

The step score is ``rewards.likelihood.likelihood_step_scores``: the trained PRM's probability
and the language model's least likely step so far, combined with three weights fitted to the step
labels (``rl.reward_models.likelihood``); the module docstring there says why. Unlike a plain
``RewardModel``, the score needs the step ends and the response mask (a step's tokens run from the
previous step end), so ``__call__`` refuses: a caller that does not know about step ends must not
silently get the uncombined head. Saved and loaded by ``models.reward_io`` (the language model in
a ``likelihood_lm/`` subdirectory, the weights in ``reward_model.json``).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models.decoder import CausalLM
from models.heads import RewardModel
from rewards.likelihood import likelihood_step_scores

LM_DIR = "likelihood_lm"


class LikelihoodWeights(nnx.Variable):
    """(a, b, c) of ``rewards.likelihood``: fitted in closed form, never by a gradient step (not
    an ``nnx.Param``, so no optimizer touches it)."""


def token_logp(lm: CausalLM, ids_BxS: jax.Array, attention_BxS: jax.Array) -> jax.Array:
    """log pi(ids[t] | ids[<t]) at every position t (0 at t = 0), fp32, untempered."""
    logits = lm(ids_BxS, attention_BxS).astype(jnp.float32)
    logp = jax.nn.log_softmax(logits[:, :-1], axis=-1)
    picked = jnp.take_along_axis(logp, ids_BxS[:, 1:, None], axis=-1)[..., 0]
    return jnp.concatenate([jnp.zeros_like(picked[:, :1]), picked], axis=1)


class LikelihoodPRM(nnx.Module):
    """A trained PRM (``prm``, sigmoid head) + a frozen causal LM (``lm``) + combining weights."""

    def __init__(self, prm: RewardModel, lm: CausalLM, weights: Sequence[float]):
        if not isinstance(prm, RewardModel) or prm.head.kind != "scalar" or not prm.head.sigmoid:
            raise ValueError("LikelihoodPRM: prm must be a RewardModel with a sigmoid scalar head")
        if prm.config.vocab_size != lm.config.vocab_size:
            raise ValueError(
                f"LikelihoodPRM: the PRM's vocab_size={prm.config.vocab_size} differs from the "
                f"language model's {lm.config.vocab_size}: they must share a tokenizer"
            )
        w = jnp.asarray(weights, jnp.float32)
        if w.shape != (3,) or not bool(jnp.all(jnp.isfinite(w))):
            raise ValueError(f"LikelihoodPRM: weights={list(weights)!r}: need 3 finite numbers")
        self.prm = prm
        self.lm = lm
        self.config = prm.config
        self.weights = LikelihoodWeights(w)

    def __call__(self, *args, **kwargs):
        raise TypeError(
            "LikelihoodPRM scores steps, not tokens: call step_scores(ids, attention_mask, "
            "response_mask, step_end)"
        )

    def head_scores(self, ids_BxS: jax.Array, attention_BxS: jax.Array) -> jax.Array:
        """The trained PRM's own probabilities at every position."""
        return self.prm(ids_BxS, attention_BxS)

    def lm_logp(self, ids_BxS: jax.Array, attention_BxS: jax.Array) -> jax.Array:
        return token_logp(self.lm, ids_BxS, attention_BxS)

    def step_scores(
        self,
        ids_BxS: jax.Array,
        attention_BxS: jax.Array,
        response_BxS: jax.Array,
        step_end_BxS: jax.Array,
    ) -> jax.Array:
        """Combined scores at step ends, the head's probabilities elsewhere ([B, S], fp32)."""
        return combine(
            self.head_scores(ids_BxS, attention_BxS),
            self.lm_logp(ids_BxS, attention_BxS),
            step_end_BxS,
            response_BxS,
            self.weights[...],
        )


def combine(prm_BxT, logp_BxT, step_end_BxT, response_BxT, weights_3) -> jax.Array:
    """``rewards.likelihood.likelihood_step_scores`` over a batch of rows, one weight triple."""
    return jax.vmap(likelihood_step_scores, in_axes=(0, 0, 0, 0, None))(
        prm_BxT, logp_BxT, step_end_BxT, response_BxT, weights_3
    )
