"""The models of a PPO run, built from its config in their sharded layout.

Trained: the policy, the critic under GAE only (a critic-free estimator builds none: no
parameters, no optimizer state, nothing in the checkpoint), and under ``reward.implicit_prm_online``
the implicit PRM (``rl.trainers.implicit_prm_online``). Frozen: the reference (a copy of the
initial policy), and as the reward config asks the PRM (in the policy's token space, or a
published PRM scored in its own, ``rl.algo.prm_scorer``), the ORM, and the implicit PRM with its
reference (``implicit_prm.ref_path``; by default the PPO reference).
"""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from models.likelihood_prm import LikelihoodPRM
from models.reward_io import META_FILE
from rl.algo import update as upd
from rl.algo.prm_scorer import load_published_prm, uses_published_format
from rl.config import ConfigError, ModelSpec, RLConfig
from rl.runtime import model_builder
from rl.trainers.implicit_prm_online import OnlineImplicitPRM


@dataclasses.dataclass
class PPOModels:
    models: upd.Models  # graphdefs of the trained models (critic None when critic-free)
    state: upd.TrainState
    state_sharding: upd.TrainState
    policy_tx: Any
    critic_tx: Any  # None when critic-free
    frozen_defs: dict[str, Any]  # "ref", and "prm" / "orm" / "implicit" / "implicit_ref"
    frozen_params: dict[str, Any]
    published_prm: Any  # a models.prm.ProcessRewardModel scored outside the score program
    # reward.implicit_prm_online: the implicit PRM (and its own reference) trained, not frozen
    online_prm: OnlineImplicitPRM | None = None
    # A likelihood PRM whose language model has the reference's parameters: scoring reuses the
    # reference's log-probs for it (rl.algo.scoring.make_score_fn)
    prm_lm_is_ref: bool = False


def same_parameters(a: Any, b: Any) -> bool:
    """Whether two models' states hold the same arrays at the same paths (shapes, dtypes and
    every value equal), compared on the devices where they live: nothing is gathered to the
    host, so it serves sharded models too."""
    flat_a = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(a)[0]}
    flat_b = {jax.tree_util.keystr(k): v for k, v in jax.tree_util.tree_flatten_with_path(b)[0]}
    if flat_a.keys() != flat_b.keys():
        return False
    keys = sorted(flat_a)
    if any(
        jnp.shape(flat_a[k]) != jnp.shape(flat_b[k])
        or jnp.result_type(flat_a[k]) != jnp.result_type(flat_b[k])
        for k in keys
    ):
        return False
    equal = jax.jit(
        lambda xs, ys: jnp.all(jnp.stack([jnp.array_equal(x, y) for x, y in zip(xs, ys)]))
    )
    return bool(equal([flat_a[k] for k in keys], [flat_b[k] for k in keys]))


def saved_implicit_beta(spec: ModelSpec) -> float | None:
    """The beta an implicit PRM was trained with, from its ``reward_model.json`` (None: not
    recorded, e.g. a random preset)."""
    if not spec.path or not (Path(spec.path) / META_FILE).exists():
        return None
    beta = json.loads((Path(spec.path) / META_FILE).read_text()).get("beta")
    return None if beta is None else float(beta)


def check_implicit_beta(cfg: RLConfig) -> None:
    """The implicit PRM's rewards are beta * log-ratios: a beta other than the one it was trained
    with rescales every reward silently, so a mismatch is an error."""
    saved = saved_implicit_beta(cfg.implicit_prm)
    if saved is not None and abs(saved - cfg.reward.implicit_prm_beta) > 1e-12 * max(saved, 1.0):
        raise ConfigError(
            f"config.reward.implicit_prm_beta={cfg.reward.implicit_prm_beta!r}: the implicit "
            f"PRM at {cfg.implicit_prm.path} was trained with beta={saved!r} (its {META_FILE}); "
            f"set --config.reward.implicit_prm_beta={saved!r}"
        )


def build_ppo_models(cfg: RLConfig, tokenizer: Any, mesh, rules) -> PPOModels:
    policy = model_builder.build_causal_lm(cfg.policy, tokenizer, mesh, rules)
    frozen = {"ref": model_builder.frozen_copy(policy, cfg.policy.reference_param_dtype)}
    critic = None
    if cfg.ppo.advantage == "gae":
        critic = model_builder.build_critic(policy, mesh, rules)
    # A configured PRM is loaded even at weight 0: its return is then still logged
    # (reward/prm_raw), which is how runs without a PRM reward are checked for hacking.
    published_prm = None
    if cfg.prm.configured and uses_published_format(cfg.prm):
        published_prm = load_published_prm(cfg.prm, mesh, rules)
    elif cfg.prm.configured:
        frozen["prm"] = model_builder.build_reward_model(cfg.prm, tokenizer, mesh, rules)
    if cfg.reward.uses_orm:
        frozen["orm"] = model_builder.build_reward_model(cfg.orm, tokenizer, mesh, rules)
    if cfg.reward.uses_implicit_prm:
        check_implicit_beta(cfg)
        spec = cfg.implicit_prm
        frozen["implicit"] = model_builder.build_causal_lm(spec, tokenizer, mesh, rules)
        if spec.ref_path:
            ref_spec = dataclasses.replace(spec, name="implicit_prm.ref", path=spec.ref_path)
            frozen["implicit_ref"] = model_builder.build_causal_lm(ref_spec, tokenizer, mesh, rules)
    total = cfg.train.iterations * cfg.ppo.epochs * cfg.ppo.minibatches
    policy_tx = upd.make_optimizer(cfg.optim, cfg.optim.learning_rate, total)
    critic_tx = None
    if critic is not None:
        critic_tx = upd.make_optimizer(cfg.optim, cfg.optim.critic_learning_rate, total)
    models, state, state_sharding = upd.init_train_state(
        policy, critic, policy_tx, critic_tx, mesh, rules
    )
    prm_lm_is_ref = isinstance(frozen.get("prm"), LikelihoodPRM) and same_parameters(
        nnx.state(frozen["prm"].lm), nnx.state(frozen["ref"])
    )
    frozen_defs, frozen_params = {}, {}
    for name, model in frozen.items():
        frozen_defs[name], frozen_params[name] = nnx.split(model)
    online_prm = None
    if cfg.reward.implicit_prm_online:  # trained: out of the frozen score pass
        parts = {
            n: (frozen_defs.pop(n), frozen_params.pop(n))
            for n in ("implicit", "implicit_ref")
            if n in frozen_defs
        }
        online_prm = OnlineImplicitPRM(
            cfg, parts["implicit"], parts.get("implicit_ref"), mesh, rules
        )
    return PPOModels(
        models,
        state,
        state_sharding,
        policy_tx,
        critic_tx,
        frozen_defs,
        frozen_params,
        published_prm,
        online_prm,
        prm_lm_is_ref,
    )
