"""Trained reward models on disk: a Hugging Face checkpoint plus ``reward_model.json``.

    save_reward_model(prm, "runs/prm", kind="prm", tokenizer=tokenizer, step_separator="\\n")
    prm, info = load_reward_model("runs/prm")   # info: {"kind": "prm", "head": "scalar", ...}

config.json cannot say that a scalar head's output is sigmoid-squashed, nor which of the trained
kinds a checkpoint is; ``reward_model.json`` records both (and whatever the trainer adds: beta,
step separator, data, metrics), so a reward model reloads with the head it was trained with. It
lives in ``models/`` beside ``models.hf_io`` because the model builder that loads frozen reward
models for PPO reads it as well as the reward-model trainer that writes it.

A ``models.likelihood_prm.LikelihoodPRM`` is saved as its PRM, with its language model in
``likelihood_lm/`` and its weights under ``"likelihood"`` in ``reward_model.json``; it loads back
as a ``LikelihoodPRM``.
"""

from __future__ import annotations

import json
import pathlib
from typing import Any

import jax
import jax.numpy as jnp
from flax import nnx

from models import hf_io
from models.heads import RewardHead, RewardModel
from models.likelihood_prm import LM_DIR, LikelihoodPRM

# What a saved reward model can be: ORM and PRM (a RewardModel), implicit PRM (a CausalLM).
KINDS = ("orm", "prm", "implicit_prm")
META_FILE = "reward_model.json"


def save_reward_model(
    model: nnx.Module, path: str | pathlib.Path, *, kind: str, tokenizer: Any = None, **meta: Any
) -> None:
    """``models.hf_io.save_causal_lm`` (+ tokenizer), and ``reward_model.json`` recording what the
    checkpoint is: the kind, the head and whether its scalar output is sigmoid-squashed
    (config.json cannot say so; load it with ``load_reward_model`` or
    ``head=RewardHead("scalar", sigmoid=True)``) and any ``meta`` given (beta, step separator,
    data, metrics)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: must be one of {KINDS}")
    path = pathlib.Path(path)
    info = {"kind": kind, **meta}
    if isinstance(model, LikelihoodPRM):
        if kind != "prm":
            raise ValueError(f"kind={kind!r}: a LikelihoodPRM is saved as kind='prm'")
        hf_io.save_causal_lm(model.lm, path / LM_DIR)
        info["likelihood"] = {"weights": [float(w) for w in model.weights[...]], "lm": LM_DIR}
        model = model.prm
    hf_io.save_causal_lm(model, path, tokenizer=tokenizer)
    if isinstance(model, RewardModel):
        info.update(head=model.head.kind, sigmoid=model.head.sigmoid)
    if jax.process_index() == 0:
        (path / META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))


def load_reward_model(
    path: str | pathlib.Path,
    *,
    dtype: Any = jnp.float32,
    param_dtype: Any = None,
    mesh=None,
    rules=None,
) -> tuple[nnx.Module, dict[str, Any]]:
    """A model saved by ``save_reward_model``, with the head it was trained with, and its
    metadata. ``param_dtype``: the storage dtype (default: ``dtype``; bfloat16 halves a frozen
    model's memory, computing in ``dtype`` all the same)."""
    path = pathlib.Path(path)
    info = json.loads((path / META_FILE).read_text())
    head = None
    if info["kind"] != "implicit_prm":
        head = RewardHead(info["head"], sigmoid=bool(info.get("sigmoid", False)))
    load = lambda where, head: hf_io.load_causal_lm(  # noqa: E731
        where, dtype, param_dtype=param_dtype, mesh=mesh, rules=rules, head=head
    )
    model = load(path, head)
    if "likelihood" in info:  # a LikelihoodPRM: its language model and weights
        spec = info["likelihood"]
        model = LikelihoodPRM(model, load(path / spec["lm"], None), spec["weights"])
    return model, info
