"""Hugging Face checkpoints (Qwen2 / Llama / Mistral, safetensors) in and out of the NNX models.

Loading never materializes the whole model on one host: the model is built abstractly, each
parameter's target sharding is computed from its logical axes, and every device's shard is read
straight from the safetensors file (`safe_open(...).get_slice`) inside
`jax.make_array_from_callback`, converting HF's flat `[out, in]` matrices to this codebase's layouts
on the fly. At most one tensor's shards are cached at a time (replicated shards are read once per
host, not once per device).

HF ↔ here, per layer i (`model.layers.{i}.`):
  self_attn.q_proj.weight [H·Dh, D] ↔ backbone.layers.i.self_attn.q_proj.kernel [D, H, Dh]  (k, v
  alike) self_attn.q_proj.bias   [H·Dh]    ↔ ... .q_proj.bias [H, Dh]
  self_attn.o_proj.weight [D, H·Dh] ↔ ... .o_proj.kernel [H, Dh, D]
  mlp.{gate,up,down}_proj.weight [out, in] ↔ ... .kernel [in, out]
  *_layernorm.weight, model.norm.weight, embed_tokens.weight, lm_head.weight: same layout.
Heads: `score.weight` (+`score.bias`) of `Qwen2ForTokenClassification`/`...SequenceClassification`,
`score.0.*`/`score.2.*` of Qwen2.5-Math-RM/PRM's Linear-ReLU-Linear head, TRL's `v_head.summary.*`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import re
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx
from jax.experimental import multihost_utils
from safetensors import safe_open
from safetensors.numpy import save_file
from transformers import AutoTokenizer, PreTrainedTokenizerFast

from models.config import HF_PREFIX, ModelConfig
from models.decoder import CausalLM
from models.heads import RewardHead, RewardModel, ValueModel
from models.sharding import Rules, state_shardings

log = logging.getLogger(__name__)

SINGLE_FILE = "model.safetensors"
INDEX_FILE = "model.safetensors.index.json"
# Non-persistent buffers some old checkpoints still carry; never parameters.
_IGNORED = re.compile(r".*rotary_emb\.inv_freq$")


# --- Reading
# -----------------------------------------------------------------------------------------


class Checkpoint:
    """Tensor name → file map of a single-file or sharded (index.json) safetensors checkpoint.

    Public so that loaders of particular checkpoints (`models.prm`) can check names and shapes
    before anything is built; files stay open until `stack` closes.
    """

    def __init__(self, path: Path, stack: contextlib.ExitStack):
        self._stack = stack
        self._handles: dict[Path, Any] = {}
        if (path / INDEX_FILE).exists():
            weight_map = json.loads((path / INDEX_FILE).read_text())["weight_map"]
            self.files = {name: path / file for name, file in weight_map.items()}
        elif (path / SINGLE_FILE).exists():
            self.files = {
                name: path / SINGLE_FILE for name in self._open(path / SINGLE_FILE).keys()
            }
        else:
            raise FileNotFoundError(f"{path} has neither {SINGLE_FILE} nor {INDEX_FILE}")

    def _open(self, file: Path):
        if file not in self._handles:
            self._handles[file] = self._stack.enter_context(safe_open(str(file), framework="numpy"))
        return self._handles[file]

    def __contains__(self, name: str) -> bool:
        return name in self.files

    def shape(self, name: str) -> tuple[int, ...]:
        return tuple(self._open(self.files[name]).get_slice(name).get_shape())

    def read(self, name: str, index: tuple[slice, ...]) -> np.ndarray:
        """Only the requested block of the stored tensor is read from disk."""
        return self._open(self.files[name]).get_slice(name)[index]


def _hf_shape(layout: str, shape: Sequence[int]) -> tuple[int, ...]:
    """Shape HF stores for a parameter of ours with `shape` and `layout`."""
    if layout == "copy":
        return tuple(shape)
    if layout == "linear":
        return (shape[1], shape[0])
    if layout == "in_heads":  # [D, H, Dh] ← [H·Dh, D]
        return (shape[1] * shape[2], shape[0])
    if layout == "bias_heads":  # [H, Dh] ← [H·Dh]
        return (shape[0] * shape[1],)
    if layout == "out_heads":  # [H, Dh, D] ← [D, H·Dh]
        return (shape[2], shape[0] * shape[1])
    raise AssertionError(layout)


def _read_block(
    ckpt: Checkpoint, name: str, layout: str, shape: Sequence[int], index: tuple[slice, ...]
) -> np.ndarray:
    """Our-layout block `index` of parameter `name`, reading only the HF rows/cols it needs."""
    idx = tuple(slice(*s.indices(n)[:2]) for s, n in zip(index, shape))
    if layout == "copy":
        return ckpt.read(name, idx)
    if layout == "linear":
        return ckpt.read(name, (idx[1], idx[0])).T
    if layout == "in_heads":
        d, h, dh = idx
        hd = shape[2]
        rows = slice(h.start * hd, h.stop * hd)
        block = ckpt.read(name, (rows, d)).T
        return block.reshape(d.stop - d.start, h.stop - h.start, hd)[:, :, dh]
    if layout == "bias_heads":
        h, dh = idx
        hd = shape[1]
        return ckpt.read(name, (slice(h.start * hd, h.stop * hd),)).reshape(-1, hd)[:, dh]
    if layout == "out_heads":
        h, dh, d = idx
        hd = shape[1]
        block = ckpt.read(name, (d, slice(h.start * hd, h.stop * hd))).T
        return block.reshape(h.stop - h.start, hd, d.stop - d.start)[:, dh, :]
    raise AssertionError(layout)


def _to_hf(layout: str, x: np.ndarray) -> np.ndarray:
    """Inverse of `_read_block` on a whole array (for saving)."""
    if layout == "copy":
        return x
    if layout == "linear":
        return x.T
    if layout == "in_heads":
        return x.reshape(x.shape[0], -1).T
    if layout == "bias_heads":
        return x.reshape(-1)
    if layout == "out_heads":
        return x.reshape(-1, x.shape[2]).T
    raise AssertionError(layout)


# --- Names ----------------------------------------------------------------------------------------


def _hf_names(
    paths: Sequence[tuple], *, for_saving: bool = False
) -> dict[tuple, tuple[list[str], str]]:
    """Our state path → (candidate HF names, layout).

    Several candidates only for the critic's head, which loads TRL's `v_head.summary` or, when the
    critic starts from a reward model, that model's `score` head; it is saved as `score` (the layout
    transformers' `...ForTokenClassification` reads).
    """
    path_set = set(paths)
    out: dict[tuple, tuple[list[str], str]] = {}
    for path in paths:
        parts = [str(p) for p in path]
        leaf, mods = parts[-1], parts[:-1]
        suffix = "bias" if leaf == "bias" else "weight"
        layout = "copy"
        if mods[0] == "backbone":
            mods = ["model"] + mods[1:]
            proj = mods[-1]
            if proj in ("q_proj", "k_proj", "v_proj"):
                layout = "in_heads" if leaf == "kernel" else "bias_heads"
            elif proj == "o_proj" and leaf == "kernel":
                layout = "out_heads"
            elif leaf == "kernel":
                layout = "linear"
            names = [".".join(mods) + "." + suffix]
        elif mods[0] == "lm_head":
            names = ["lm_head.weight"]
        elif mods[0] in ("score", "v_head"):
            layout = "linear" if leaf == "kernel" else "copy"
            if (mods[0], "dense", "kernel") in path_set:  # Linear-ReLU-Linear, as nn.Sequential.
                bases = [f"score.{'0' if mods[1] == 'dense' else '2'}"]
            else:
                bases = (
                    ["score"] if mods[0] == "score" or for_saving else ["v_head.summary", "score"]
                )
            names = [f"{base}.{suffix}" for base in bases]
        else:
            raise ValueError(f"no Hugging Face name for parameter {'.'.join(parts)}")
        out[path] = (names, layout)
    return out


def head_layout(ckpt: Checkpoint, base: str) -> tuple[bool, bool, int] | None:
    """(mlp, bias, num_outputs) of a `score`-style head stored under `base`, or None if absent."""
    if f"{base}.0.weight" in ckpt and f"{base}.2.weight" in ckpt:
        return True, f"{base}.2.bias" in ckpt, ckpt.shape(f"{base}.2.weight")[0]
    if f"{base}.weight" in ckpt:
        return False, f"{base}.bias" in ckpt, ckpt.shape(f"{base}.weight")[0]
    return None


def _model_factory(config: ModelConfig, head: str | RewardHead | None, ckpt: Checkpoint):
    """A zero-argument constructor of the model `head` asks for, its head shaped like the
    checkpoint's."""
    if head is None:
        return lambda: CausalLM(config, rngs=nnx.Rngs(0))
    if head == "value":
        found = head_layout(ckpt, "v_head.summary") or head_layout(ckpt, "score")
        mlp, bias = (found[0], found[1]) if found else (False, True)
        if found and found[2] != 1:
            raise ValueError(f"value head in checkpoint has {found[2]} outputs, expected 1")
        return lambda: ValueModel(config, rngs=nnx.Rngs(0), mlp_head=mlp, head_bias=bias)
    spec = RewardHead(head) if isinstance(head, str) else head
    if not isinstance(spec, RewardHead):
        raise TypeError(f"head={head!r} must be None, 'value', a reward kind or a RewardHead")
    mlp = bias = False
    if spec.kind != "token_prob":
        found = head_layout(ckpt, "score")
        if found is None:
            raise KeyError(
                f"head kind={spec.kind!r} needs a `score` head (score.weight or score.0/2.*) "
                "in the checkpoint; none found"
            )
        mlp, bias, outputs = found
        want = 1 if spec.kind == "scalar" else 2
        if outputs != want:
            raise ValueError(
                f"head kind={spec.kind!r} needs {want} output(s); checkpoint's score head "
                f"has {outputs}"
            )
    return lambda: RewardModel(
        config,
        spec.kind,
        rngs=nnx.Rngs(0),
        good_token_id=spec.good_token_id,
        bad_token_id=spec.bad_token_id,
        sigmoid=spec.sigmoid,
        mlp_head=mlp,
        head_bias=bias,
    )


def load_config(path: str | Path, **overrides) -> ModelConfig:
    return ModelConfig.from_hf(json.loads((Path(path) / "config.json").read_text()), **overrides)


def load_causal_lm(
    path: str | Path,
    dtype: Any = jnp.float32,
    *,
    param_dtype: Any = None,
    mesh: jax.sharding.Mesh | None = None,
    rules: Rules | None = None,
    head: str | RewardHead | None = None,
    **overrides,
) -> nnx.Module:
    """An HF Qwen2/Llama safetensors checkpoint as a `CausalLM` (or a head model), optionally
    sharded.

    Args:
      path: directory with config.json and model.safetensors or model.safetensors.index.json.
      dtype: compute dtype; `param_dtype` (default: same as dtype) is the storage dtype.
      mesh, rules: when given, every parameter is created directly in its sharded layout.
      head: None → `CausalLM`; "value" → `ValueModel` (value head from `v_head.summary.*` or
        `score.*` when present, else zero-initialised); "scalar" / "two_class" / `RewardHead(...)` →
        `RewardModel` (token_prob needs a RewardHead with the good/bad token ids).
      overrides: further ModelConfig fields (e.g. remat=True).
    """
    if mesh is not None and rules is None:
        raise ValueError("load_causal_lm(mesh=...) needs rules= (e.g. configs.sharding.RULES)")
    path = Path(path)
    config = load_config(path, dtype=dtype, param_dtype=param_dtype or dtype, **overrides)
    np_dtype = np.dtype(config.param_dtype)
    with contextlib.ExitStack() as stack:
        ckpt = Checkpoint(path, stack)
        abstract = nnx.eval_shape(_model_factory(config, head, ckpt))
        graphdef, abstract_state = nnx.split(abstract)
        if mesh is None:
            device = jax.sharding.SingleDeviceSharding(jax.local_devices()[0])
            shardings = jax.tree.map(
                lambda v: v.replace(device),
                abstract_state,
                is_leaf=lambda x: isinstance(x, nnx.Variable),
            )
        else:
            shardings = state_shardings(abstract_state, mesh, rules)
        flat = list(nnx.to_flat_state(abstract_state))
        flat_shardings = dict(nnx.to_flat_state(shardings))
        names = _hf_names([p for p, _ in flat])
        used: set[str] = set()
        missing: list[str] = []
        loaded = []
        for p, var in flat:
            candidates, layout = names[p]
            name = next((n for n in candidates if n in ckpt), None)
            sharding = flat_shardings[p].get_value()
            if name is None:
                if p[0] == "v_head":  # A fresh critic head: zeros, like ValueModel's own init.
                    log.info(
                        "load_causal_lm(%s): no value head in checkpoint; %s starts at 0",
                        path,
                        ".".join(map(str, p)),
                    )
                    zeros = jax.jit(
                        lambda s=var.shape: jnp.zeros(s, np_dtype), out_shardings=sharding
                    )()
                    loaded.append((p, var.replace(zeros)))
                    continue
                missing.append(candidates[0])
                continue
            want = _hf_shape(layout, var.shape)
            if ckpt.shape(name) != want:
                raise ValueError(
                    f"checkpoint tensor {name} has shape {ckpt.shape(name)}, expected {want} "
                    f"from config.json"
                )
            used.add(name)
            loaded.append(
                (p, var.replace(_load_array(ckpt, name, layout, var.shape, sharding, np_dtype)))
            )
        if missing:
            raise KeyError(
                f"checkpoint {path} lacks {len(missing)} tensor(s) the model needs, e.g. "
                f"{missing[:5]}"
            )
        unused = sorted(n for n in ckpt.files if n not in used and not _IGNORED.match(n))
        if unused:
            log.info(
                "load_causal_lm(%s): %d checkpoint tensors not used, e.g. %s",
                path,
                len(unused),
                unused[:5],
            )
    return nnx.merge(graphdef, nnx.from_flat_state(loaded))


def _load_array(
    ckpt: Checkpoint,
    name: str,
    layout: str,
    shape: tuple[int, ...],
    sharding: jax.sharding.Sharding,
    np_dtype: np.dtype,
) -> jax.Array:
    blocks: dict[tuple, np.ndarray] = {}  # One tensor's distinct shards; replicas share a block.

    def callback(index: tuple[slice, ...]) -> np.ndarray:
        key = tuple(s.indices(n)[:2] for s, n in zip(index, shape))
        if key not in blocks:
            blocks[key] = np.ascontiguousarray(
                _read_block(ckpt, name, layout, shape, index)
            ).astype(np_dtype)
        return blocks[key]

    return jax.make_array_from_callback(shape, sharding, callback)


# --- Writing --------------------------------------------------------------------------------------


def _to_host(x: jax.Array) -> np.ndarray:
    if x.is_fully_addressable:
        return np.asarray(jax.device_get(x))
    return np.asarray(multihost_utils.process_allgather(x, tiled=True))


def _architecture(model: nnx.Module, arch: str) -> tuple[str, dict[str, Any]]:
    prefix = HF_PREFIX[arch]
    if isinstance(model, CausalLM):
        return f"{prefix}ForCausalLM", {}
    if isinstance(model, ValueModel):
        return f"{prefix}ForTokenClassification", {
            "num_labels": 1,
            "token_classification_bias": model.v_head.out.bias is not None,
        }
    if isinstance(model, RewardModel):
        if model.head.kind == "token_prob":
            return f"{prefix}ForCausalLM", {}
        labels = 1 if model.head.kind == "scalar" else 2
        extra = {
            "num_labels": labels,
            "token_classification_bias": model.score.out.bias is not None,
        }
        if model.score.dense is not None:
            return f"{prefix}ForProcessRewardModel", extra
        return f"{prefix}ForTokenClassification", extra
    raise TypeError(f"cannot save a {type(model).__name__}")


def save_causal_lm(
    model: nnx.Module,
    path: str | Path,
    *,
    arch: str | None = None,
    dtype: Any = None,
    tokenizer: Any = None,
    max_shard_bytes: int = 4 * 2**30,
) -> None:
    """Writes config.json, safetensors (sharded with an index beyond `max_shard_bytes`) and
    generation_config.json, loadable by `transformers.AutoModelForCausalLM.from_pretrained` (and,
    for value/reward models with a linear head, `AutoModelForTokenClassification`).

    Tensors are gathered to the host one at a time and written shard file by shard file, so host
    memory peaks at one file's worth. `dtype` casts on write (default: the parameters' dtype). On
    multi-host runs every process gathers; process 0 writes.
    """
    path = Path(path)
    config: ModelConfig = model.config
    arch = arch or config.arch
    architecture, extra = _architecture(model, arch)
    save_dtype = np.dtype(jnp.dtype(dtype)) if dtype is not None else np.dtype(config.param_dtype)
    flat = list(nnx.to_flat_state(nnx.state(model, nnx.Param)))
    names = _hf_names([p for p, _ in flat], for_saving=True)
    entries = []  # (hf name, variable, layout)
    for p, var in flat:
        candidates, layout = names[p]
        entries.append((candidates[0], var, layout))
    entries.sort(key=lambda e: _natural_key(e[0]))

    shards: list[list[tuple[str, nnx.Variable, str]]] = [[]]
    size = 0
    for entry in entries:
        nbytes = math.prod(entry[1].shape) * save_dtype.itemsize
        if shards[-1] and size + nbytes > max_shard_bytes:
            shards.append([])
            size = 0
        shards[-1].append(entry)
        size += nbytes
    files = (
        [SINGLE_FILE]
        if len(shards) == 1
        else [f"model-{i + 1:05d}-of-{len(shards):05d}.safetensors" for i in range(len(shards))]
    )

    writer = jax.process_index() == 0
    if writer:
        path.mkdir(parents=True, exist_ok=True)
    weight_map: dict[str, str] = {}
    total = 0
    for file, shard in zip(files, shards):
        tensors = {}
        for name, var, layout in shard:
            tensors[name] = np.ascontiguousarray(_to_hf(layout, _to_host(var[...]))).astype(
                save_dtype
            )
            weight_map[name] = file
            total += tensors[name].nbytes
        if writer:
            save_file(tensors, str(path / file), metadata={"format": "pt"})
        del tensors
    if not writer:
        return
    if len(files) > 1:
        index = {"metadata": {"total_size": total}, "weight_map": weight_map}
        (path / INDEX_FILE).write_text(json.dumps(index, indent=2))
    hf = config.to_hf(arch)
    hf["architectures"] = [architecture]
    hf["torch_dtype"] = save_dtype.name
    hf.update(extra)
    (path / "config.json").write_text(json.dumps(hf, indent=2))
    generation = {
        k: hf[k] for k in ("bos_token_id", "eos_token_id", "pad_token_id") if hf.get(k) is not None
    }
    if generation:
        (path / "generation_config.json").write_text(json.dumps(generation, indent=2))
    if tokenizer is not None:
        tokenizer.save_pretrained(str(path))


def _natural_key(name: str) -> list:
    """Sorts model.layers.10 after model.layers.9."""
    return [int(t) if t.isdigit() else t for t in re.split(r"(\d+)", name)]


_GENERIC_TOKENIZERS = ("TokenizersBackend", "PreTrainedTokenizerFast")


def load_tokenizer(path: str | Path):
    """The checkpoint's tokenizer (and chat template), as the class it was saved as.

    Through transformers' AutoTokenizer, except for a tokenizer saved as the generic fast class
    (such as the toy task's): next to a Qwen2 `config.json`, AutoTokenizer would build a
    `Qwen2Tokenizer` from its files, whose own pre-tokenizer drops spaces and newlines, so it is
    loaded as saved.
    """
    config = Path(path) / "tokenizer_config.json"
    saved_as = json.loads(config.read_text()).get("tokenizer_class") if config.exists() else None
    if saved_as in _GENERIC_TOKENIZERS:
        return PreTrainedTokenizerFast.from_pretrained(str(path))
    return AutoTokenizer.from_pretrained(str(path))
