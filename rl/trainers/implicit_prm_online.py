"""The online implicit PRM of a PPO run (PRIME, ``reward.implicit_prm_online``): its trained
state, its update on every iteration's rollouts, and its place in the checkpoint.

Order within an iteration, as PRIME's default ``update: before`` (verl's recipe
``recipe/prime/prime_ray_trainer.py``, ``RayPRIMETrainer.compute_reward``: ``update_rm`` then
``compute_rm_score``, the "double-forward" mode of ``recipe/prime/config/prime_trainer.yaml``):
the score pass of the frozen models and the policy runs first (the online PRM is not in it), then
``update_and_score`` trains the implicit PRM on this iteration's rows labelled with their outcome
(the success reward the policy is trained on: the verifier's verdict, 0 for a truncated response,
flipped under ``reward.success_flip_prob``) and reads the implicit log-probs the rewards are shaped
from with the updated parameters. Its reference is the implicit PRM's own
(``implicit_prm.ref_path``: scored here, frozen) or, by default, the PPO reference, whose log-probs
the score pass already has (verl's ``ref_type: freeze`` with ``ref_path`` = the SFT model the
policy starts from).

State: a ``rl.reward_models.training.RMState`` (parameters in their mesh layout, AdamW moments
following them, step count replicated) on the run's mesh. Checkpoint: the trainer's ``state`` item
holds the ``TrainState`` fields and, beside them, ``implicit_prm`` (``checkpoint_tree``); a run
without the online PRM saves the plain ``TrainState`` as before, so its checkpoints, and
``rl.evaluate``'s partial restore of ``policy``, are unchanged.
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import NamedSharding, PartitionSpec

from rl.algo import update as upd
from rl.algo.row_chunks import row_chunked
from rl.config import ConfigError, RLConfig
from rl.reward_models import implicit_prm_update as prm_update
from rl.reward_models.losses import implicit_prm_loss
from rl.reward_models.training import RMState, rm_state_shardings
from rl.runtime.distributed import to_global, to_host

CHECKPOINT_KEY = "implicit_prm"


class OnlineImplicitPRM:
    """``model`` / ``ref``: (graphdef, state) of the implicit PRM and of its own reference (None:
    the PPO reference's log-probs are used)."""

    def __init__(
        self, cfg: RLConfig, model: tuple[Any, Any], ref: tuple[Any, Any] | None, mesh, rules
    ):
        rc = cfg.reward
        self.minibatches = rc.implicit_prm_minibatches
        rows = cfg.data.prompts_per_batch * cfg.data.samples_per_prompt
        self.per_minibatch = rows // self.minibatches
        shards = mesh.shape["data"] * mesh.shape["fsdp"]
        if (self.per_minibatch // rc.implicit_prm_microbatches) % shards:
            raise ConfigError(
                f"config.reward.implicit_prm_minibatches={self.minibatches}: a microbatch of "
                f"{self.per_minibatch // rc.implicit_prm_microbatches} rows (with "
                f"reward.implicit_prm_microbatches={rc.implicit_prm_microbatches}) does not split "
                f"over the mesh's data x fsdp = {shards} devices"
            )
        graphdef, params = model
        self.ref = ref
        tx = prm_update.make_optimizer(rc.implicit_prm_lr, rc.implicit_prm_grad_clip)
        self.replicated = NamedSharding(mesh, PartitionSpec())
        batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
        self.sharding = rm_state_shardings(tx, params, mesh, rules)
        self.state = RMState(
            step=jax.device_put(jnp.zeros((), jnp.int32), self.replicated),
            params=params,
            opt_state=jax.jit(tx.init, out_shardings=self.sharding.opt_state)(params),
        )
        p, beta = cfg.data.max_prompt_len, rc.implicit_prm_beta
        temperature = upd.training_temperature(cfg.rollout.temperature)
        update = prm_update.make_update_fn(
            graphdef,
            tx,
            p,
            beta,
            temperature=temperature,
            microbatches=rc.implicit_prm_microbatches,
        )
        self._update = jax.jit(
            update,
            in_shardings=(self.sharding, batch_sharding),
            out_shardings=(self.sharding, self.replicated),
            donate_argnums=(0,),
        )

        def logp_of(graphdef):
            """[B, R] log-probs in blocks of rollout.score_rows rows, as the score pass reads."""
            fn = lambda params, tokens, mask: prm_update.response_logp(  # noqa: E731
                graphdef, params, tokens, mask, p, temperature
            )
            return row_chunked(fn, cfg.rollout.score_rows, (1, 2))

        implicit_logp = logp_of(graphdef)

        def score(params, batch):
            """The rewards' log-probs after the update, and its loss and accuracy on the rows."""
            logp = implicit_logp(params, batch["tokens"], batch["attention_mask"])
            labelled = dict(batch, outcome_mask=jnp.ones_like(batch["outcome"], dtype=bool))
            loss, correct = implicit_prm_loss(logp, labelled, beta)
            return logp, {"loss_after": loss.mean, "accuracy_after": correct.mean}

        self._score = jax.jit(score)
        if ref is not None:
            self._ref_logp = jax.jit(logp_of(ref[0]))
        self._take = jax.jit(
            lambda batch, idx: jax.tree.map(lambda x: x[idx], batch), out_shardings=batch_sharding
        )

    def update_and_score(
        self, scores: dict[str, jax.Array], seq, seq_mask, response, outcome
    ) -> tuple[dict[str, jax.Array], dict[str, float]]:
        """Trains on the iteration's rows (global arrays on the mesh: ``seq`` / ``seq_mask``
        ``[B, S]``, ``response`` ``[B, R]``, ``outcome`` ``[B]``), then returns ``scores`` with
        ``implicit_logp`` (updated model) and ``implicit_ref_logp``, and the ``implicit_prm/*``
        metrics (loss, accuracy, grad_norm: means over the minibatches, before each step;
        loss_after, accuracy_after: all rows, after the update; skipped: steps not applied)."""
        batch = {
            "tokens": seq,
            "attention_mask": seq_mask,
            "response_mask": response,
            "outcome": outcome,
        }
        if self.ref is None:
            batch["ref_logp"] = scores["ref_logp"]
        else:
            batch["ref_logp"] = self._ref_logp(self.ref[1], seq, seq_mask)
        sums: dict[str, float] = {}
        per = self.per_minibatch
        for m in range(self.minibatches):
            idx = to_global(np.arange(m * per, (m + 1) * per), self.replicated)
            self.state, mets = self._update(self.state, self._take(batch, idx))
            for k, v in to_host(mets).items():
                sums[k] = sums.get(k, 0.0) + float(v)
        logp, after = self._score(self.state.params, batch)
        metrics = {
            f"implicit_prm/{k}": v if k == "skipped" else v / self.minibatches
            for k, v in sums.items()
        }
        metrics.update({f"implicit_prm/{k}": float(v) for k, v in to_host(after).items()})
        return dict(scores, implicit_logp=logp, implicit_ref_logp=batch["ref_logp"]), metrics


def checkpoint_tree(state: upd.TrainState, online: OnlineImplicitPRM | None) -> Any:
    """What the trainer saves as its ``state`` item: the TrainState, or (online) its fields with
    the implicit PRM's state beside them."""
    if online is None:
        return state
    fields = {f.name: getattr(state, f.name) for f in dataclasses.fields(state)}
    return {**fields, CHECKPOINT_KEY: online.state}


def from_checkpoint_tree(tree: Any, online: OnlineImplicitPRM | None) -> upd.TrainState:
    """Inverse of ``checkpoint_tree``: sets ``online.state`` and returns the TrainState."""
    if online is None:
        return tree
    online.state = tree[CHECKPOINT_KEY]
    return upd.TrainState(**{k: v for k, v in tree.items() if k != CHECKPOINT_KEY})
