"""One reward-model run, start to finish: label (or read) solutions, encode them, build and train
the reward model, evaluate it, save it. ``python -m rl.train_rm`` parses its flags and calls
``run``.

Writes to the workdir: ``labels.jsonl`` (the labelled solutions used), ``metrics.jsonl``
(training metrics), ``eval.json`` (held-out and training metrics) and ``model/`` (a Hugging Face
checkpoint with the tokenizer and ``reward_model.json``; ``models.reward_io.load_reward_model``
reads it back). Re-running overwrites them.
"""

from __future__ import annotations

import json
import logging
import math
import pathlib
from typing import Any

import jax

from models import hf_io
from models.reward_io import save_reward_model
from models.sharding import make_mesh
from rewards.verify import Verifier
from rl import data as data_lib
from rl.config import ModelSpec
from rl.data import toy
from rl.data.example import Example
from rl.data.prompts import system_prompt_for
from rl.reward_models import data as rd
from rl.reward_models import evaluation, labels, likelihood, modeling, sources
from rl.reward_models.run_config import RMDataConfig, RMRunConfig
from rl.reward_models.training import train_reward_model
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.tokenizer import load_tokenizer, stop_token_ids
from rl.runtime import model_builder

log = logging.getLogger(__name__)


def problems(cfg: RMDataConfig) -> list[Example]:
    """The problems to sample (source=auto): the first ``num_problems`` of the split."""
    if cfg.dataset == "toy":  # The builder's rows, without building its TFDS cache.
        return [
            Example(r.id, r.problem.question, str(r.problem.answer), r.solution)
            for r in toy.generate(cfg.split, cfg.num_problems, seed=cfg.toy_seed)
        ]
    return data_lib.load(cfg.dataset, cfg.split, data_dir=cfg.data_dir or None)[: cfg.num_problems]


def labelled_data(
    cfg: RMRunConfig, tokenizer, policy, system_prompt, mesh, rules
) -> list[rd.StepLabelled]:
    """The run's labelled solutions: synthetic, read from a file, or labelled by completions
    sampled from ``policy`` (source=auto) and graded by the verifier."""
    d = cfg.data
    if d.source == "synthetic":
        spec = toy.ToySpec(**dict(d.toy_spec))
        return sources.toy_step_labelled(
            d.split, d.num_problems, seed=d.toy_seed, error_prob=d.toy_error_prob, spec=spec
        )
    if d.source == "jsonl":
        return sources.load_jsonl(d.path)
    if d.source != "auto":
        kwargs = {"neutral": d.prm800k_neutral} if d.source == "prm800k" else {}
        if d.source == "math_aps":
            kwargs = {"sep": d.step_separator}
        return sources.read_process_labels(d.source, d.path, **kwargs)
    lc = cfg.label
    sampling = SamplerConfig(
        max_new_tokens=lc.max_new_tokens,
        temperature=lc.temperature,
        eos_ids=stop_token_ids(tokenizer),
        pad_id=tokenizer.pad_token_id or 0,
    )
    completer = labels.SamplerCompleter(
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
        return labels.auto_label(
            problems(d),
            completer,
            samples_per_problem=d.samples_per_problem,
            k_completions=lc.k_completions,
            sep=d.step_separator,
            hard=lc.hard,
            verify=lambda texts, answers: verifier.check_batch(texts, answers).rewards,
        )


def build_model(cfg: RMRunConfig, tokenizer, policy, mesh, rules):
    """The model to train: pi (a copy of the policy) for the implicit PRM; else a RewardModel on
    an init checkpoint's backbone, the policy's, or a random preset's."""
    if cfg.train.kind == "implicit_prm":
        return modeling.new_implicit_prm(policy)
    m = cfg.model
    if m.path:
        init = hf_io.load_causal_lm(m.path, mesh=mesh, rules=rules)
        return modeling.new_reward_model(
            head=m.head, seed=m.seed, policy=init, mesh=mesh, rules=rules
        )
    if m.init_from_policy:
        return modeling.new_reward_model(
            head=m.head, seed=m.seed, policy=policy, mesh=mesh, rules=rules
        )
    spec = ModelSpec(name="model", preset=m.preset, seed=m.seed)
    return modeling.new_reward_model(
        model_builder.model_config(spec, tokenizer),
        head=m.head,
        seed=m.seed,
        mesh=mesh,
        rules=rules,
    )


def run(cfg: RMRunConfig, workdir: str | pathlib.Path) -> dict[str, Any]:
    """Label (or read) data, train the reward model, evaluate it, save it; returns the evaluation
    and the paths written."""
    workdir = pathlib.Path(workdir)
    workdir.mkdir(parents=True, exist_ok=True)
    shape = cfg.mesh.shape
    # A shape without -1 uses the first prod(shape) devices (e.g. (1, 1, 1): one device).
    devices = None if -1 in shape else jax.devices()[: math.prod(shape)]
    mesh, rules = make_mesh(shape, devices=devices), cfg.mesh.rules
    tokenizer = load_tokenizer(
        cfg.tokenizer, cfg.policy.path, cfg.model.path, dataset=cfg.data.dataset
    )
    system_prompt = system_prompt_for(cfg.data.dataset)
    kind = cfg.train.kind
    policy = (
        model_builder.build_causal_lm(cfg.policy, tokenizer, mesh, rules)
        if cfg.needs_policy
        else None
    )

    examples = labelled_data(cfg, tokenizer, policy, system_prompt, mesh, rules)
    sources.save_jsonl(workdir / "labels.jsonl", examples)
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

    reference = policy if kind == "implicit_prm" else None
    model = build_model(cfg, tokenizer, policy, mesh, rules)
    with (workdir / "metrics.jsonl").open("w") as f:

        def log_fn(record):
            f.write(json.dumps(record) + "\n")
            f.flush()
            log.info("step %d: %s", record["step"], record)

        model, _ = train_reward_model(
            model, train, cfg.train, reference=reference, mesh=mesh, rules=rules, log_fn=log_fn
        )

    def evaluate(a):
        if len(a) == 0:
            return {}
        b = cfg.train.batch_size  # the shape the reference's log-probs were compiled for
        if kind == "prm":
            return evaluation.evaluate_prm(model, a, batch_size=b)
        if kind == "orm":
            return evaluation.evaluate_orm(model, a, batch_size=b)
        return evaluation.evaluate_implicit_prm(model, reference, a, cfg.train.beta, batch_size=b)

    result = {"eval": {"heldout": evaluate(heldout), "train": evaluate(train)}}
    if cfg.model.likelihood_lm:  # the trained head, combined with the LM's step likelihood
        lm = hf_io.load_causal_lm(cfg.model.likelihood_lm)
        model, result["eval"]["likelihood"] = likelihood.with_likelihood(
            model, lm, train, heldout, batch_size=cfg.train.batch_size
        )
    result.update(
        {
            "model": str(workdir / "model"),
            "labels": str(workdir / "labels.jsonl"),
            "num_examples": len(examples),
            "num_train": len(train),
            "num_heldout": len(heldout),
        }
    )
    (workdir / "eval.json").write_text(json.dumps(result, indent=2, sort_keys=True))
    save_reward_model(
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
