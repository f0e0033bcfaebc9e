"""The validated configuration of a reward-model run (``python -m rl.train_rm``), built from its
config file's ConfigDict: every section is a dataclass, and an unknown or bad key raises
``rl.config.ConfigError`` naming it (``config.data.source='nope': ...``).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import ml_collections

from rl.config import ConfigError, MeshConfig, ModelSpec, section
from rl.reward_models.modeling import HEADS
from rl.reward_models.training import RMTrainConfig

SOURCES = ("synthetic", "auto", "math_shepherd", "prm800k", "math_aps", "jsonl")


@dataclasses.dataclass(frozen=True)
class RMDataConfig:
    """Where labelled solutions come from and how they are laid out.

    source: synthetic (toy solutions with wrong steps, labels from the arithmetic check) | auto
    (sample from ``policy``, label steps by completions) | math_shepherd | prm800k | math_aps |
    jsonl (a ``labels.jsonl`` written by an earlier run), the files read from ``path``. dataset: the
    problems for ``auto`` and the prompt format (its instruction) for every source.
    """

    source: str = "synthetic"
    path: str = ""
    dataset: str = "toy"
    split: str = "train"
    data_dir: str = ""
    num_problems: int = 256
    samples_per_problem: int = 4
    max_prompt_len: int = 32
    max_response_len: int = 96
    step_separator: str = "\n"
    heldout_fraction: float = 0.1
    prm800k_neutral: float = 1.0
    toy_seed: int = 0
    toy_error_prob: float = 0.5
    toy_spec: tuple[tuple[str, Any], ...] = ()

    def validate(self, prefix: str = "data") -> RMDataConfig:
        def fail(key, why):
            raise ConfigError(f"config.{prefix}.{key}={getattr(self, key)!r}: {why}")

        if self.source not in SOURCES:
            fail("source", f"must be one of {SOURCES}")
        if self.source in ("math_shepherd", "prm800k", "math_aps", "jsonl") and not self.path:
            fail("path", f"source={self.source!r} reads a file: set data.path")
        for key in ("num_problems", "samples_per_problem", "max_prompt_len", "max_response_len"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                fail(key, "must be an integer >= 1")
        for key in ("heldout_fraction", "prm800k_neutral", "toy_error_prob"):
            if not isinstance(getattr(self, key), (int, float)) or not 0 <= getattr(self, key) <= 1:
                fail(key, "must be in [0, 1]")
        if self.heldout_fraction >= 1:
            fail("heldout_fraction", "must leave training rows (< 1)")
        if not isinstance(self.step_separator, str) or not self.step_separator:
            fail("step_separator", "must be a non-empty string")
        return self


@dataclasses.dataclass(frozen=True)
class RMModelConfig:
    """The model to train (orm/prm): from ``path`` (an HF checkpoint whose backbone is reused),
    from the policy's backbone (``init_from_policy``), or a random ``preset``; ``head`` is scalar |
    two_class. ``likelihood_lm`` (a PRM with a scalar head): an HF causal LM whose least likely
    step so far the saved PRM's step score also reads, with weights fitted to the step labels
    after training (``models.likelihood_prm``; usually the policy the labels were sampled from)."""

    path: str = ""
    preset: str = "tiny"
    seed: int = 0
    head: str = "scalar"
    init_from_policy: bool = False
    likelihood_lm: str = ""

    def validate(self, prefix: str = "model") -> RMModelConfig:
        if self.head not in HEADS:
            raise ConfigError(f"config.{prefix}.head={self.head!r}: must be one of {HEADS}")
        return self


@dataclasses.dataclass(frozen=True)
class LabelConfig:
    """Automatic labelling (source=auto): completions per prefix, soft (fraction) or hard (any)."""

    k_completions: int = 8
    hard: bool = False
    temperature: float = 1.0
    max_new_tokens: int = 96
    prompts_per_call: int = 16

    def validate(self, prefix: str = "label") -> LabelConfig:
        for key in ("k_completions", "max_new_tokens", "prompts_per_call"):
            value = getattr(self, key)
            if not isinstance(value, int) or isinstance(value, bool) or value < 1:
                raise ConfigError(f"config.{prefix}.{key}={value!r}: must be an integer >= 1")
        if not isinstance(self.temperature, (int, float)) or self.temperature < 0:
            raise ConfigError(f"config.{prefix}.temperature={self.temperature!r}: must be >= 0")
        return self


@dataclasses.dataclass(frozen=True)
class RMRunConfig:
    """One reward-model run, every section validated (``from_config_dict``)."""

    seed: int
    tokenizer: str
    policy: ModelSpec
    model: RMModelConfig
    data: RMDataConfig
    label: LabelConfig
    train: RMTrainConfig
    mesh: MeshConfig

    @classmethod
    def from_config_dict(cls, cfg: ml_collections.ConfigDict) -> RMRunConfig:
        data = _plain(cfg.get("data"))
        data["toy_spec"] = tuple(sorted(_plain(data.get("toy_spec")).items()))
        train = _plain(cfg.get("train"))
        if "kind" in train:
            raise ConfigError(f"config.train.kind={train['kind']!r}: set the top-level config.kind")
        train.update(kind=cfg.get("kind", "prm"), seed=cfg.get("seed", 0))
        run = cls(
            seed=cfg.get("seed", 0),
            tokenizer=cfg.get("tokenizer", ""),
            policy=ModelSpec.from_section("policy", cfg.get("policy")),
            model=section(RMModelConfig, cfg.get("model"), "model"),
            data=section(RMDataConfig, data, "data"),
            label=section(LabelConfig, cfg.get("label"), "label"),
            train=section(RMTrainConfig, train, "train"),
            mesh=section(MeshConfig, cfg.get("mesh"), "mesh"),
        )
        if run.needs_policy and not run.policy.configured:
            raise ConfigError(
                f"config.policy.path='': kind={run.train.kind!r} with "
                f"data.source={run.data.source!r}, model.init_from_policy="
                f"{run.model.init_from_policy} needs a policy (path or preset)"
            )
        if run.model.likelihood_lm and (run.train.kind != "prm" or run.model.head != "scalar"):
            raise ConfigError(
                f"config.model.likelihood_lm={run.model.likelihood_lm!r}: needs kind='prm' and "
                f"model.head='scalar', not kind={run.train.kind!r}, head={run.model.head!r}"
            )
        if run.data.source == "auto" and run.data.max_response_len <= run.label.max_new_tokens:
            raise ConfigError(
                f"config.data.max_response_len={run.data.max_response_len}: must "
                f"exceed label.max_new_tokens={run.label.max_new_tokens} (a sampled "
                "solution plus EOS must fit)"
            )
        return run

    @property
    def needs_policy(self) -> bool:
        """The run samples from the policy, pairs with it as pi_ref, or copies its backbone."""
        return (
            self.data.source == "auto"
            or self.train.kind == "implicit_prm"
            or self.model.init_from_policy
        )


def _plain(cd: Any) -> dict[str, Any]:
    if cd is None:
        return {}
    return dict(cd.to_dict() if hasattr(cd, "to_dict") else cd)
