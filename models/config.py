"""`ModelConfig`: the one validated description of a decoder-only (Qwen2 / Llama / Mistral) model.

Everything in `models/` takes this frozen dataclass, never a ConfigDict: presets in
`models/presets.py` and Hugging Face `config.json` files are both converted here once (`from_dict`,
`from_hf`), so a bad value fails at the edge with the field's name instead of deep inside a traced
function. The dataclass is hashable, which lets modules keep it as static structure and lets
`functools.lru_cache` key RoPE tables on it.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Mapping
from typing import Any

import jax.numpy as jnp
import numpy as np

ARCHS = ("qwen2", "llama", "mistral")
# transformers' class-name prefix of each family (Qwen2ForCausalLM, MistralForTokenClassification).
HF_PREFIX = {"qwen2": "Qwen2", "llama": "Llama", "mistral": "Mistral"}
DTYPES = ("float32", "bfloat16", "float16")
ROPE_TYPES = ("default", "linear", "llama3")
REMAT_POLICIES = (
    "nothing_saveable",
    "dots_saveable",
    "dots_with_no_batch_dims_saveable",
    "everything_saveable",
)

# Hugging Face keys that describe features this decoder does not implement. `from_hf` refuses a
# checkpoint that turns one on rather than computing something silently different.
_HF_ACTIVATIONS = ("silu", "swish")


def _canonical_dtype(field: str, value: Any) -> np.dtype:
    try:
        dtype = jnp.dtype(value)
    except TypeError as e:
        raise ValueError(
            f"ModelConfig.{field}={value!r} is not a dtype; use one of {DTYPES}"
        ) from e
    if dtype.name not in DTYPES:
        raise ValueError(f"ModelConfig.{field}={value!r} is not supported; use one of {DTYPES}")
    return dtype


@dataclasses.dataclass(frozen=True)
class ModelConfig:
    """Shapes and numerics of a Qwen2/Llama-style decoder.

    Attributes that need a word:
      head_dim: per-head width; `None` means hidden_size // num_heads (what Qwen2 configs imply).
      attention_bias: bias on the q/k/v projections (Qwen2: always; Llama: `attention_bias`).
      attention_out_bias: bias on the output projection (Llama's `attention_bias` turns it on too;
        Qwen2 never has it).
      rope_type: "default" (plain RoPE), "linear" (positions divided by `rope_factor`) or "llama3"
        (Llama 3.1 frequency-dependent scaling with `rope_low_freq_factor`, `rope_high_freq_factor`,
        `rope_original_max_position`).
      dtype: compute dtype of activations and matmuls; logits and reward/value outputs are always
      fp32. param_dtype: storage dtype of parameters (fp32 for a trained policy/critic, bf16 may do
      for frozen
        models); parameters are cast to `dtype` where used.
      remat: rematerialize each decoder layer in the backward pass (`nnx.remat`) with
      `remat_policy`,
        one of `jax.checkpoint_policies`' names in REMAT_POLICIES.
      arch: the Hugging Face family `to_hf()` writes by default.
      sliding_window: Mistral's attention window, recorded from config.json. Attention here is
        always full, which equals sliding-window attention only while a sequence is no longer than
        the window; callers that score Mistral checkpoints (`models.prm`) refuse longer inputs.
    """

    vocab_size: int
    hidden_size: int
    intermediate_size: int
    num_layers: int
    num_heads: int
    num_kv_heads: int
    head_dim: int | None = None
    rope_theta: float = 10000.0
    rope_type: str = "default"
    rope_factor: float = 1.0
    rope_low_freq_factor: float = 1.0
    rope_high_freq_factor: float = 4.0
    rope_original_max_position: int = 8192
    rms_norm_eps: float = 1e-6
    tie_word_embeddings: bool = False
    attention_bias: bool = False
    attention_out_bias: bool = False
    max_position_embeddings: int = 4096
    dtype: Any = "float32"
    param_dtype: Any = "float32"
    remat: bool = False
    remat_policy: str = "nothing_saveable"
    initializer_range: float = 0.02
    arch: str = "qwen2"
    bos_token_id: int | None = None
    eos_token_id: int | tuple[int, ...] | None = None
    pad_token_id: int | None = None
    sliding_window: int | None = None

    def __post_init__(self):
        for name in (
            "vocab_size",
            "hidden_size",
            "intermediate_size",
            "num_layers",
            "num_heads",
            "num_kv_heads",
            "max_position_embeddings",
            "rope_original_max_position",
        ):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value <= 0:
                raise ValueError(f"ModelConfig.{name}={value!r} must be a positive int")
            object.__setattr__(self, name, int(value))
        if self.num_heads % self.num_kv_heads:
            raise ValueError(
                f"ModelConfig.num_kv_heads={self.num_kv_heads} must divide "
                f"num_heads={self.num_heads} (grouped-query attention)"
            )
        if self.head_dim is None:
            if self.hidden_size % self.num_heads:
                raise ValueError(
                    f"ModelConfig.head_dim=None needs hidden_size={self.hidden_size} divisible "
                    f"by num_heads={self.num_heads}; set head_dim explicitly"
                )
            object.__setattr__(self, "head_dim", self.hidden_size // self.num_heads)
        if (
            isinstance(self.head_dim, bool)
            or not isinstance(self.head_dim, (int, np.integer))
            or (self.head_dim <= 0 or self.head_dim % 2)
        ):
            raise ValueError(
                f"ModelConfig.head_dim={self.head_dim!r} must be a positive even int (RoPE "
                "rotates pairs of features)"
            )
        object.__setattr__(self, "head_dim", int(self.head_dim))
        for name in ("rope_theta", "rms_norm_eps", "rope_factor", "initializer_range"):
            value = getattr(self, name)
            if (
                not isinstance(value, (int, float, np.floating))
                or not math.isfinite(value)
                or value <= 0
            ):
                raise ValueError(f"ModelConfig.{name}={value!r} must be a positive finite number")
            object.__setattr__(self, name, float(value))
        if self.rope_type not in ROPE_TYPES:
            raise ValueError(
                f"ModelConfig.rope_type={self.rope_type!r} is not supported; use one of "
                f"{ROPE_TYPES}"
            )
        if (
            self.rope_type == "llama3"
            and not self.rope_high_freq_factor > self.rope_low_freq_factor > 0
        ):
            raise ValueError(
                f"ModelConfig.rope_high_freq_factor={self.rope_high_freq_factor} must exceed "
                f"rope_low_freq_factor={self.rope_low_freq_factor} > 0 for llama3 RoPE"
            )
        object.__setattr__(self, "dtype", _canonical_dtype("dtype", self.dtype))
        object.__setattr__(self, "param_dtype", _canonical_dtype("param_dtype", self.param_dtype))
        if self.remat_policy not in REMAT_POLICIES:
            raise ValueError(
                f"ModelConfig.remat_policy={self.remat_policy!r} is not one of {REMAT_POLICIES}"
            )
        if self.arch not in ARCHS:
            raise ValueError(f"ModelConfig.arch={self.arch!r} is not one of {ARCHS}")
        if self.sliding_window is not None:
            w = self.sliding_window
            if isinstance(w, bool) or not isinstance(w, (int, np.integer)) or w <= 0:
                raise ValueError(f"ModelConfig.sliding_window={w!r} must be None or a positive int")
            object.__setattr__(self, "sliding_window", int(w))
        if isinstance(self.eos_token_id, (list, tuple)):
            object.__setattr__(self, "eos_token_id", tuple(int(i) for i in self.eos_token_id))

    # --- Derived sizes
    # -----------------------------------------------------------------------------

    @property
    def num_groups(self) -> int:
        """Query heads per key/value head."""
        return self.num_heads // self.num_kv_heads

    def replace(self, **changes) -> ModelConfig:
        return dataclasses.replace(self, **changes)

    # --- Conversions
    # ---------------------------------------------------------------------------------

    @classmethod
    def from_dict(cls, values: Mapping[str, Any]) -> ModelConfig:
        """From a plain mapping of field names (e.g. `models.presets.get_config(...).to_dict()`)."""
        fields = {f.name for f in dataclasses.fields(cls)}
        unknown = sorted(set(values) - fields)
        if unknown:
            raise ValueError(
                f"ModelConfig has no field(s) {unknown}; known fields: {sorted(fields)}"
            )
        return cls(**dict(values))

    @classmethod
    def from_hf(cls, hf: Mapping[str, Any], **overrides) -> ModelConfig:
        """From a Hugging Face `config.json` dict of a Qwen2, Llama or Mistral model.

        Reads both the transformers-5 layout (`rope_parameters`) and the older one (`rope_theta` +
        `rope_scaling`), which is what published Qwen2 / Qwen2.5 checkpoints carry. `overrides` set
        fields that are not in the checkpoint (dtype, param_dtype, remat, ...).
        """
        model_type = hf.get("model_type")
        if model_type not in ARCHS:
            raise ValueError(
                f"config.json model_type={model_type!r} is not supported; use one of {ARCHS}"
            )
        act = hf.get("hidden_act", "silu")
        if act not in _HF_ACTIVATIONS:
            raise ValueError(
                f"config.json hidden_act={act!r} is not supported (SwiGLU needs 'silu')"
            )
        if hf.get("mlp_bias", False):
            raise ValueError("config.json mlp_bias=True is not supported")
        if hf.get("use_sliding_window", False):
            raise ValueError(
                "config.json use_sliding_window=True is not supported (full attention only)"
            )

        rope = _hf_rope(hf)
        num_heads = hf["num_attention_heads"]
        if model_type == "qwen2":
            qkv_bias, out_bias = True, False
        elif model_type == "mistral":  # MistralAttention: no bias on any projection.
            qkv_bias = out_bias = False
        else:
            qkv_bias = out_bias = bool(hf.get("attention_bias", False))
        values = dict(
            vocab_size=hf["vocab_size"],
            hidden_size=hf["hidden_size"],
            intermediate_size=hf["intermediate_size"],
            num_layers=hf["num_hidden_layers"],
            num_heads=num_heads,
            num_kv_heads=hf.get("num_key_value_heads") or num_heads,
            head_dim=hf.get("head_dim"),
            rms_norm_eps=hf.get("rms_norm_eps", 1e-6),
            # transformers' own default when the key is absent (Qwen2Config and LlamaConfig alike).
            tie_word_embeddings=bool(hf.get("tie_word_embeddings", False)),
            attention_bias=qkv_bias,
            attention_out_bias=out_bias,
            max_position_embeddings=hf.get("max_position_embeddings", 4096),
            initializer_range=hf.get("initializer_range", 0.02),
            arch=model_type,
            bos_token_id=hf.get("bos_token_id"),
            eos_token_id=hf.get("eos_token_id"),
            pad_token_id=hf.get("pad_token_id"),
            sliding_window=hf.get("sliding_window") if model_type == "mistral" else None,
            **rope,
        )
        values.update(overrides)
        return cls(**values)

    def to_hf(self, arch: str | None = None) -> dict[str, Any]:
        """A Hugging Face `config.json` dict that transformers loads as `arch` (one of ARCHS).

        Writes the RoPE settings twice, as transformers-5 `rope_parameters` and as the older
        `rope_theta`/`rope_scaling`, so both current transformers and tools pinned to 4.x read the
        same frequencies.
        """
        arch = arch or self.arch
        if arch not in ARCHS:
            raise ValueError(f"to_hf(arch={arch!r}) is not one of {ARCHS}")
        if arch == "qwen2" and not (self.attention_bias and not self.attention_out_bias):
            raise ValueError(
                "to_hf(arch='qwen2') needs attention_bias=True and attention_out_bias=False "
                f"(Qwen2's fixed layout); got attention_bias={self.attention_bias}, "
                f"attention_out_bias={self.attention_out_bias}"
            )
        if arch == "mistral" and (self.attention_bias or self.attention_out_bias):
            raise ValueError("to_hf(arch='mistral') needs attention_bias=attention_out_bias=False")
        if arch != "mistral" and self.sliding_window is not None:
            raise ValueError(
                f"to_hf(arch={arch!r}) cannot write sliding_window={self.sliding_window} "
                "(Mistral only)"
            )
        if arch == "llama" and self.attention_bias != self.attention_out_bias:
            raise ValueError(
                "to_hf(arch='llama') needs attention_bias == attention_out_bias (Llama's single "
                f"`attention_bias` flag); got {self.attention_bias}, {self.attention_out_bias}"
            )
        rope_parameters: dict[str, Any] = {
            "rope_type": self.rope_type,
            "rope_theta": self.rope_theta,
        }
        if self.rope_type in ("linear", "llama3"):
            rope_parameters["factor"] = self.rope_factor
        if self.rope_type == "llama3":
            rope_parameters.update(
                low_freq_factor=self.rope_low_freq_factor,
                high_freq_factor=self.rope_high_freq_factor,
                original_max_position_embeddings=self.rope_original_max_position,
            )
        legacy_scaling = (
            None
            if self.rope_type == "default"
            else {k: v for k, v in rope_parameters.items() if k != "rope_theta"}
        )
        hf: dict[str, Any] = {
            "architectures": [f"{HF_PREFIX[arch]}ForCausalLM"],
            "model_type": arch,
            "vocab_size": self.vocab_size,
            "hidden_size": self.hidden_size,
            "intermediate_size": self.intermediate_size,
            "num_hidden_layers": self.num_layers,
            "num_attention_heads": self.num_heads,
            "num_key_value_heads": self.num_kv_heads,
            "head_dim": self.head_dim,
            "hidden_act": "silu",
            "max_position_embeddings": self.max_position_embeddings,
            "rms_norm_eps": self.rms_norm_eps,
            "rope_theta": self.rope_theta,
            "rope_scaling": legacy_scaling,
            "rope_parameters": rope_parameters,
            "tie_word_embeddings": self.tie_word_embeddings,
            "initializer_range": self.initializer_range,
            "attention_dropout": 0.0,
            "use_cache": True,
            "torch_dtype": self.param_dtype.name,
            "bos_token_id": self.bos_token_id,
            "eos_token_id": list(self.eos_token_id)
            if isinstance(self.eos_token_id, tuple)
            else self.eos_token_id,
            "pad_token_id": self.pad_token_id,
        }
        if arch == "qwen2":
            hf.update(
                use_sliding_window=False, sliding_window=None, max_window_layers=self.num_layers
            )
        elif arch == "mistral":
            hf["sliding_window"] = self.sliding_window
        else:
            hf.update(attention_bias=self.attention_bias, mlp_bias=False, pretraining_tp=1)
        return hf


def _hf_rope(hf: Mapping[str, Any]) -> dict[str, Any]:
    """RoPE fields of ModelConfig from either HF layout; unsupported scaling types raise."""
    params = hf.get("rope_parameters")
    field = "rope_parameters"
    if params is None:
        params = dict(hf.get("rope_scaling") or {})
        field = "rope_scaling"
        params.setdefault("rope_theta", hf.get("rope_theta", 10000.0))
    params = dict(params)
    rope_type = params.get("rope_type", params.get("type", "default")) or "default"
    if rope_type not in ROPE_TYPES:
        raise ValueError(
            f"config.json {field}.rope_type={rope_type!r} is not supported; this decoder "
            f"implements {ROPE_TYPES}"
        )
    if "partial_rotary_factor" in params and params["partial_rotary_factor"] != 1.0:
        raise ValueError(
            f"config.json {field}.partial_rotary_factor={params['partial_rotary_factor']} "
            "is not supported"
        )
    out: dict[str, Any] = {
        "rope_theta": params.get("rope_theta", hf.get("rope_theta", 10000.0)),
        "rope_type": rope_type,
    }
    if rope_type in ("linear", "llama3"):
        out["rope_factor"] = params["factor"]
    if rope_type == "llama3":
        out.update(
            rope_low_freq_factor=params["low_freq_factor"],
            rope_high_freq_factor=params["high_freq_factor"],
            rope_original_max_position=params.get(
                "original_max_position_embeddings", hf.get("max_position_embeddings", 8192)
            ),
        )
    return out


def count_params(config: ModelConfig, *, include_lm_head: bool = True) -> int:
    """Parameter count from the shapes alone (matches HF's `num_parameters()` for a CausalLM)."""
    d, f, h, k, dh = (
        config.hidden_size,
        config.intermediate_size,
        config.num_heads,
        config.num_kv_heads,
        config.head_dim,
    )
    attn = d * h * dh + 2 * d * k * dh + h * dh * d
    if config.attention_bias:
        attn += h * dh + 2 * k * dh
    if config.attention_out_bias:
        attn += d
    layer = attn + 3 * d * f + 2 * d
    total = config.vocab_size * d + config.num_layers * layer + d
    if include_lm_head and not config.tie_word_embeddings:
        total += config.vocab_size * d
    return total


def matmul_params(config: ModelConfig) -> int:
    """Weights that take part in a matmul per token: every projection plus the LM head (tied or
    not).

    Used for FLOP counts (2 FLOPs per weight per token); the embedding lookup is a gather and is not
    counted.
    """
    d, f, h, k, dh = (
        config.hidden_size,
        config.intermediate_size,
        config.num_heads,
        config.num_kv_heads,
        config.head_dim,
    )
    per_layer = d * h * dh + 2 * d * k * dh + h * dh * d + 3 * d * f
    return config.num_layers * per_layer + config.vocab_size * d
