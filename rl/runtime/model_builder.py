"""Building the run's models from config sections, directly in their sharded layout.

A model section names either a Hugging Face checkpoint directory (``path``) or a random-weight
preset from ``models/presets.py`` (``preset``, with ``seed``); random presets take the vocabulary
size and special-token ids from the run's tokenizer. Reward models add a head ``kind``.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from models import hf_io
from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardHead, RewardModel, ValueModel
from models.reward_io import META_FILE, load_reward_model
from models.sharding import create_sharded, shard_model
from rl.config import ConfigError, ModelSpec


def model_config(spec: ModelSpec, tokenizer: Any) -> ModelConfig:
    """The ModelConfig of a random preset, sized to the tokenizer."""
    values = model_presets.get_config(spec.preset).to_dict()
    values.update(
        vocab_size=len(tokenizer),
        dtype=spec.dtype,
        param_dtype=spec.param_dtype,
        remat=spec.remat,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
        bos_token_id=tokenizer.bos_token_id,
    )
    values.update(dict(spec.overrides))
    return ModelConfig.from_dict(values)


def _reward_head(spec: ModelSpec, tokenizer: Any) -> RewardHead:
    if spec.kind != "token_prob":
        return RewardHead(spec.kind)
    ids = []
    for field in ("good_token", "bad_token"):
        token = getattr(spec, field)
        tid = tokenizer.convert_tokens_to_ids(token) if token else None
        if tid is None or tid == tokenizer.unk_token_id:
            raise ConfigError(
                f"config.{spec.name}.{field}={token!r}: not a single token of the "
                "tokenizer (kind='token_prob' needs one)"
            )
        ids.append(int(tid))
    return RewardHead("token_prob", good_token_id=ids[0], bad_token_id=ids[1])


def build_causal_lm(spec: ModelSpec, tokenizer: Any, mesh, rules) -> CausalLM:
    if spec.path:
        return hf_io.load_causal_lm(
            spec.path,
            jnp.dtype(spec.dtype),
            param_dtype=jnp.dtype(spec.param_dtype),
            mesh=mesh,
            rules=rules,
            remat=spec.remat,
            **dict(spec.overrides),
        )
    config = model_config(spec, tokenizer)
    return create_sharded(lambda: CausalLM(config, rngs=nnx.Rngs(spec.seed)), mesh, rules)


def build_reward_model(spec: ModelSpec, tokenizer: Any, mesh, rules) -> RewardModel:
    """A frozen ORM/PRM. A directory written by ``models.reward_io.save_reward_model`` says its own
    head (kind, sigmoid) in ``reward_model.json``, which takes precedence over ``kind``."""
    if spec.path and (Path(spec.path) / META_FILE).exists():
        model, _ = load_reward_model(
            spec.path,
            dtype=jnp.dtype(spec.dtype),
            param_dtype=jnp.dtype(spec.param_dtype),
            mesh=mesh,
            rules=rules,
        )
        return model
    head = _reward_head(spec, tokenizer)
    if spec.path:
        return hf_io.load_causal_lm(
            spec.path,
            jnp.dtype(spec.dtype),
            param_dtype=jnp.dtype(spec.param_dtype),
            mesh=mesh,
            rules=rules,
            head=head,
            **dict(spec.overrides),
        )
    config = model_config(spec, tokenizer)
    return create_sharded(
        lambda: RewardModel(
            config,
            head.kind,
            rngs=nnx.Rngs(spec.seed),
            good_token_id=head.good_token_id,
            bad_token_id=head.bad_token_id,
        ),
        mesh,
        rules,
    )


def build_critic(policy: CausalLM, mesh, rules) -> ValueModel:
    """The critic starts from the policy's backbone with a zero value head."""
    return shard_model(ValueModel.from_policy(policy, rngs=nnx.Rngs(0)), mesh, rules)


def frozen_copy(model: nnx.Module, param_dtype: str = "") -> nnx.Module:
    """A copy with its own buffers (the trained original's are donated to the update step).

    ``param_dtype`` ("" keeps the original's): the copy's floating-point parameters are stored in
    it, e.g. bfloat16 for a frozen reference (half the bytes; layers still compute in the model's
    ``dtype``, on the rounded weights). Sharding is kept: a cast does not move data."""
    graphdef, state = nnx.split(model)

    def copy(x):
        if param_dtype and jnp.issubdtype(x.dtype, jnp.floating):
            return x.astype(jnp.dtype(param_dtype))
        return jnp.copy(x)

    return nnx.merge(graphdef, jax.tree.map(copy, state))
