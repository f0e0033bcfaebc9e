"""Loading the policy to evaluate, with its tokenizer, from an HF model directory or a project
workdir (``rl.train --workdir``), the latter rebuilt exactly as the trainer built it."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import orbax.checkpoint as ocp
from flax import nnx

from models import hf_io
from models.decoder import CausalLM
from models.sharding import state_shardings
from rl.config import ModelSpec
from rl.rollout.tokenizer import load_tokenizer
from rl.runtime import model_builder as models_setup

# What a project workdir needs beside checkpoints/ (see load_policy).
RUN_CONFIG_FILE = "config.json"
TOKENIZER_FILES = ("tokenizer.json", "tokenizer_config.json", "tokenizer.model")


@dataclasses.dataclass
class LoadedPolicy:
    model: Any  # CausalLM
    tokenizer: Any
    source: str  # "hf" | "workdir"
    run_config: dict[str, Any] | None = None  # a workdir's run config (data settings, ...)
    step: int | None = None  # the workdir checkpoint restored


def is_hf_dir(path: str | Path) -> bool:
    config = Path(path) / "config.json"
    if not config.exists():
        return False
    values = json.loads(config.read_text())
    return "model_type" in values or "architectures" in values


def checkpoint_steps(workdir: str | Path) -> list[int]:
    root = Path(workdir) / "checkpoints"
    if not root.is_dir():
        return []
    return sorted(
        int(d.name) for d in root.iterdir() if d.name.isdigit() and (d / "state").is_dir()
    )


def load_policy_tokenizer(path: str | Path, *, tokenizer: str | Path | None = None) -> Any:
    """The tokenizer ``load_policy`` would return for ``path``, without loading any weights (to
    check, before a long load, what a policy's outputs will be compared with)."""
    path = Path(path)
    if is_hf_dir(path):
        return hf_io.load_tokenizer(tokenizer or path)
    run_file = path / RUN_CONFIG_FILE
    if not run_file.exists():
        raise FileNotFoundError(f"{path}: neither an HF model directory nor a project workdir")
    run_config = json.loads(run_file.read_text())
    spec = ModelSpec.from_section("policy", run_config.get("policy"))
    dataset = run_config.get("data", {}).get("dataset", "")
    return load_tokenizer(
        tokenizer or "", run_config.get("tokenizer", ""), spec.path, dataset=dataset
    )


def load_policy(
    path: str | Path,
    *,
    tokenizer: str | Path | None = None,
    step: int | None = None,
    dtype: Any = jnp.float32,
    mesh=None,
    rules=None,
) -> LoadedPolicy:
    """A policy and its tokenizer from an HF directory or a project workdir (``rl.train
    --workdir``).

    HF directory: config.json + safetensors (+ tokenizer files, or pass `tokenizer`).
    Workdir: ``checkpoints/<step>/state`` (the TrainState; only its ``policy`` subtree is read,
    straight into its shardings) and ``config.json``, the run's config (``RLConfig.to_json()`` as
    the trainer writes it, or a ``ConfigDict.to_json()``), from which the policy's structure (its
    ``policy`` section: HF path or preset, dtypes, overrides) and tokenizer are rebuilt exactly as
    the trainer built them. Default step: the latest.
    """
    path = Path(path)
    if is_hf_dir(path):
        if tokenizer is None and not any((path / f).exists() for f in TOKENIZER_FILES):
            raise FileNotFoundError(
                f"{path} has no tokenizer files ({', '.join(TOKENIZER_FILES)}); "
                "pass a tokenizer directory"
            )
        model = hf_io.load_causal_lm(path, dtype, mesh=mesh, rules=rules)
        return LoadedPolicy(model, hf_io.load_tokenizer(tokenizer or path), "hf")
    steps = checkpoint_steps(path)
    if not steps:
        raise FileNotFoundError(
            f"{path}: neither an HF model directory (config.json with model_type) "
            "nor a project workdir (checkpoints/<step>/state)"
        )
    run_file = path / RUN_CONFIG_FILE
    if not run_file.exists():
        raise FileNotFoundError(
            f"{path} is a project workdir but has no {RUN_CONFIG_FILE}: the policy's structure "
            f"cannot be rebuilt from checkpoints alone. Write the run's config there "
            f"(ConfigDict.to_json()), or export the policy as an HF directory "
            f"(models.hf_io.save_causal_lm) and pass that."
        )
    if step is None:
        step = steps[-1]
    elif step not in steps:
        raise FileNotFoundError(f"{path}: no checkpoint step {step}; have {steps}")
    run_config = json.loads(run_file.read_text())
    model, tok = _restore_workdir_policy(path, run_config, step, tokenizer, mesh, rules)
    return LoadedPolicy(model, tok, "workdir", run_config, step)


def _restore_workdir_policy(
    path: Path, run_config: dict[str, Any], step: int, tokenizer, mesh, rules
):
    spec = ModelSpec.from_section("policy", run_config.get("policy"))
    data = run_config.get("data", {})
    tok = load_tokenizer(
        tokenizer or "", run_config.get("tokenizer", ""), spec.path, dataset=data.get("dataset", "")
    )
    if spec.path:
        config = hf_io.load_config(
            spec.path,
            dtype=jnp.dtype(spec.dtype),
            param_dtype=jnp.dtype(spec.param_dtype),
            remat=spec.remat,
            **dict(spec.overrides),
        )
    else:
        config = models_setup.model_config(spec, tok)
    graphdef, abstract = nnx.split(nnx.eval_shape(lambda: CausalLM(config, rngs=nnx.Rngs(0))))
    if mesh is None:
        device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
        shardings = jax.tree.map(lambda _: device, abstract)
    else:
        shardings = state_shardings(abstract, mesh, rules)
    target = jax.tree.map(
        lambda v, s: jax.ShapeDtypeStruct(v.shape, v.dtype, sharding=s), abstract, shardings
    )
    item = {"policy": target}
    restored = ocp.PyTreeCheckpointer().restore(
        path.resolve() / "checkpoints" / str(step) / "state",
        args=ocp.args.PyTreeRestore(
            item=item,
            partial_restore=True,
            restore_args=ocp.checkpoint_utils.construct_restore_args(item),
        ),
    )
    return nnx.merge(graphdef, restored["policy"]), tok
