"""Scoring a rollout with the frozen and trained models, and turning scores into per-token rewards.

Two jitted functions per run, each compiled once per response width (``rl.algo.buckets``):

* ``score``: one pass of every model over the rollout's sequences: the policy's log-probs of the
  sampled tokens when asked (PPO's old log-probs, recomputed with the training forward's chunked
  head so the ratio starts at exactly 1, ``rollout.old_logp="recompute"``; by default the trainer
  takes the sampler's own, ``rl.config.RolloutConfig``), the critic's values, the reference's
  log-probs (KL), and the PRM / ORM / implicit-PRM scores. ``rl.algo.token_stats``: no [B, S, V]
  logits.
* ``shape``: the per-token reward (``rewards.shaping.combine``), from those scores and the host-side
  verifier result and reasoning-pattern reward (``scores["pattern"]``), via the pure transforms of
  ``rewards.shaping`` under ``jax.vmap``; then GAE and whitening.

Layout as in ``rl.algo.update``: sequences ``[B, S]`` = prompt (P, left-padded) + response (R);
response arrays ``[B, R]``.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.likelihood_prm import LikelihoodPRM
from rewards import shaping
from rewards import steps as steps_lib
from rewards.likelihood import likelihood_step_scores
from rl.algo import advantages as advantages_lib
from rl.algo import losses as ppo
from rl.algo import token_stats
from rl.algo.gae import gae
from rl.config import PPOConfig, RewardConfig


class ResponseStructure(NamedTuple):
    """Where a rollout's rewards go, decided on the host from its tokens and finish reasons."""

    truncated_B: np.ndarray  # bool: stopped by the length limit
    step_end_BxR: np.ndarray  # bool: last token of each complete step
    steps: list[list[str]]  # each row's complete steps' texts (step k <-> k-th step end)
    last_BxR: np.ndarray  # bool: the EOS-ended response's last token (where the ORM is read)


def response_structure(
    tokenizer: Any,
    tokens_BxR: np.ndarray,
    response_BxR: np.ndarray,
    truncated_B: np.ndarray,
    sep: str,
) -> ResponseStructure:
    """Step ends and texts of complete steps (a truncated response's trailing fragment is no
    step), and the ORM's read position: the last token of a response that ended by EOS or a stop
    string; none for a truncated one (``truncated_B``: the sampler's finish reason is LENGTH)."""
    truncated_B = np.asarray(truncated_B, bool)
    step_end_BxR, steps = steps_lib.batch_steps_and_ends(
        tokenizer, tokens_BxR, response_BxR, sep, truncated_B
    )
    last_BxR = np.asarray(jax.vmap(shaping.last_token)(jnp.asarray(response_BxR, bool)))
    return ResponseStructure(truncated_B, step_end_BxR, steps, last_BxR & ~truncated_B[:, None])


def make_score_fn(
    graphdefs: dict[str, Any],
    prompt_len: int,
    temperature: float = 1.0,
    *,
    policy_logp: bool = True,
    prm_lm_is_ref: bool = False,
):
    """``score(params, tokens_BxS, attention_mask_BxS, last_BxR) -> dict of [B, R] / [B] arrays``.

    ``policy_logp=False`` leaves out the policy's pass ("old_logp"): the trainer has the sampler's
    log-probs of the same tokens under the same parameters (``rollout.old_logp="sampler"``), and the
    pass is a third of scoring's FLOPs at a vocabulary of 152k.

    ``graphdefs`` names the models present: "policy" and "ref" always; "critic" under GAE (its
    ``values``); "prm" (a reward model sharing the policy's tokenizer, scored at the response's own
    step-end tokens), "orm" (scored at the last response token) and "implicit" (a causal LM whose
    log-ratio to its reference is the implicit PRM; "implicit_ref" when that reference is not the
    PPO reference) when configured. Log-probs are of the distribution the sampler drew from
    (logits / ``temperature``), for the implicit PRM too (as verl's PRIME scores them).

    ``prm_lm_is_ref``: a likelihood PRM's language model has the reference's parameters
    (``rl.trainers.ppo_models.same_parameters``; the embedded default's PRM reads the SFT policy,
    which is the reference) and ``temperature`` is 1, so its untempered log-probs ARE
    ``ref_logp``, computed by the same program on the same inputs: the pass is left out (one
    model's forward of four or five) and the values are bit-identical.
    """
    if prm_lm_is_ref and temperature != 1.0:
        raise ValueError(
            "make_score_fn: prm_lm_is_ref needs temperature 1 (the likelihood PRM reads "
            f"untempered log-probs), got temperature={temperature!r}"
        )
    p = prompt_len

    def score(params, tokens_BxS, attention_mask_BxS, last_BxR):
        def logp_of(name):
            # Hidden states of the response positions only, through the chunked head: no [B, S, V]
            # logits (rl.algo.token_stats).
            model = nnx.merge(graphdefs[name], params[name])
            logp, _ = token_stats.response_token_stats(
                model,
                tokens_BxS,
                attention_mask_BxS,
                p,
                temperature=temperature,
                with_entropy=False,
            )
            return logp

        out = {"ref_logp": logp_of("ref")}
        if policy_logp:
            out["old_logp"] = logp_of("policy")
        if "critic" in graphdefs:
            critic = nnx.merge(graphdefs["critic"], params["critic"])
            out["values"] = critic(tokens_BxS, attention_mask_BxS)[:, p - 1 : -1]
        if "prm" in graphdefs:
            prm = nnx.merge(graphdefs["prm"], params["prm"])
            if isinstance(prm, LikelihoodPRM):
                # Its head here, combined with its LM's untempered log-probs in `shape`, which
                # has the step ends (models.likelihood_prm).
                out["prm_scores"] = prm.head_scores(tokens_BxS, attention_mask_BxS)[:, p:]
                if prm_lm_is_ref:
                    out["prm_lm_logp"] = out["ref_logp"]
                else:
                    out["prm_lm_logp"], _ = token_stats.response_token_stats(
                        prm.lm,
                        tokens_BxS,
                        attention_mask_BxS,
                        p,
                        temperature=1.0,
                        with_entropy=False,
                    )
                b = tokens_BxS.shape[0]
                out["prm_likelihood_weights"] = jnp.broadcast_to(prm.weights[...], (b, 3))
            else:
                out["prm_scores"] = prm(tokens_BxS, attention_mask_BxS)[:, p:]
        if "orm" in graphdefs:
            orm = nnx.merge(graphdefs["orm"], params["orm"])
            scores_BxR = orm(tokens_BxS, attention_mask_BxS)[:, p:]
            out["orm_score"] = jnp.sum(jnp.where(last_BxR, scores_BxR, 0.0), axis=-1)
        if "implicit" in graphdefs:
            out["implicit_logp"] = logp_of("implicit")
            ref = "implicit_ref" if "implicit_ref" in graphdefs else "ref"
            out["implicit_ref_logp"] = out["ref_logp"] if ref == "ref" else logp_of(ref)
        return out

    return score


def _row_reward(
    cfg: RewardConfig,
    prm_T,
    step_end_T,
    response_T,
    success,
    pattern,
    orm,
    logp_T,
    ref_logp_T,
    implicit_logp_T,
    implicit_ref_logp_T,
):
    """The per-token reward of one response, and its parts (for metrics)."""
    prm_shaped_T = jnp.zeros_like(logp_T)
    if prm_T is not None:
        prm_shaped_T = shaping.shape_prm(
            prm_T,
            step_end_T,
            cfg.prm_transform,
            cfg.prm_eta,
            min_form_temperature=cfg.prm_min_form_temperature,
            potential_terminal=cfg.prm_potential_terminal,
        )
    process_T = cfg.prm_weight * prm_shaped_T
    if implicit_logp_T is not None:
        process_T = process_T + cfg.implicit_prm_weight * shaping.implicit_prm(
            implicit_logp_T, implicit_ref_logp_T, step_end_T, response_T, cfg.implicit_prm_beta
        )
    if cfg.gated:
        process_T = shaping.gated(process_T, step_end_T, success, cfg.gate_threshold)
    kl_T = shaping.kl_penalty(logp_T, ref_logp_T, response_T, cfg.kl_estimator)
    kl_coef = cfg.kl_coef if cfg.kl_in == "reward" else 0.0
    rewards_T = shaping.combine(
        response_T,
        # The outcome: the verifier's success and the reasoning-pattern reward (rl.algo.patterns).
        success=cfg.success_weight * success + cfg.pattern_weight * pattern,
        orm=orm,
        prm_T=process_T,
        kl_T=kl_T,
        orm_weight=cfg.orm_weight,
        prm_weight=1.0,
        kl_coef=kl_coef,
    )
    parts = {
        "prm_raw": jnp.sum(jnp.where(step_end_T, prm_T, 0.0)) if prm_T is not None else 0.0,
        "prm_shaped": jnp.sum(prm_shaped_T),
        "process": jnp.sum(process_T),
        "kl": jnp.sum(kl_T),
        "outcome": cfg.success_weight * success + cfg.pattern_weight * pattern,
    }
    return rewards_T, parts


def make_shape_fn(reward_cfg: RewardConfig, ppo_cfg: PPOConfig, samples_per_prompt: int = 1):
    """``shape(scores, step_end_BxR, response_BxR, success_B) -> (batch arrays, reward
    metrics)``."""

    def shape(scores, step_end_BxR, response_BxR, success_B):
        b = response_BxR.shape[0]
        prm = scores.get("prm_scores")
        if "prm_lm_logp" in scores:  # a LikelihoodPRM's head and LM log-probs, combined here
            prm = jax.vmap(likelihood_step_scores)(
                prm,
                scores["prm_lm_logp"],
                step_end_BxR,
                response_BxR,
                scores["prm_likelihood_weights"],
            )
        orm = scores.get("orm_score", jnp.zeros((b,), jnp.float32))
        implicit = scores.get("implicit_logp")
        # The reasoning-pattern reward where it applies (rl.algo.patterns.outcome_rewards).
        pattern = scores.get("pattern", jnp.zeros((b,), jnp.float32))
        row = lambda *a: _row_reward(reward_cfg, *a)  # noqa: E731
        rewards_BxR, parts = jax.vmap(row)(
            prm,
            step_end_BxR,
            response_BxR,
            success_B,
            pattern,
            orm,
            scores["old_logp"],
            scores["ref_logp"],
            implicit,
            # The implicit PRM's own reference when it has one, else the PPO reference.
            scores.get("implicit_ref_logp", scores["ref_logp"] if implicit is not None else None),
        )
        values = scores.get("values")
        out = {"rewards": rewards_BxR}
        if values is not None:
            advantages, out["returns"] = gae(
                rewards_BxR, values, response_BxR, ppo_cfg.gamma, ppo_cfg.lam
            )
            if ppo_cfg.critic_lam is not None and ppo_cfg.critic_lam != ppo_cfg.lam:
                # The critic's targets with their own lambda (the actor keeps ppo.lam's).
                _, out["returns"] = gae(
                    rewards_BxR, values, response_BxR, ppo_cfg.gamma, ppo_cfg.critic_lam
                )
        estimator = ppo_cfg.advantage
        if (estimator == "gae") != (values is not None):
            raise ValueError(
                f"ppo.advantage={estimator!r} {'needs' if estimator == 'gae' else 'has no'} "
                "critic values"
            )
        group_B = advantages_lib.group_index(b, samples_per_prompt)
        if estimator == "grpo":
            at_BxR = step_end_BxR | jax.vmap(shaping.last_token)(response_BxR)
            advantages = advantages_lib.grpo(rewards_BxR, at_BxR, response_BxR, group_B)
        elif estimator == "rloo":
            advantages = advantages_lib.rloo(rewards_BxR, response_BxR, group_B)
        elif estimator == "reinforce_pp":
            advantages = advantages_lib.reinforce_pp(rewards_BxR, response_BxR)
        # REINFORCE++ is whitened by definition; the others as ppo.whiten_advantages says.
        if ppo_cfg.whiten_advantages and estimator != "reinforce_pp":
            advantages = ppo.whiten(advantages, response_BxR)
        out["advantages"] = advantages
        metrics = {f"reward/{k}": jnp.mean(v) for k, v in parts.items()}
        metrics["reward/success"] = jnp.mean(success_B)
        if reward_cfg.pattern_weight > 0:
            metrics["reward/pattern"] = jnp.mean(pattern)
        metrics["reward/orm"] = jnp.mean(orm)
        metrics["reward/total"] = jnp.mean(jnp.sum(rewards_BxR, axis=-1))
        if values is not None:
            metrics["value/explained_variance"] = ppo.explained_variance(
                values, out["returns"], response_BxR
            )
            metrics["value/mean"] = ppo.masked(values, response_BxR).mean
        return out, metrics

    return shape
