"""The config layer's vocabulary: ``ConfigError``, the value checks every section uses, and the two
sections that stand alone (``MeshConfig``, ``ModelSpec``).

Kept apart from ``rl.config`` (which assembles the sections into ``RLConfig`` and checks what
crosses sections) so that each file holds one kind of thing; ``rl.config`` re-exports every public
name here, and callers import them from there.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Iterable, Mapping
from typing import Any

from models import presets
from models.heads import REWARD_KINDS
from models.prm_formats import FORMATS as PRM_FORMATS


class ConfigError(ValueError):
    """A config value is invalid; the message names the key and the value."""


def _fail(key: str, value: Any, why: str) -> None:
    raise ConfigError(f"config.{key}={value!r}: {why}")


def _check_sampler_logp(prefix: str, rollout: Any) -> None:
    """``old_logp="sampler"`` needs the sampled distribution to be the one PPO trains,
    softmax(logits / temperature): no top-p / top-k filter and the model's own LM head."""
    if rollout.old_logp != "sampler":
        return
    filtered = {"top_p": rollout.top_p != 1, "top_k": rollout.top_k != 0}
    filtered["head_dtype"] = rollout.head_dtype not in ("", "float32")
    for name in (k for k, v in filtered.items() if v):
        why = f"the sampled distribution is not the trained one: set {prefix}.old_logp="
        _fail(f"{prefix}.{name}", getattr(rollout, name), why + "'recompute'")


def _positive(key: str, value: Any, *, allow_zero: bool = False) -> None:
    ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
    if not ok or value < 0 or (value == 0 and not allow_zero):
        _fail(key, value, "must be a finite number " + (">= 0" if allow_zero else "> 0"))


def _int_at_least(key: str, value: Any, low: int) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < low:
        _fail(key, value, f"must be an integer >= {low}")


def _unit_interval(key: str, value: Any) -> None:
    if not isinstance(value, (int, float)) or not 0.0 <= value <= 1.0:
        _fail(key, value, "must be in [0, 1]")


def _one_of(key: str, value: Any, choices: Iterable[Any]) -> None:
    choices = tuple(choices)
    if value not in choices:
        _fail(key, value, f"must be one of {choices}")


MESH_AXES = ("data", "fsdp", "tensor")


def _as_tuples(value: Any) -> Any:
    """Lists (from JSON or the command line) as tuples, recursively: rule tables stay hashable."""
    if isinstance(value, (list, tuple)):
        return tuple(_as_tuples(v) for v in value)
    return value


@dataclasses.dataclass(frozen=True)
class MeshConfig:
    """Mesh axes ("data", "fsdp", "tensor"); one entry of ``shape`` may be -1: all remaining
    devices.

    ``rules`` is the logical-axis rule table, ``(logical name, mesh axis | (axes...) | None)``
    pairs, first match wins (``models.sharding`` applies it). The configs hand it in
    (``configs/sharding.py`` holds the one table; ``configs/common.py`` sets ``mesh.rules`` to it).
    """

    shape: tuple[int, int, int] = (1, -1, 1)
    rules: tuple[tuple[str, Any], ...] = ()

    def validate(self, prefix: str = "mesh") -> MeshConfig:
        s = self.shape
        if (
            len(s) != 3
            or any(not isinstance(x, int) or (x < 1 and x != -1) for x in s)
            or list(s).count(-1) > 1
        ):
            _fail(
                f"{prefix}.shape", s, "must be 3 integers >= 1 (data, fsdp, tensor), at most one -1"
            )
        rules = _as_tuples(self.rules)
        if not rules:
            _fail(f"{prefix}.rules", self.rules, "must be the logical-axis rule table (non-empty)")
        for rule in rules:
            ok = isinstance(rule, tuple) and len(rule) == 2 and isinstance(rule[0], str)
            target = rule[1] if ok else None
            axes = target if isinstance(target, tuple) else (() if target is None else (target,))
            if not ok or any(a not in MESH_AXES for a in axes):
                _fail(
                    f"{prefix}.rules",
                    rule,
                    f"each rule must be (logical name, None | mesh axis | tuple of mesh axes), "
                    f"mesh axes {MESH_AXES}",
                )
        object.__setattr__(self, "rules", rules)
        return self


@dataclasses.dataclass(frozen=True)
class ModelSpec:
    """One model section of the config, validated."""

    name: str
    path: str = ""
    preset: str = ""
    seed: int = 0
    dtype: str = "float32"
    param_dtype: str = "float32"
    remat: bool = False
    kind: str = "scalar"  # reward models only
    good_token: str = ""  # kind="token_prob" only
    bad_token: str = ""
    overrides: tuple[tuple[str, Any], ...] = ()
    # PRMs: how the checkpoint's authors build its input and read its scores (models.prm);
    # "" detects it from the checkpoint ("own" for the project's reward models and presets).
    format: str = ""
    # A published PRM's input bucket (its own tokens) and most steps scored per response;
    # 0 derives them from the run (prompt + response lengths, one step per separator).
    max_input_len: int = 0
    max_steps: int = 0
    # The implicit PRM's reference model pi_ref (a checkpoint directory); "" = the PPO reference.
    ref_path: str = ""
    # The policy section only: the storage dtype of the frozen PPO reference ("" = the policy's
    # param_dtype; "bfloat16" halves its memory, see rl.runtime.model_builder.frozen_copy).
    reference_param_dtype: str = ""

    @property
    def configured(self) -> bool:
        return bool(self.path or self.preset)

    @property
    def published_format(self) -> bool:
        """Scored in the PRM's own token space (not the policy's)."""
        return self.format not in ("", "own")

    @classmethod
    def from_section(cls, name: str, cd: Mapping[str, Any] | None) -> ModelSpec:
        values = dict(cd.items()) if cd is not None else {}
        values.pop("name", None)  # a spec read back from a run's config.json carries its name
        known = {f.name for f in dataclasses.fields(cls)} - {"name"}
        for key in values:
            if key not in known:
                raise ConfigError(
                    f"config.{name}.{key}={values[key]!r}: unknown key; known keys: {sorted(known)}"
                )
        overrides = values.pop("overrides", None) or {}
        spec = cls(name=name, overrides=tuple(sorted(dict(overrides).items())), **values)
        if spec.path and spec.preset:
            raise ConfigError(
                f"config.{name}.preset={spec.preset!r}: give path or preset, not both "
                f"(path={spec.path!r})"
            )
        if (
            spec.preset
            and not spec.preset.startswith("qwen2_like:")
            and (spec.preset not in presets.PRESETS)
        ):
            raise ConfigError(
                f"config.{name}.preset={spec.preset!r}: unknown; known: {sorted(presets.PRESETS)}"
            )
        for field in ("dtype", "param_dtype"):
            if getattr(spec, field) not in ("float32", "bfloat16"):
                raise ConfigError(
                    f"config.{name}.{field}={getattr(spec, field)!r}: must be "
                    "'float32' or 'bfloat16'"
                )
        formats = PRM_FORMATS if name == "prm" else ("own",)
        if spec.format and spec.format not in formats:
            raise ConfigError(
                f"config.{name}.format={spec.format!r}: must be '' (detect) or one of {formats}"
            )
        for field in ("max_input_len", "max_steps"):
            value = getattr(spec, field)
            if not isinstance(value, int) or isinstance(value, bool) or value < 0:
                raise ConfigError(f"config.{name}.{field}={value!r}: must be an integer >= 0")
        if spec.reference_param_dtype not in ("", "float32", "bfloat16"):
            raise ConfigError(
                f"config.{name}.reference_param_dtype={spec.reference_param_dtype!r}: must be '' "
                "(the policy's), 'float32' or 'bfloat16'"
            )
        if spec.reference_param_dtype and name != "policy":
            raise ConfigError(
                f"config.{name}.reference_param_dtype={spec.reference_param_dtype!r}: only the "
                "policy has a PPO reference"
            )
        if spec.ref_path and name != "implicit_prm":
            raise ConfigError(
                f"config.{name}.ref_path={spec.ref_path!r}: only the implicit PRM has a reference"
            )
        if spec.kind not in REWARD_KINDS:
            raise ConfigError(f"config.{name}.kind={spec.kind!r}: must be one of {REWARD_KINDS}")
        return spec
