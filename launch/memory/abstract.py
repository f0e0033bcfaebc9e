"""Every model of a PPO run, abstractly: shapes, dtypes and logical axes, nothing allocated.

`nnx.eval_shape` builds each model the trainer would load (rl/trainers/ppo_trainer.py) without
weights, so the analytic count and the compiled programs see the run's real shapes. Shapes come from
a model section's `preset`, else its checkpoint's config.json when the directory exists, else the
config's `aot_presets` (the paper configs name the published shapes there).
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Mapping
from typing import Any

from flax import nnx

from models import hf_io, presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel, ValueModel
from models.prm import abstract_prm
from rl.config import ConfigError, ModelSpec


@dataclasses.dataclass
class Abstract:
    """One model: config, where its shapes came from, graphdef and abstract state."""

    config: Any
    source: str
    graphdef: Any
    state: Any


def model_config(name: str, spec: ModelSpec, aot_presets: Mapping[str, str]):
    """A model section's ModelConfig without reading weights: preset, config.json or aot_presets;
    with where its shapes came from."""
    numerics = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, remat=spec.remat)

    def from_preset(preset):
        values = presets.get_config(preset).to_dict()
        values.update(numerics, **dict(spec.overrides))
        return ModelConfig.from_dict(values)

    if spec.preset:
        return from_preset(spec.preset), f"preset {spec.preset}"
    if spec.path and os.path.exists(os.path.join(spec.path, "config.json")):
        return (
            hf_io.load_config(spec.path, **numerics, **dict(spec.overrides)),
            os.path.join(spec.path, "config.json"),
        )
    fallback = aot_presets.get(name, "")
    if not fallback:
        raise ConfigError(
            f"config.{name}.path={spec.path!r}: no config.json there, and no "
            f"aot_presets.{name} to take shapes from"
        )
    return from_preset(fallback), f"preset {fallback} (no checkpoint at {spec.path})"


def _build(make, config, source) -> Abstract:
    graphdef, state = nnx.split(nnx.eval_shape(make))
    return Abstract(config, source, graphdef, state)


def abstract_models(rl, aot_presets: Mapping[str, str] | None = None) -> dict[str, Abstract]:
    """policy, critic (GAE only), and the frozen models the trainer would load (ref always; prm when
    configured; orm / implicit when their reward weight is > 0). `rl` is the run's RLConfig;
    `aot_presets` the config's shapes for model sections whose checkpoint is absent."""
    aot_presets = aot_presets or {}
    pcfg, psrc = model_config("policy", rl.policy, aot_presets)
    out = {"policy": _build(lambda: CausalLM(pcfg, rngs=nnx.Rngs(0)), pcfg, psrc)}
    if rl.ppo.advantage == "gae":  # critic-free estimators build no critic
        out["critic"] = _build(lambda: ValueModel(pcfg, rngs=nnx.Rngs(0)), pcfg, psrc)
    # The trainer's reference is a copy of the policy (same dtypes):
    # rl/runtime/model_builder.frozen_copy.
    out["ref"] = out["policy"]
    if rl.policy.reference_param_dtype:  # stored in its own dtype (frozen_copy)
        rcfg = dataclasses.replace(pcfg, param_dtype=rl.policy.reference_param_dtype)
        out["ref"] = _build(lambda: CausalLM(rcfg, rngs=nnx.Rngs(0)), rcfg, psrc)
    for name, key, used in (
        ("prm", "prm", rl.prm.configured),
        ("orm", "orm", rl.reward.uses_orm),
        ("implicit", "implicit_prm", rl.reward.uses_implicit_prm),
    ):
        if not used:
            continue
        spec = getattr(rl, key)
        mcfg, src = model_config(key, spec, aot_presets)
        if name == "implicit":
            out[name] = _build(lambda c=mcfg: CausalLM(c, rngs=nnx.Rngs(0)), mcfg, src)
        elif name == "prm" and spec.published_format:
            # A published PRM with the head its format loads (models.prm), scored on its own
            # input bucket (rl.algo.prm_scorer), not on the policy's sequences.
            out[name] = _build(lambda c=mcfg, f=spec.format: abstract_prm(c, f), mcfg, src)
        else:
            # Token ids only matter for shapes here: any two ids of the vocabulary.
            ids = dict(good_token_id=0, bad_token_id=1) if spec.kind == "token_prob" else {}
            out[name] = _build(
                lambda c=mcfg, k=spec.kind, i=ids: RewardModel(c, k, rngs=nnx.Rngs(0), **i),
                mcfg,
                src,
            )
    return out
