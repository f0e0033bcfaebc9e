"""The edge between ``ml_collections`` configs and the code: frozen, validated dataclasses.

Config files (``configs/*.py``) build a ``ConfigDict`` that users override from the command line
(``--config.reward.prm_transform=clip``). It is converted once, here, into the dataclasses below;
everything past this point takes those or explicit arguments, never the ConfigDict. Validation runs
before anything is compiled, and every error names the config key and the offending value.

    python -m rl.config --config=configs/smoke.py --config.reward.prm_weight=0.5

prints the resolved, validated configuration as JSON.
"""

from __future__ import annotations

import dataclasses
import json
import pathlib
from collections.abc import Mapping
from typing import Any

from rewards.shaping import KL_ESTIMATORS, PRM_TRANSFORMS
from rl import config_prime
from rl.config_base import (
    MESH_AXES,
    ConfigError,
    MeshConfig,
    ModelSpec,
    _check_sampler_logp,
    _fail,
    _int_at_least,
    _one_of,
    _positive,
    _unit_interval,
)
from rl.config_batch import split_batch

__all__ = [
    "ADVANTAGE_ESTIMATORS",
    "MESH_AXES",
    "MODEL_SECTIONS",
    "DATA_FILE_SUFFIXES",
    "ConfigError",
    "DataConfig",
    "MeshConfig",
    "ModelSpec",
    "OptimConfig",
    "PATTERN_WHEN",
    "PPOConfig",
    "RLConfig",
    "RewardConfig",
    "RolloutConfig",
    "TrainConfig",
    "section",
]


# Where the reasoning-pattern reward applies (rl.algo.patterns).
PATTERN_WHEN = ("always", "wrong")

# rl.algo.gae (with the critic) and the critic-free estimators of rl.algo.advantages.
ADVANTAGE_ESTIMATORS = ("gae", "grpo", "rloo", "reinforce_pp")


@dataclasses.dataclass(frozen=True)
class RewardConfig:
    """Which reward the policy is trained on (``rewards.shaping.combine``).

    r_t = (success_weight*SR + pattern_weight*RPR)*[t=last] + orm_weight*ORM*[t=last]
          + prm_weight*shape(PRM)_t + implicit_prm_weight*implicit_t - kl_coef*KL_t

    RPR is the reasoning-pattern reward of the response's text (``rewards.patterns``, arXiv
    2505.22653; ``rl.algo.patterns`` says where it applies): ``pattern_when="always"`` adds it to
    every answered response, ``"wrong"`` only where the (noisy) success is below 0.5, the paper's
    calibration of a noisy verifier. An empty ``pattern_phrases`` is the project's default list.
    """

    success_weight: float = 1.0
    orm_weight: float = 0.0
    prm_weight: float = 0.0
    prm_transform: str = "raw"
    prm_eta: float = 0.5
    prm_min_form_temperature: float = 0.0  # min_form: 0 exact; > 0 PURE's softmax weights
    prm_potential_terminal: bool = False  # potential: -s_K at the last step (PRM return 0)
    implicit_prm_weight: float = 0.0
    implicit_prm_beta: float = 0.05
    # PRIME (rl.trainers.implicit_prm_online): the implicit PRM updated on every iteration's
    # outcomes before its rewards are read, by its own AdamW; checks in rl.config_prime.
    implicit_prm_online: bool = False
    implicit_prm_lr: float = 1e-6
    implicit_prm_grad_clip: float = 10.0
    implicit_prm_minibatches: int = 1  # optimizer steps per iteration (one pass over the rows)
    implicit_prm_microbatches: int = 1  # gradient accumulation within a minibatch
    gated: bool = False
    gate_threshold: float = 1.0
    kl_coef: float = 0.0
    kl_estimator: str = "k1"
    kl_in: str = "reward"
    success_flip_prob: float = 0.0
    pattern_weight: float = 0.0
    pattern_phrases: tuple[str, ...] = ()  # () is rewards.patterns.DEFAULT_PHRASES
    pattern_scale: float = 0.2  # reward per distinct phrase present ...
    pattern_cap: float = 1.0  # ... up to this cap (then minus the repeated-step fraction)
    pattern_when: str = "always"  # always | wrong: only where the success reward is below 0.5
    pattern_requires_answer: bool = True  # no RPR for a response that states no final answer

    def validate(self, prefix: str = "reward") -> RewardConfig:
        for name in (
            "success_weight",
            "orm_weight",
            "prm_weight",
            "implicit_prm_weight",
            "kl_coef",
            "pattern_weight",
            "pattern_scale",
            "pattern_cap",
        ):
            _positive(f"{prefix}.{name}", getattr(self, name), allow_zero=True)
        _one_of(f"{prefix}.prm_transform", self.prm_transform, PRM_TRANSFORMS)
        _unit_interval(f"{prefix}.prm_eta", self.prm_eta)
        _positive(
            f"{prefix}.prm_min_form_temperature", self.prm_min_form_temperature, allow_zero=True
        )
        if not isinstance(self.prm_potential_terminal, bool):
            _fail(
                f"{prefix}.prm_potential_terminal",
                self.prm_potential_terminal,
                "must be True or False",
            )
        _positive(f"{prefix}.implicit_prm_beta", self.implicit_prm_beta)
        _one_of(f"{prefix}.kl_estimator", self.kl_estimator, KL_ESTIMATORS)
        _one_of(f"{prefix}.kl_in", self.kl_in, ("reward", "loss"))
        _unit_interval(f"{prefix}.success_flip_prob", self.success_flip_prob)
        for name in ("gated", "pattern_requires_answer"):
            if not isinstance(getattr(self, name), bool):
                _fail(f"{prefix}.{name}", getattr(self, name), "must be True or False")
        _one_of(f"{prefix}.pattern_when", self.pattern_when, PATTERN_WHEN)
        phrases = self.pattern_phrases
        if not isinstance(phrases, tuple) or not all(isinstance(p, str) and p for p in phrases):
            _fail(f"{prefix}.pattern_phrases", phrases, "must be a tuple of non-empty strings")
        config_prime.validate_reward(self, prefix)
        return self

    @property
    def uses_prm(self) -> bool:
        return self.prm_weight > 0

    @property
    def uses_orm(self) -> bool:
        return self.orm_weight > 0

    @property
    def uses_implicit_prm(self) -> bool:
        return self.implicit_prm_weight > 0


@dataclasses.dataclass(frozen=True)
class PPOConfig:
    gamma: float = 1.0
    lam: float = 0.95  # GAE lambda of the actor's advantages
    # GAE lambda of the critic's targets (VC-PPO: 1); None: the actor's lam.
    critic_lam: float | None = None
    clip_eps: float = 0.2
    dual_clip: float = 0.0  # 0 disables; otherwise c > 1 bounds the loss of negative advantages
    value_clip: float = 0.2
    vf_coef: float = 0.5
    entropy_coef: float = 0.0
    epochs: int = 2
    minibatches: int = 2
    microbatches: int = 1
    # Rows per microbatch (0: off). Sizes the update by memory, not by the rollout: the number of
    # microbatches is derived from it (RLConfig resolves ``microbatches``), so that raising
    # data.samples_per_prompt keeps each microbatch the same size. With it set, an explicit
    # ``microbatches`` other than 1 must equal the derived number.
    microbatch_rows: int = 0
    whiten_advantages: bool = True
    # gae (the critic) | grpo | rloo | reinforce_pp (rl.algo.advantages); the group estimators
    # need several samples per prompt.
    advantage: str = "gae"
    # GAE only: the first iterations train the critic alone on their rollouts (the policy does
    # not move), so the actor's first advantages come from a critic that has seen returns.
    critic_warmup_iterations: int = 0

    def validate(self, prefix: str = "ppo") -> PPOConfig:
        _one_of(f"{prefix}.advantage", self.advantage, ADVANTAGE_ESTIMATORS)
        _int_at_least(f"{prefix}.critic_warmup_iterations", self.critic_warmup_iterations, 0)
        if self.critic_warmup_iterations and self.advantage != "gae":
            _fail(
                f"{prefix}.critic_warmup_iterations",
                self.critic_warmup_iterations,
                f"warms up the critic, and ppo.advantage={self.advantage!r} has none "
                "(only 'gae' does)",
            )
        _unit_interval(f"{prefix}.gamma", self.gamma)
        _unit_interval(f"{prefix}.lam", self.lam)
        if self.critic_lam is not None:
            _unit_interval(f"{prefix}.critic_lam", self.critic_lam)
        _positive(f"{prefix}.clip_eps", self.clip_eps)
        if self.dual_clip != 0 and not (
            isinstance(self.dual_clip, (int, float)) and self.dual_clip > 1
        ):
            _fail(f"{prefix}.dual_clip", self.dual_clip, "must be 0 (off) or a number > 1")
        for name in ("value_clip", "vf_coef", "entropy_coef"):
            _positive(f"{prefix}.{name}", getattr(self, name), allow_zero=True)
        for name in ("epochs", "minibatches", "microbatches"):
            _int_at_least(f"{prefix}.{name}", getattr(self, name), 1)
        _int_at_least(f"{prefix}.microbatch_rows", self.microbatch_rows, 0)
        return self


@dataclasses.dataclass(frozen=True)
class OptimConfig:
    learning_rate: float = 1e-6
    critic_learning_rate: float = 5e-6
    schedule: str = "constant"
    warmup_steps: int = 0
    max_grad_norm: float = 1.0
    weight_decay: float = 0.0
    b1: float = 0.9
    b2: float = 0.95

    def validate(self, prefix: str = "optim") -> OptimConfig:
        _positive(f"{prefix}.learning_rate", self.learning_rate)
        _positive(f"{prefix}.critic_learning_rate", self.critic_learning_rate)
        _one_of(f"{prefix}.schedule", self.schedule, ("constant", "cosine"))
        _int_at_least(f"{prefix}.warmup_steps", self.warmup_steps, 0)
        _positive(f"{prefix}.max_grad_norm", self.max_grad_norm)
        _positive(f"{prefix}.weight_decay", self.weight_decay, allow_zero=True)
        _unit_interval(f"{prefix}.b1", self.b1)
        _unit_interval(f"{prefix}.b2", self.b2)
        return self


@dataclasses.dataclass(frozen=True)
class RolloutConfig:
    max_new_tokens: int = 256
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0  # 0 disables
    stop_strings: tuple[str, ...] = ()
    # The sampler's LM head: "" the model's compute dtype; "bfloat16" a bf16 copy of the head
    # matrix (faster decoding where the head's read bounds a step; rl.rollout.sampler_config).
    head_dtype: str = ""
    # Rows per block of the scoring pass (every model over the rollout; 0: the whole batch at
    # once). With hundreds of samples per prompt the batch's [rows, S, V] logits would not fit;
    # rl.algo.row_chunks runs the pass block by block. Need not divide the rows (the last block
    # is padded); must split over the mesh's data x fsdp devices (checked by the trainer).
    score_rows: int = 0
    # PPO's old log-probs: "sampler" (the sampler's own; no policy pass in scoring, ratio 1 within
    # rounding) or "recompute" (the policy in scoring; needed where the sampled law is filtered).
    old_logp: str = "sampler"

    def validate(self, prefix: str = "rollout") -> RolloutConfig:
        _one_of(f"{prefix}.head_dtype", self.head_dtype, ("", "bfloat16", "float32"))
        _one_of(f"{prefix}.old_logp", self.old_logp, ("sampler", "recompute"))
        _check_sampler_logp(prefix, self)
        _int_at_least(f"{prefix}.max_new_tokens", self.max_new_tokens, 1)
        _int_at_least(f"{prefix}.score_rows", self.score_rows, 0)
        _positive(f"{prefix}.temperature", self.temperature, allow_zero=True)
        if not (isinstance(self.top_p, (int, float)) and 0 < self.top_p <= 1):
            _fail(f"{prefix}.top_p", self.top_p, "must be in (0, 1]")
        _int_at_least(f"{prefix}.top_k", self.top_k, 0)
        return self


@dataclasses.dataclass(frozen=True)
class DataConfig:
    dataset: str = "gsm8k"
    split: str = "train"
    prompts_per_batch: int = 8
    samples_per_prompt: int = 4
    max_prompt_len: int = 256
    step_separator: str = "\n\n"
    # The toy task is generated from a seed; these size it (other datasets ignore them).
    toy_seed: int = 0
    toy_train_size: int = 20_000
    toy_test_size: int = 512
    # Your own problems (rl.data.user_files): a JSONL or Parquet file, or a directory of them, read
    # as split `split` instead of the dataset's; `dataset` still sets the prompt format and the
    # split evaluated (train.eval_split). Rows map to examples through the field names.
    path: str = ""
    question_field: str = "question"
    answer_field: str = "answer"
    id_field: str = ""  # "": ids are FILE/ROW (row: 0-based line or row index)
    allow_malformed: bool = False  # skip malformed rows of `path` (counted and logged), not raise
    # PRIME's prompt filter (rl.data.accuracy_band): () off, else (low, high) of the sampled
    # accuracy; up to filter_rounds batches of prompts are sampled per iteration to fill the batch.
    accuracy_band: tuple[float, ...] = ()
    filter_rounds: int = 4

    def builder_kwargs(self) -> dict:
        if self.dataset != "toy":
            return {}
        return {
            "seed": self.toy_seed,
            "train_size": self.toy_train_size,
            "test_size": self.toy_test_size,
        }

    def validate(self, prefix: str = "data") -> DataConfig:
        _one_of(f"{prefix}.dataset", self.dataset, ("gsm8k", "math", "math500", "toy"))
        _int_at_least(f"{prefix}.prompts_per_batch", self.prompts_per_batch, 1)
        _int_at_least(f"{prefix}.samples_per_prompt", self.samples_per_prompt, 1)
        _int_at_least(f"{prefix}.max_prompt_len", self.max_prompt_len, 1)
        _int_at_least(f"{prefix}.toy_seed", self.toy_seed, 0)
        _int_at_least(f"{prefix}.toy_train_size", self.toy_train_size, 1)
        _int_at_least(f"{prefix}.toy_test_size", self.toy_test_size, 1)
        if not isinstance(self.step_separator, str) or not self.step_separator:
            _fail(f"{prefix}.step_separator", self.step_separator, "must be a non-empty string")
        for name in ("question_field", "answer_field", "id_field"):
            value = getattr(self, name)
            if not isinstance(value, str) or (not value and name != "id_field"):
                _fail(f"{prefix}.{name}", value, "must be a non-empty field name")
        if self.answer_field == self.question_field:
            _fail(f"{prefix}.answer_field", self.answer_field, "must differ from question_field")
        if not isinstance(self.allow_malformed, bool):
            _fail(f"{prefix}.allow_malformed", self.allow_malformed, "must be True or False")
        if not isinstance(self.path, str):
            _fail(f"{prefix}.path", self.path, "must be a path string ('' for the dataset's own)")
        if self.path:
            _check_data_path(f"{prefix}.path", self.path)
        config_prime.validate_data(self, prefix)
        return self


# What data.path may hold (rl.data.user_files reads them).
DATA_FILE_SUFFIXES = (".jsonl", ".parquet")


def _check_data_path(key: str, path: str) -> None:
    p = pathlib.Path(path).expanduser()
    if p.is_file() and p.suffix not in DATA_FILE_SUFFIXES:
        _fail(
            key, path, f"is a {p.suffix or 'suffix-less'} file; must be one of {DATA_FILE_SUFFIXES}"
        )
    elif p.is_dir() and not any(f.suffix in DATA_FILE_SUFFIXES for f in p.iterdir()):
        _fail(key, path, f"is a directory without {' or '.join(DATA_FILE_SUFFIXES)} files")
    elif not p.exists():
        _fail(key, path, "no such file or directory")


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    iterations: int = 100
    checkpoint_every: int = 10
    keep_checkpoints: int = 3
    eval_every: int = 0  # greedy evaluation every N iterations, logged as eval/*; 0: never
    eval_split: str = "test"  # the dataset's split evaluated
    eval_limit: int = 256  # its first N problems (0: all of them)
    max_bad_updates: int = 5  # consecutive non-finite updates tolerated before stopping
    max_failed_verifier_batches: int = 3  # consecutive batches the verifier failed on wholly
    # The first N responses of each iteration, with their rewards, to samples/ITERATION.jsonl
    # (rl.runtime.samples); 0: none.
    log_samples: int = 0

    def validate(self, prefix: str = "train") -> TrainConfig:
        _int_at_least(f"{prefix}.iterations", self.iterations, 1)
        _int_at_least(f"{prefix}.checkpoint_every", self.checkpoint_every, 1)
        _int_at_least(f"{prefix}.keep_checkpoints", self.keep_checkpoints, 1)
        _int_at_least(f"{prefix}.eval_every", self.eval_every, 0)
        _int_at_least(f"{prefix}.eval_limit", self.eval_limit, 0)
        if not isinstance(self.eval_split, str) or not self.eval_split:
            _fail(f"{prefix}.eval_split", self.eval_split, "must be a non-empty split name")
        _int_at_least(f"{prefix}.max_bad_updates", self.max_bad_updates, 1)
        _int_at_least(f"{prefix}.max_failed_verifier_batches", self.max_failed_verifier_batches, 1)
        _int_at_least(f"{prefix}.log_samples", self.log_samples, 0)
        return self


def section(cls: type, cd: Mapping[str, Any] | None, prefix: str):
    """Builds dataclass ``cls`` from a ConfigDict section, naming unknown keys; then validates
    it."""
    values = dict(cd.items()) if cd is not None else {}
    fields = {f.name: f for f in dataclasses.fields(cls)}
    for key in values:
        if key not in fields:
            _fail(f"{prefix}.{key}", values[key], f"unknown key; known keys: {sorted(fields)}")
    for key, value in values.items():
        if isinstance(value, list):
            values[key] = tuple(value)
    return cls(**values).validate(prefix)


MODEL_SECTIONS = ("policy", "prm", "orm", "implicit_prm")


@dataclasses.dataclass(frozen=True)
class RLConfig:
    """Everything a PPO run reads, validated: the trainer takes this, never a ConfigDict."""

    seed: int
    reward: RewardConfig
    ppo: PPOConfig
    optim: OptimConfig
    rollout: RolloutConfig
    data: DataConfig
    mesh: MeshConfig
    train: TrainConfig
    policy: ModelSpec
    prm: ModelSpec
    orm: ModelSpec
    implicit_prm: ModelSpec
    tokenizer: str = ""  # tokenizer directory; default: the policy checkpoint's, or the toy task's
    data_dir: str = ""  # the TFDS build cache; default: rl.data.paths
    verifier_workers: int = 2

    @classmethod
    def from_config_dict(cls, cfg: Mapping[str, Any]) -> RLConfig:
        _int_at_least("seed", cfg.get("seed", 0), 0)
        _int_at_least("verifier_workers", cfg.get("verifier_workers", 2), 1)
        for key in ("tokenizer", "data_dir"):
            if not isinstance(cfg.get(key, ""), str):
                _fail(key, cfg.get(key), "must be a path string ('' for the default)")
        run = cls(
            seed=cfg.get("seed", 0),
            reward=section(RewardConfig, cfg.get("reward"), "reward"),
            ppo=section(PPOConfig, cfg.get("ppo"), "ppo"),
            optim=section(OptimConfig, cfg.get("optim"), "optim"),
            rollout=section(RolloutConfig, cfg.get("rollout"), "rollout"),
            data=section(DataConfig, cfg.get("data"), "data"),
            mesh=section(MeshConfig, cfg.get("mesh"), "mesh"),
            train=section(TrainConfig, cfg.get("train"), "train"),
            **{name: ModelSpec.from_section(name, cfg.get(name)) for name in MODEL_SECTIONS},
            tokenizer=cfg.get("tokenizer", "") or "",
            data_dir=cfg.get("data_dir", "") or "",
            verifier_workers=cfg.get("verifier_workers", 2),
        )
        # The rows' split into minibatches and microbatches (ppo.microbatch_rows resolved).
        split = split_batch(run.data, run.ppo)
        run = dataclasses.replace(
            run, ppo=dataclasses.replace(run.ppo, microbatches=split.microbatches)
        )
        rc = run.reward
        config_prime.check_online(rc, run.data, run.implicit_prm)
        for name, used in (
            ("prm", rc.uses_prm),
            ("orm", rc.uses_orm),
            ("implicit_prm", rc.uses_implicit_prm),
        ):
            if used and not getattr(run, name).configured:
                _fail(
                    f"{name}.path",
                    "",
                    f"reward uses {name} (weight > 0) but no {name}.path or {name}.preset is set",
                )
        if not run.policy.configured:
            _fail("policy.path", "", "set policy.path or policy.preset")
        if run.rollout.temperature == 0 and run.data.samples_per_prompt > 1:
            _fail(
                "rollout.temperature",
                0,
                f"greedy decoding gives data.samples_per_prompt={run.data.samples_per_prompt} "
                "identical samples per prompt; use a temperature > 0 or one sample",
            )
        if run.implicit_prm.ref_path and not rc.uses_implicit_prm:
            _fail("implicit_prm.ref_path", run.implicit_prm.ref_path, "set without an implicit PRM")
        if run.ppo.critic_warmup_iterations >= run.train.iterations:
            _fail(
                "ppo.critic_warmup_iterations",
                run.ppo.critic_warmup_iterations,
                f"must be below train.iterations={run.train.iterations} (the policy would "
                "never train)",
            )
        estimator = run.ppo.advantage
        if estimator in ("grpo", "rloo") and run.data.samples_per_prompt < 2:
            _fail(
                "ppo.advantage",
                estimator,
                f"compares the samples of a prompt: needs data.samples_per_prompt >= 2, got "
                f"{run.data.samples_per_prompt}",
            )
        if estimator == "grpo" and rc.kl_coef > 0 and rc.kl_in == "reward":
            _fail(
                "ppo.advantage",
                estimator,
                "normalises the rewards at reward positions (step ends, last token); a per-token "
                "KL penalty in the reward has no place there: set reward.kl_in='loss' (as GRPO "
                "does) or reward.kl_coef=0",
            )
        return run

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


def main(argv: list[str]) -> None:
    del argv
    try:
        print(RLConfig.from_config_dict(_CONFIG.value).to_json())
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


if __name__ == "__main__":
    from absl import app
    from ml_collections import config_flags

    _CONFIG = config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/NAME.py[:ARG]).", lock_config=True
    )
    app.run(main)
