"""Reward-model training entry point: ORM, PRM or implicit PRM from labelled solutions.

    python -m rl.train_rm --config=configs/rm_smoke.py --workdir=/tmp/rm_smoke
    python -m rl.train_rm --config=configs/rm_toy.py:prm --workdir=runs/prm \\
        --config.data.source=auto --config.policy.path=runs/sft/policy

Writes to the workdir: ``labels.jsonl`` (the labelled solutions used), ``metrics.jsonl``
(training metrics), ``eval.json`` (held-out and training metrics) and ``model/`` (a Hugging Face
checkpoint with the tokenizer and ``reward_model.json``;
``rl.reward_models.training.load_reward_model`` reads it back).
Re-running overwrites them.
"""

from __future__ import annotations

import dataclasses
import json
import logging
import math
import pathlib
from typing import Any

import ml_collections
from absl import app, flags
from ml_collections import config_flags

from rl.config import ConfigError, MeshConfig, section
from rl.reward_models.training import HEADS, RMTrainConfig

log = logging.getLogger(__name__)

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
    two_class."""

    path: str = ""
    preset: str = "tiny"
    seed: int = 0
    head: str = "scalar"
    init_from_policy: bool = False

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
    seed: int
    tokenizer: str
    policy: Any  # rl.runtime.model_builder.ModelSpec
    model: RMModelConfig
    data: RMDataConfig
    label: LabelConfig
    train: RMTrainConfig
    mesh: MeshConfig

    @classmethod
    def from_config_dict(cls, cfg: ml_collections.ConfigDict) -> RMRunConfig:
        from rl.runtime.model_builder import ModelSpec

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
        needs_policy = (
            run.data.source == "auto"
            or run.train.kind == "implicit_prm"
            or run.model.init_from_policy
        )
        if needs_policy and not run.policy.configured:
            raise ConfigError(
                f"config.policy.path='': kind={run.train.kind!r} with "
                f"data.source={run.data.source!r}, model.init_from_policy="
                f"{run.model.init_from_policy} needs a policy (path or preset)"
            )
        if run.data.source == "auto" and run.data.max_response_len <= run.label.max_new_tokens:
            raise ConfigError(
                f"config.data.max_response_len={run.data.max_response_len}: must "
                f"exceed label.max_new_tokens={run.label.max_new_tokens} (a sampled "
                "solution plus EOS must fit)"
            )
        return run


def _plain(cd: Any) -> dict[str, Any]:
    if cd is None:
        return {}
    return dict(cd.to_dict() if hasattr(cd, "to_dict") else cd)


# --- The run --------------------------------------------------------------------------------------


def load_tokenizer(cfg: RMRunConfig):
    """config.tokenizer, else the policy's or the init model's checkpoint, else the toy's."""
    from rl.reward_models.training import load_tokenizer as load_saved

    for path in (cfg.tokenizer, cfg.policy.path, cfg.model.path):
        if path:
            return load_saved(path)
    if cfg.data.dataset == "toy":
        from rl.data.toy_tokenizer import toy_tokenizer

        return toy_tokenizer()
    raise ConfigError(
        f"config.tokenizer='': data.dataset={cfg.data.dataset!r} with no checkpoint "
        "path needs a tokenizer directory"
    )


def problems(cfg: RMDataConfig):
    """The problems to sample (source=auto): the first ``num_problems`` of the split."""
    from rl.data.example import Example

    if cfg.dataset == "toy":  # The builder's rows, without building its TFDS cache.
        from rl.data import toy

        return [
            Example(r.id, r.problem.question, str(r.problem.answer), r.solution)
            for r in toy.generate(cfg.split, cfg.num_problems, seed=cfg.toy_seed)
        ]
    from rl import data as data_lib

    return data_lib.load(cfg.dataset, cfg.split, data_dir=cfg.data_dir or None)[: cfg.num_problems]


def labelled_data(cfg: RMRunConfig, tokenizer, policy, system_prompt, mesh, rules):
    from rl.reward_models import data as rd
    from rl.reward_models import labels as labels_lib

    d = cfg.data
    if d.source == "synthetic":
        from rl.data import toy

        spec = toy.ToySpec(**dict(d.toy_spec))
        return rd.toy_step_labelled(
            d.split, d.num_problems, seed=d.toy_seed, error_prob=d.toy_error_prob, spec=spec
        )
    if d.source == "jsonl":
        return rd.load_jsonl(d.path)
    if d.source != "auto":
        kwargs = {"neutral": d.prm800k_neutral} if d.source == "prm800k" else {}
        if d.source == "math_aps":
            kwargs = {"sep": d.step_separator}
        return rd.read_process_labels(d.source, d.path, **kwargs)
    from rewards.verify import Verifier
    from rl.rollout.sampler import SamplerConfig
    from rl.trainers.ppo_trainer import stop_token_ids

    lc = cfg.label
    sampling = SamplerConfig(
        max_new_tokens=lc.max_new_tokens,
        temperature=lc.temperature,
        eos_ids=stop_token_ids(tokenizer),
        pad_id=tokenizer.pad_token_id or 0,
    )
    completer = labels_lib.SamplerCompleter(
        policy,
        tokenizer,
        sampling,
        max_prompt_len=d.max_prompt_len + lc.max_new_tokens,
        prompts_per_call=lc.prompts_per_call,
        system_prompt=system_prompt,
        seed=cfg.seed,
        mesh=mesh,
        rules=rules,
    )
    with Verifier() as verifier:
        return labels_lib.auto_label(
            problems(d),
            completer,
            samples_per_problem=d.samples_per_problem,
            k_completions=lc.k_completions,
            sep=d.step_separator,
            hard=lc.hard,
            verify=lambda texts, answers: verifier.check_batch(texts, answers).rewards,
        )


def run(cfg: RMRunConfig, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Label (or read) data, train the reward model, evaluate it, save it; returns the evaluation
    and the paths written."""
    import jax

    from configs.sharding import RULES
    from models import hf_io
    from models.sharding import make_mesh
    from rl.data.prompts import system_prompt_for
    from rl.reward_models import data as rd
    from rl.reward_models import training as rt
    from rl.runtime import model_builder as models_setup

    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shape = cfg.mesh.shape
    # A shape without -1 uses the first prod(shape) devices (e.g. (1, 1, 1): one device).
    devices = None if -1 in shape else jax.devices()[: math.prod(shape)]
    mesh, rules = make_mesh(shape, devices=devices), RULES
    tokenizer = load_tokenizer(cfg)
    system_prompt = system_prompt_for(cfg.data.dataset)
    kind = cfg.train.kind
    needs_policy = cfg.data.source == "auto" or kind == "implicit_prm" or cfg.model.init_from_policy
    policy = (
        models_setup.build_causal_lm(cfg.policy, tokenizer, mesh, rules) if needs_policy else None
    )

    examples = labelled_data(cfg, tokenizer, policy, system_prompt, mesh, rules)
    rd.save_jsonl(workdir / "labels.jsonl", examples)
    arrays = rd.encode(
        examples,
        tokenizer,
        max_prompt_len=cfg.data.max_prompt_len,
        max_response_len=cfg.data.max_response_len,
        sep=cfg.data.step_separator,
        system_prompt=system_prompt,
    )
    train, heldout = rd.split_heldout(arrays, cfg.data.heldout_fraction, seed=cfg.seed)
    log.info(
        "%d labelled solutions: %d train, %d held out", len(examples), len(train), len(heldout)
    )

    reference = None
    if kind == "implicit_prm":
        reference = policy
        model = rt.new_implicit_prm(policy)
    else:
        m = cfg.model
        if m.path:
            init = hf_io.load_causal_lm(m.path, mesh=mesh, rules=rules)
            model = rt.new_reward_model(
                head=m.head, seed=m.seed, policy=init, mesh=mesh, rules=rules
            )
        elif m.init_from_policy:
            model = rt.new_reward_model(
                head=m.head, seed=m.seed, policy=policy, mesh=mesh, rules=rules
            )
        else:
            spec = models_setup.ModelSpec(name="model", preset=m.preset, seed=m.seed)
            model = rt.new_reward_model(
                models_setup.model_config(spec, tokenizer),
                head=m.head,
                seed=m.seed,
                mesh=mesh,
                rules=rules,
            )

    with (workdir / "metrics.jsonl").open("w") as f:

        def log_fn(record):
            f.write(json.dumps(record) + "\n")
            f.flush()
            log.info("step %d: %s", record["step"], record)

        model, _ = rt.train_reward_model(
            model, train, cfg.train, reference=reference, mesh=mesh, rules=rules, log_fn=log_fn
        )

    def evaluate(a):
        if len(a) == 0:
            return {}
        b = cfg.train.batch_size  # the shape the reference's log-probs were compiled for
        if kind == "prm":
            return rt.evaluate_prm(model, a, batch_size=b)
        if kind == "orm":
            return rt.evaluate_orm(model, a, batch_size=b)
        return rt.evaluate_implicit_prm(model, reference, a, cfg.train.beta, batch_size=b)

    result = {
        "eval": {"heldout": evaluate(heldout), "train": evaluate(train)},
        "model": str(workdir / "model"),
        "labels": str(workdir / "labels.jsonl"),
        "num_examples": len(examples),
        "num_train": len(train),
        "num_heldout": len(heldout),
    }
    (workdir / "eval.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    rt.save_reward_model(
        model,
        workdir / "model",
        kind=kind,
        tokenizer=tokenizer,
        beta=cfg.train.beta if kind == "implicit_prm" else None,
        step_separator=cfg.data.step_separator,
        data_source=cfg.data.source,
        eval=result["eval"],
    )
    return result


_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/NAME.py[:ARG]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
    del argv
    try:
        cfg = RMRunConfig.from_config_dict(_CONFIG.value)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    result = run(cfg, pathlib.Path(_WORKDIR.value))
    print(json.dumps(result["eval"], indent=2, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
