"""The stages of the embedded default (``python -m rl.reproduce``), each through the project's own
modules, each reusing its finished artifacts and resuming when interrupted.

    DIR/tokenizer/                      the toy tokenizer (tokenizer.json)
    DIR/sft/policy/                     1. the supervised policy (Hugging Face directory)
    DIR/reward_models/{orm,prm}/        2. reward models on automatic labels (+ implicit_prm/)
    DIR/ppo/<variant>/seed<k>/          3. one ``rl.train`` run per variant and seed
    DIR/eval/*.json                     4. greedy evaluation on the held-out split
    DIR/results.json, results.md, *.png 5. the table and the curves

A stage is finished when its ``done.json`` exists; the PPO runs resume from their own checkpoints.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import sys
import time
from pathlib import Path
from typing import Any

import jax
import ml_collections
import numpy as np
from flax import nnx
from tqdm import tqdm

from models import hf_io
from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.reward_io import META_FILE, load_reward_model, save_reward_model
from rl import data as data_lib
from rl.config import RLConfig
from rl.data import toy
from rl.data.toy_tokenizer import build_toy_tokenizer
from rl.eval.evaluator import evaluate_policy
from rl.eval.outputs import jsonable
from rl.eval.premise import PremiseSamples, premise_samples
from rl.experiments import toy_report as report
from rl.experiments import workers
from rl.experiments.progress import PipelineProgress, reward_model_kinds
from rl.reward_models import data as reward_data
from rl.reward_models import evaluation as reward_evaluation
from rl.reward_models import labels, modeling
from rl.reward_models import likelihood as reward_likelihood
from rl.reward_models import training as reward_training
from rl.rollout.sampler_config import SamplerConfig
from rl.runtime.checkpoint import Checkpointer
from rl.trainers import sft
from rl.trainers.ppo_trainer import Trainer

SEP = toy.STEP_SEPARATOR
RESULT_KEYS = (
    "accuracy",
    "steps_per_response",
    "repeated_step_fraction",
    "response_length",
    "prm_return",
)


def log(msg: str) -> None:
    # Above the progress bar (stderr), if one is drawn.
    tqdm.write(f"[reproduce {time.strftime('%H:%M:%S')}] {msg}", file=sys.stdout)
    sys.stdout.flush()


def _done(path: Path) -> dict[str, Any] | None:
    return json.loads((path / "done.json").read_text()) if (path / "done.json").exists() else None


def _mark_done(path: Path, info: dict[str, Any]) -> dict[str, Any]:
    path.mkdir(parents=True, exist_ok=True)
    tmp = path / "done.json.tmp"
    tmp.write_text(json.dumps(info, indent=2, sort_keys=True))
    tmp.replace(path / "done.json")  # atomic: a stage is finished or it is not
    return info


class Pipeline:
    def __init__(
        self, cfg: ml_collections.ConfigDict, workdir: str | Path, *, show_progress: bool = True
    ):
        self.cfg = cfg
        self.wd = Path(workdir).resolve()
        self.wd.mkdir(parents=True, exist_ok=True)
        # Compiled programs are cached across stages, variants and re-runs of the command.
        jax.config.update("jax_compilation_cache_dir", str(self.wd / "jax_cache"))
        # Every program, however fast to compile: each PPO job runs in a fresh worker process
        # (rl.experiments.workers) that would otherwise compile a run's many small programs again.
        jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.0)
        self.tokenizer_dir = build_toy_tokenizer(self.wd / "tokenizer")
        self.tokenizer = hf_io.load_tokenizer(self.tokenizer_dir)
        t = cfg.task
        self.data_dir = str(self.wd / "tfds")
        kwargs = dict(
            seed=t.seed,
            train_size=t.train_size,
            test_size=t.test_size,
            spec=toy.ToySpec(redundant_step_prob=t.redundant_step_prob),
        )
        self.train = data_lib.load("toy", "train", data_dir=self.data_dir, **kwargs)
        self.test = data_lib.load("toy", "test", data_dir=self.data_dir, **kwargs)
        # Before any stage runs: a variant or seed a re-run cannot use fails now, not after SFT.
        for variant in cfg.variants:
            if variant not in cfg.variant_rewards:
                raise ValueError(
                    f"config.variants: {variant!r} has no entry in config.variant_rewards "
                    f"(known: {sorted(cfg.variant_rewards)}; quote each name in a tuple: "
                    "--config.variants=\"('success_only','prm_clip')\")"
                )
        if not cfg.seeds or not all(isinstance(x, int) for x in cfg.seeds):
            raise ValueError(f"config.seeds={cfg.seeds!r}: must be a non-empty tuple of ints")
        self.progress = PipelineProgress(cfg, enabled=show_progress)

    # --- 1. supervised policy ------------------------------------------------------------------

    def policy_config(self) -> ModelConfig:
        m, tok = self.cfg.model, self.tokenizer
        values = model_presets.tiny(
            vocab_size=len(tok),
            hidden_size=m.hidden_size,
            intermediate_size=m.intermediate_size,
            num_layers=m.num_layers,
            num_heads=m.num_heads,
            num_kv_heads=m.num_kv_heads,
            initializer_range=0.02,
            max_position_embeddings=256,
        ).to_dict()
        values.update(
            eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None
        )
        return ModelConfig.from_dict(values)

    def stage_sft(self) -> dict[str, Any]:
        out = self.wd / "sft"
        s = self.cfg.sft
        self.progress.stage("1/5 SFT")
        if (info := _done(out)) is not None:
            self.progress.advance(self.progress.plan["sft"])
            return info
        log(f"1/5 supervised training of the policy: {s.steps} steps x {s.batch_size} solutions")
        model = CausalLM(self.policy_config(), rngs=nnx.Rngs(self.cfg.model.seed))
        ckpt = Checkpointer(out / "checkpoints", keep=1)
        start, opt_state = 0, None
        if (latest := ckpt.latest_step()) is not None:
            graphdef, params = nnx.split(model)
            tx = sft.sft_optimizer(s.learning_rate, s.steps)
            restored, _ = ckpt.restore(latest, {"params": params, "opt": tx.init(params)})
            model = nnx.merge(graphdef, restored["params"])
            start, opt_state = latest, restored["opt"]
            log(f"  resuming supervised training at step {start}")
            self.progress.advance(start * self.progress.budget.sft_step_s)
        encoded = sft.encode_sft(self.train, self.tokenizer, s.max_len, None)
        for begin in range(start, s.steps, s.chunk):
            end = min(begin + s.chunk, s.steps)
            model, opt_state, losses = sft.train_sft(
                model,
                self.tokenizer,
                self.train,
                steps=s.steps,
                batch_size=s.batch_size,
                learning_rate=s.learning_rate,
                max_len=s.max_len,
                seed=self.cfg.seed,
                system_prompt=None,
                start_step=begin,
                end_step=end,
                opt_state=opt_state,
                log_every=s.chunk,
                encoded=encoded,
                group_by_length=s.group_by_length,
                pack_width=s.pack_width,
                pad_multiple=s.pad_multiple,
            )
            ckpt.save(end, {"params": nnx.state(model), "opt": opt_state}, {"step": end})
            log(f"  step {end}/{s.steps}: loss {losses[-1]:.4f}")
            self.progress.advance((end - begin) * self.progress.budget.sft_step_s)
        ckpt.close()
        hf_io.save_causal_lm(model, out / "policy", tokenizer=self.tokenizer)
        return _mark_done(out, {"policy": str(out / "policy")})

    # --- 2. reward models ----------------------------------------------------------------------

    def stage_reward_models(self, policy_dir: Path) -> dict[str, Any]:
        out = self.wd / "reward_models"
        self.progress.stage("2/5 step labels")
        kinds = reward_model_kinds(self.cfg)  # a re-run asking for one more trains only that one
        if (info := _done(out)) is not None and all((out / k / META_FILE).exists() for k in kinds):
            self.progress.advance(
                self.progress.plan["labels"] + self.progress.plan["reward_models"]
            )
            return info
        lc, rc, seed = self.cfg.labels, self.cfg.reward_models, self.cfg.seed
        policy = hf_io.load_causal_lm(policy_dir)
        labelled_path = out / "labels.json"
        if labelled_path.exists():
            rows = json.loads(labelled_path.read_text())
            labelled = [reward_data.StepLabelled(**row) for row in rows]
        else:
            log(
                f"2/5 automatic step labels: {lc.solutions} policy solutions, "
                f"{lc.completions} completions per step prefix"
            )
            completer = labels.SamplerCompleter(
                policy,
                self.tokenizer,
                SamplerConfig(
                    max_new_tokens=self.cfg.eval.max_new_tokens,
                    temperature=lc.temperature,
                    eos_ids=(self.tokenizer.eos_token_id,),
                    pad_id=self.tokenizer.pad_token_id or 0,
                ),
                max_prompt_len=self.cfg.sft.max_len,
                prompts_per_call=64,
                seed=seed,
            )
            rng = np.random.default_rng([seed, 1])
            problems = [
                self.train[i] for i in rng.choice(len(self.train), lc.solutions, replace=False)
            ]
            # The Monte-Carlo fractions are stored; hard labels are derived from them below.
            labelled = labels.auto_label(
                problems,
                completer,
                samples_per_problem=1,
                k_completions=lc.completions,
                sep=SEP,
                hard=False,
            )
            out.mkdir(parents=True, exist_ok=True)
            labelled_path.write_text(json.dumps([dataclasses.asdict(row) for row in labelled]))
        self.progress.advance(self.progress.plan["labels"])
        targets = labelled if lc.soft else reward_data.hard_labels(labelled)
        # The widths PPO scores with (ppo.data.max_prompt_len, ppo.rollout.max_new_tokens): no
        # response PPO rolls out is longer than what the reward models were trained on.
        arrays = reward_data.encode(
            targets,
            self.tokenizer,
            max_prompt_len=self.cfg.ppo.data.max_prompt_len,
            max_response_len=self.cfg.ppo.rollout.max_new_tokens,
            sep=SEP,
        )
        train, held = reward_data.split_heldout(arrays, 0.1, seed=seed)
        info: dict[str, Any] = {
            "labelled_solutions": len(labelled),
            "solution_accuracy": float(np.mean([r.outcome for r in labelled])),
        }
        for kind in kinds:
            path = out / kind
            self.progress.stage("2/5 reward models", model=kind)
            if (path / META_FILE).exists():
                info[kind] = json.loads((path / META_FILE).read_text()).get("metrics")
                self.progress.advance(self.progress.budget.reward_model_s)
                continue
            log(f"  training the {kind} ({rc.steps} steps)")
            tcfg = reward_training.RMTrainConfig(
                kind=kind,
                steps=rc.steps,
                batch_size=rc.batch_size,
                learning_rate=rc.learning_rate,
                beta=rc.implicit_beta,
                seed=seed,
            )
            if kind == "implicit_prm":
                model = modeling.new_implicit_prm(policy)
                model, _ = reward_training.train_reward_model(model, train, tcfg, reference=policy)
                metrics = reward_evaluation.evaluate_implicit_prm(
                    model, policy, held, rc.implicit_beta
                )
            else:
                model = modeling.new_reward_model(
                    policy=policy, seed=seed, extra_layers=rc.extra_layers
                )
                model, _ = reward_training.train_reward_model(model, train, tcfg)
                evaluate = (
                    reward_evaluation.evaluate_orm
                    if kind == "orm"
                    else reward_evaluation.evaluate_prm
                )
                metrics = evaluate(model, held)
                if kind == "prm" and rc.prm_likelihood:  # rewards/likelihood.py says why
                    model, metrics = reward_likelihood.with_likelihood(model, policy, train, held)
            save_reward_model(
                model,
                path,
                kind=kind,
                tokenizer=self.tokenizer,
                beta=rc.implicit_beta,
                metrics=metrics,
            )
            info[kind] = metrics
            log(
                f"  {kind} held-out: "
                + ", ".join(f"{k}={v:.3f}" for k, v in metrics.items() if isinstance(v, float))
            )
            self.progress.advance(self.progress.budget.reward_model_s)
        return _mark_done(out, info)

    # --- 3. PPO --------------------------------------------------------------------------------

    def ppo_config(self, variant: str, seed: int, policy_dir: Path) -> ml_collections.ConfigDict:
        if variant not in self.cfg.variant_rewards:
            raise ValueError(
                f"config.variants: {variant!r} has no entry in config.variant_rewards "
                f"(known: {sorted(self.cfg.variant_rewards)})"
            )
        overrides = self.cfg.variant_rewards[variant].to_dict()
        c = copy.deepcopy(self.cfg.ppo)
        c.unlock()
        c.seed = seed
        c.data_dir = self.data_dir
        c.tokenizer = str(self.tokenizer_dir)
        t = self.cfg.task
        c.data.toy_seed, c.data.toy_train_size, c.data.toy_test_size = (
            t.seed,
            t.train_size,
            t.test_size,
        )
        c.policy.path = str(policy_dir)
        rm = self.wd / "reward_models"
        c.prm.path = str(rm / "prm")  # loaded in every variant: its return is logged
        if overrides.get("orm_weight"):
            c.orm.path = str(rm / "orm")
        if overrides.get("implicit_prm_weight"):
            c.implicit_prm.path = str(rm / "implicit_prm")
        for key, value in overrides.items():
            c.reward[key] = value
        # A variant may also change the PPO section (the credit-assignment study: estimator,
        # lambdas, critic warm-up); absent: the shared settings.
        variant_ppo = self.cfg.get("variant_ppo") or {}
        for key, value in dict(variant_ppo.get(variant, {})).items():
            c.ppo[key] = value
        c.lock()
        return c

    def stage_ppo(self, variant: str, seed: int, policy_dir: Path) -> Path:
        out = self.wd / "ppo" / variant / f"seed{seed}"
        self.progress.stage("3/5 PPO", variant=variant, seed=seed)
        if _done(out) is not None:
            self.progress.advance(
                self.cfg.ppo.train.iterations * self.progress.budget.ppo_iteration_s
            )
            return out
        log(f"3/5 PPO {variant} (seed {seed}): {self.cfg.ppo.train.iterations} iterations")
        trainer = Trainer(
            RLConfig.from_config_dict(self.ppo_config(variant, seed, policy_dir)),
            out,
            verifier=workers.process_verifier(),
        )
        try:
            trainer.run()
        finally:
            trainer.close()
        _mark_done(out, {"policy": str(out / "policy")})
        self.progress.advance(self.cfg.ppo.train.iterations * self.progress.budget.ppo_iteration_s)
        return out

    # --- 4. evaluation -------------------------------------------------------------------------

    def evaluate(self, name: str, policy_dir: Path) -> dict[str, Any]:
        path = self.wd / "eval" / f"{name}.json"
        self.progress.stage("4/5 evaluation", policy=name)
        if path.exists():
            self.progress.advance(self.progress.budget.eval_s)
            return json.loads(path.read_text())
        policy = hf_io.load_causal_lm(policy_dir)
        prm, _ = load_reward_model(self.wd / "reward_models" / "prm")
        e = self.cfg.eval
        summary = evaluate_policy(
            policy,
            nnx.state(policy),
            self.tokenizer,
            self.test,
            dataset="toy",
            reward_model=prm,
            reward_kind="prm",
            max_new_tokens=e.max_new_tokens,
            batch_size=e.batch_size,
            step_separator=SEP,
            seed=self.cfg.seed,
            verifier=workers.process_verifier(),
        )
        result = {k: summary.get(k) for k in (*RESULT_KEYS, "n")}
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(jsonable(result), indent=2, sort_keys=True))
        log(
            f"4/5 evaluated {name}: "
            + ", ".join(f"{k}={v:.3f}" for k, v in result.items() if isinstance(v, float))
        )
        self.progress.advance(self.progress.budget.eval_s)
        return result

    # --- 2b. the premise: are the reward models strong at inference time? ----------------------

    def premise_samples(self, policy_dir: Path) -> PremiseSamples:
        """The premise stage's samples of the initial policy, verified and scored by the ORM and
        the PRM (deterministic: the same samples every call)."""
        pc, e = self.cfg.premise, self.cfg.eval
        policy = hf_io.load_causal_lm(policy_dir)
        rm = self.wd / "reward_models"
        return premise_samples(
            policy,
            nnx.state(policy),
            self.tokenizer,
            self.test,
            dataset="toy",
            samples=pc.samples,
            orm=load_reward_model(rm / "orm")[0],
            prm=load_reward_model(rm / "prm")[0],
            separator=SEP,
            max_new_tokens=e.max_new_tokens,
            batch_size=max(1, e.batch_size // pc.samples),
            temperature=pc.temperature,
            seed=self.cfg.seed,
            verifier=workers.process_verifier(),
        )

    def stage_premise(self, policy_dir: Path) -> dict[str, Any]:
        """Best-of-N by the ORM and the PRM against maj@N on the held-out problems, with N samples
        of the initial policy (``rl.eval.premise``), before any PPO."""
        path = self.wd / "eval" / "premise.json"
        self.progress.stage("2b/5 premise")
        if path.exists():
            self.progress.advance(self.progress.plan["premise"])
            return json.loads(path.read_text())
        pc = self.cfg.premise
        log(f"2b/5 premise: {pc.samples} samples of the initial policy per held-out problem")
        summary = self.premise_samples(policy_dir).summary()
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(jsonable(summary), indent=2, sort_keys=True))
        check = summary["check"]
        log(
            f"2b/5 premise: maj@{pc.samples} {summary['maj@n']:.3f}, PRM best-of-{pc.samples} "
            f"{summary['best_of_n']['prm_min']['accuracy']:.3f} (margin {check['margin']:+.3f} "
            f"± {check['margin_se']:.3f}): {'holds' if check['holds'] else 'does not hold'}"
        )
        self.progress.advance(self.progress.plan["premise"])
        return summary

    # --- all -----------------------------------------------------------------------------------

    def run(self) -> dict[str, Any]:
        t0 = time.perf_counter()
        policy_dir = Path(self.stage_sft()["policy"])
        rm_info = self.stage_reward_models(policy_dir)
        results: dict[str, Any] = {
            "initial": self.evaluate("initial", policy_dir),
            "reward_models": rm_info,
            "premise": self.stage_premise(policy_dir),
            "variants": {},
        }
        # PPO runs with their evaluations: jobs in worker processes, one core each
        # (rl.experiments.workers: the table does not depend on config.workers).
        jobs = [(v, s) for v in self.cfg.variants for s in self.cfg.seeds]
        per_run = self.cfg.ppo.train.iterations * self.progress.budget.ppo_iteration_s
        evals = {}
        for variant, seed in jobs:  # finished in an earlier command: nothing to start
            path = self.wd / "eval" / f"{variant}_seed{seed}.json"
            if path.exists() and _done(self.wd / "ppo" / variant / f"seed{seed}") is not None:
                evals[(variant, seed)] = json.loads(path.read_text())
                self.progress.advance(per_run + self.progress.budget.eval_s)
        todo = [job for job in jobs if job not in evals]
        self.progress.stage("3/5 PPO + 4/5 evaluation", runs=len(todo), workers=self.cfg.workers)
        finished_jobs = []

        def finished(job, result):
            finished_jobs.append(job)
            self.progress.stage(
                "3/5 PPO + 4/5 evaluation",
                finished=f"{len(finished_jobs)}/{len(todo)}",
                last=f"{job[0]}/seed{job[1]}",
                workers=self.cfg.workers,
            )
            self.progress.advance(per_run + self.progress.budget.eval_s)

        if todo:
            args = (self.cfg, str(self.wd), str(policy_dir))
            evals.update(workers.run_jobs(ppo_job, args, todo, self.cfg.workers, finished))
        for v in self.cfg.variants:
            per_seed = [evals[(v, s)] for s in self.cfg.seeds]
            results["variants"][v] = report.summarize_seeds(per_seed, self.cfg.seeds, RESULT_KEYS)
        report.write(self.wd, results, self.cfg)
        self.progress.close()
        log(f"5/5 done in {time.perf_counter() - t0:.0f} s: {self.wd / 'results.md'}")
        return results


def ppo_job(cfg, workdir: str, policy_dir: str, variant: str, seed: int) -> dict[str, Any]:
    """One PPO run and its greedy evaluation, in a worker process (``rl.experiments.workers``)."""
    pipeline = Pipeline(cfg, workdir, show_progress=False)
    run_dir = pipeline.stage_ppo(variant, seed, Path(policy_dir))
    return pipeline.evaluate(f"{variant}_seed{seed}", run_dir / "policy")


def run(cfg: ml_collections.ConfigDict, workdir: str | Path) -> dict[str, Any]:
    return Pipeline(cfg, workdir).run()
