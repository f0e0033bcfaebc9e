"""The PPO training loop: data -> rollout -> scoring -> shaping -> GAE -> updates -> metrics ->
ckpt.

Every phase on the device is one function compiled once for the run's fixed shapes (the sampler,
``score``, ``shape``, ``update``); host work is text: decoding responses, verifying answers, finding
step ends. The loop is deterministic given the seed: iteration i draws its randomness from
``fold_in(key(seed), i)``, and the data iterator's position is checkpointed, so a resumed run
continues exactly where the interrupted one would have gone.

Multi-host (``rl.runtime.distributed``): every process runs this loop on the same full global batch;
host arrays enter the mesh through ``to_global`` and device results come back whole through
``to_host``, so the host-side text work and the metrics are the same on every process. Only process
0 writes ``config.json``, metrics and logs; every process takes part in checkpointing and in
exporting the policy (both gather or write shards collectively). The workdir may be ``gs://``.
"""

from __future__ import annotations

import math
import os
import shutil
import signal
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from etils import epath
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from models.hf_io import save_causal_lm
from models.sharding import make_mesh, use_mesh
from rewards import shaping
from rewards.verify import Verifier
from rl import data as data_lib
from rl.algo import buckets
from rl.algo import update as upd
from rl.algo.advantages import uniform_groups
from rl.algo.patterns import outcome_rewards
from rl.algo.prm_scorer import PublishedPRMScorer, derived_bucket
from rl.algo.row_chunks import row_chunked
from rl.algo.scoring import make_score_fn, make_shape_fn, response_structure
from rl.config import MODEL_SECTIONS, ConfigError, RLConfig
from rl.config_batch import check_mesh_split, split_batch
from rl.data import prompts as prompts_lib
from rl.eval.evaluator import EvalConfig, Evaluator
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import FinishReason
from rl.rollout.tokenizer import load_tokenizer, stop_token_ids
from rl.runtime import distributed
from rl.runtime.checkpoint import Checkpointer
from rl.runtime.distributed import is_main_process, to_global, to_host
from rl.runtime.metrics import MetricsWriter
from rl.runtime.samples import rollout_text_stats, write_samples
from rl.runtime.verifier_watch import VerifierWatch
from rl.trainers import implicit_prm_online
from rl.trainers.ppo_models import build_ppo_models
from rl.trainers.prompt_filter import PromptFilter


class TooManyBadUpdates(RuntimeError):
    pass


def _rows(x: np.ndarray, n: int) -> np.ndarray:
    """Each prompt row repeated for its n samples (rows b*n .. b*n+n-1 belong to prompt b)."""
    return np.repeat(np.asarray(x), n, axis=0)


class Trainer:
    """Holds the run's compiled functions and state; ``run()`` trains to ``train.iterations``."""

    def __init__(
        self,
        cfg: RLConfig,
        workdir: str | os.PathLike,
        *,
        success_fn: Callable[..., np.ndarray] | None = None,
        verifier: Verifier | None = None,
    ):
        """``cfg``: the validated run config. ``success_fn(texts, answers, tokens, response_mask)
        -> [rows] float`` replaces the verifier as the outcome reward. ``verifier``: a running
        ``Verifier`` to borrow (saves its workers' start-up, seconds each) and leave running."""
        if not isinstance(cfg, RLConfig):
            raise TypeError(
                f"Trainer takes an RLConfig (RLConfig.from_config_dict(config)), got {type(cfg)}"
            )
        self.success_fn = success_fn
        self.cfg = cfg
        self.specs = {name: getattr(cfg, name) for name in MODEL_SECTIONS}
        d = self.cfg.data
        self.batch_rows = d.prompts_per_batch * d.samples_per_prompt

        # An epath: a gs:// workdir (shared by a pod's hosts) stays a URL, never a local path.
        self.workdir = distributed.run_path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        if is_main_process():
            (self.workdir / "config.json").write_text(cfg.to_json() + "\n")
        self.mesh = make_mesh(self.cfg.mesh.shape)
        shards = self.mesh.shape["data"] * self.mesh.shape["fsdp"]
        split = split_batch(d, cfg.ppo)  # the row counts divide (checked by RLConfig)
        check_mesh_split(split, cfg.rollout.score_rows, cfg.mesh.shape, shards)
        self.rules = cfg.mesh.rules
        self.tokenizer = load_tokenizer(cfg.tokenizer, cfg.policy.path, dataset=d.dataset)
        self.examples = self._load_examples(d.split)
        self._build_models()
        self._build_functions()
        self.checkpointer = Checkpointer(
            self.workdir / "checkpoints", self.cfg.train.keep_checkpoints
        )
        self._own_verifier = verifier is None
        self.verifier = Verifier(num_workers=cfg.verifier_workers) if verifier is None else verifier
        self.verifier_watch = VerifierWatch(cfg.train.max_failed_verifier_batches)
        self.evaluator, self.eval_examples = self._build_evaluator()
        self.rollouts = PromptFilter(
            d, self._rollout, self.tokenizer, self.verifier, success_fn, cfg.rollout.temperature
        )
        self._stop_requested = False

    # --- setup ---------------------------------------------------------------------------------

    def _build_models(self):
        built = build_ppo_models(self.cfg, self.tokenizer, self.mesh, self.rules)
        self.models, self.state = built.models, built.state
        self.state_sharding = built.state_sharding
        self.policy_tx, self.critic_tx = built.policy_tx, built.critic_tx
        self.frozen_defs, self.frozen_params = built.frozen_defs, built.frozen_params
        self.published_prm = built.published_prm
        self.online_prm = built.online_prm  # reward.implicit_prm_online (PRIME), else None
        self.prm_lm_is_ref = built.prm_lm_is_ref

    def _build_functions(self):
        c, mesh = self.cfg, self.mesh
        self.replicated = NamedSharding(mesh, PartitionSpec())
        self.batch_sharding = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
        self.sampler = Sampler(
            self.models.policy,
            SamplerConfig(
                max_new_tokens=c.rollout.max_new_tokens,
                temperature=c.rollout.temperature,
                top_p=c.rollout.top_p,
                top_k=c.rollout.top_k,
                head_dtype=c.rollout.head_dtype,
                eos_ids=stop_token_ids(self.tokenizer),
                stop_strings=c.rollout.stop_strings,
                samples_per_prompt=c.data.samples_per_prompt,
                pad_id=self.tokenizer.pad_token_id or 0,
            ),
            mesh=mesh,
            rules=self.rules,
            tokenizer=self.tokenizer,
        )
        p, temperature = c.data.max_prompt_len, upd.training_temperature(c.rollout.temperature)
        graphdefs = {"policy": self.models.policy, **self.frozen_defs}
        if self.models.critic is not None:
            graphdefs["critic"] = self.models.critic
        # Block by block (rollout.score_rows): memory set by the block, not by the rollout.
        fn = make_score_fn(
            graphdefs,
            p,
            temperature,
            policy_logp=c.rollout.old_logp != "sampler",
            prm_lm_is_ref=self.prm_lm_is_ref and temperature == 1.0,
        )
        score = row_chunked(fn, c.rollout.score_rows, (1, 2, 3))
        self.score_fn = jax.jit(score)
        self.shape_fn = jax.jit(make_shape_fn(c.reward, c.ppo, c.data.samples_per_prompt))

        def compiled_update(train_policy: bool):
            fn = upd.make_update_fn(
                self.models,
                c.ppo,
                c.reward,
                self.policy_tx,
                self.critic_tx,
                p,
                temperature=temperature,
                train_policy=train_policy,
            )
            return upd.jit_update(fn, self.state_sharding, self.batch_sharding, self.replicated)

        self.update_fn = compiled_update(True)
        # Critic warm-up: a value-only step, compiled only when configured.
        self.warmup_update_fn = compiled_update(False) if c.ppo.critic_warmup_iterations else None
        self.prm_scorer = None
        if self.published_prm is not None:
            max_len, max_steps = derived_bucket(
                self.specs["prm"], c.data.max_prompt_len, c.rollout.max_new_tokens
            )
            self.prm_scorer = PublishedPRMScorer(
                self.published_prm,
                max_input_len=max_len,
                max_steps=max_steps,
                mesh=mesh,
                rules=self.rules,
                batch_sharding=self.batch_sharding,
            )
        self.take_rows = jax.jit(
            lambda batch, idx: jax.tree.map(lambda x: x[idx], batch),
            out_shardings=self.batch_sharding,
        )

    def _load_examples(self, split: str):
        """The dataset's ``split``, without prompts longer than max_prompt_len (about 0.9% of MATH
        train at 512): they are dropped with a warning naming them instead of failing the batch
        encoder mid-run."""
        d = self.cfg.data
        with distributed.main_process_first(f"rl.trainers.ppo_trainer: dataset {split} built"):
            examples = data_lib.load_split(d, split, data_dir=self.cfg.data_dir or None)
        return prompts_lib.drop_overlong(
            examples,
            self.tokenizer,
            d.max_prompt_len,
            system_prompt=prompts_lib.system_prompt_for(d.dataset),
        )

    def _build_evaluator(self):
        """The periodic greedy evaluation (train.eval_every > 0): its Evaluator and problems."""
        c, d, t = self.cfg, self.cfg.data, self.cfg.train
        if not t.eval_every:
            return None, []

        examples = list(self._load_examples(t.eval_split))
        examples = examples[: t.eval_limit] if t.eval_limit else examples
        if not examples:
            raise ConfigError(
                f"config.train.eval_split={t.eval_split!r}: no {d.dataset} problem "
                f"fits max_prompt_len={d.max_prompt_len}"
            )
        evaluator = Evaluator(
            self.models.policy,
            self.tokenizer,
            EvalConfig(
                dataset=d.dataset,
                max_new_tokens=c.rollout.max_new_tokens,
                batch_size=self.batch_rows,
                step_separator=d.step_separator,
                max_prompt_len=d.max_prompt_len,
                stop_strings=tuple(c.rollout.stop_strings),
                seed=c.seed,
            ),
            mesh=self.mesh,
            rules=self.rules,
            verifier=self.verifier,
        )
        return evaluator, examples

    def evaluate(self) -> dict[str, float]:
        """Greedy evaluation of the current policy: ``eval/accuracy``, ``eval/steps_per_response``,
        ``eval/repeated_step_fraction``, ``eval/response_length``, ... (numbers only)."""
        with use_mesh(self.mesh, self.rules):
            summary = self.evaluator.evaluate(self.state.policy, self.eval_examples)
        return {
            f"eval/{k}": float(v)
            for k, v in summary.items()
            if isinstance(v, (int, float, np.number)) and not isinstance(v, bool)
        }

    # --- one iteration -------------------------------------------------------------------------

    def _rollout(self, examples, key):
        c = self.cfg
        batch = prompts_lib.encode_prompts(
            examples,
            self.tokenizer,
            c.data.max_prompt_len,
            system_prompt=prompts_lib.system_prompt_for(c.data.dataset),
        )
        ids, mask = batch.input_ids, batch.attention_mask
        with use_mesh(self.mesh, self.rules):
            out = self.sampler(self.state.policy, ids, mask, key)
        return ids, mask, to_host(out)

    def iteration(self, it: int, examples, refill=None) -> dict[str, Any]:
        """``refill()``: the next batch of prompts, for the prompt filter (``run`` passes the data
        iterator's)."""
        c = self.cfg
        n = c.data.samples_per_prompt
        key = jax.random.fold_in(jax.random.key(c.seed), it)
        k_sample, k_noise, k_perm = jax.random.split(key, 3)
        t0 = time.perf_counter()
        # One verified batch, or the in-band prompts of several (data.accuracy_band, PRIME).
        sampled, filter_metrics = self.rollouts.collect(examples, k_sample, refill)
        examples, ids, mask, texts = sampled.examples, sampled.ids, sampled.mask, sampled.texts
        # Scoring, shaping and the update see the longest response's bucket width, not R.
        tokens, response = buckets.trim_to_bucket(
            sampled.tokens, sampled.response, c.rollout.max_new_tokens
        )
        times = {"rollout": sampled.seconds["rollout"]}
        success = correct = sampled.correct
        verdict, finish = sampled.verdict, sampled.finish_reason
        t1 = time.perf_counter() - sampled.seconds["verify"]  # time/scoring: decoding, verifier too
        # A response cut off by the length limit gave no final answer within the budget: its
        # success reward is 0 (batch_accuracy still reports the verifier's verdict).
        structure = response_structure(
            self.tokenizer,
            tokens,
            response,
            finish == FinishReason.LENGTH,
            c.data.step_separator,
        )
        truncated, step_end = structure.truncated_B, structure.step_end_BxR
        success = np.where(truncated, 0.0, success).astype(np.float32)
        if c.reward.success_flip_prob > 0:
            success = np.asarray(
                shaping.flip_success(jnp.asarray(success), k_noise, c.reward.success_flip_prob)
            )
        outcome = outcome_rewards(c, texts, success, truncated)  # + reward.pattern_weight * RPR
        write_samples(self.workdir, it + 1, c.train.log_samples, outcome.columns(examples, texts))
        seq = np.concatenate([_rows(ids, n), tokens], axis=1).astype(np.int32)
        seq_mask = np.concatenate([_rows(mask, n).astype(bool), response], axis=1)
        last = structure.last_BxR  # the ORM is read at EOS only
        put = lambda x: to_global(x, self.batch_sharding)  # noqa: E731
        seq, seq_mask, response_d, last_d = put(seq), put(seq_mask), put(response), put(last)
        with use_mesh(self.mesh, self.rules):
            params = {"policy": self.state.policy, **self.frozen_params}
            if self.state.critic is not None:
                params["critic"] = self.state.critic
            # Blocking here costs nothing (shaping needs the scores next) and keeps the
            # per-phase times honest under asynchronous dispatch.
            scores = jax.block_until_ready(self.score_fn(params, seq, seq_mask, last_d))
        if "old_logp" not in scores:  # rollout.old_logp == "sampler"
            scores = dict(scores, old_logp=put(sampled.logp[:, : tokens.shape[1]]))
        prm_metrics = {}
        if self.prm_scorer is not None:
            questions = [e.question for e in examples for _ in range(n)]
            prm_BxR, prm_metrics = self.prm_scorer(questions, structure.steps, step_end)
            scores = dict(scores, prm_scores=put(prm_BxR))
        scores = dict(scores, pattern=put(outcome.pattern_B))
        if self.online_prm is not None:  # PRIME: updated on this rollout before its rewards
            t_prm = time.perf_counter()
            with use_mesh(self.mesh, self.rules):
                scores, online = self.online_prm.update_and_score(
                    scores, seq, seq_mask, response_d, put(success)
                )
            prm_metrics = dict(prm_metrics, **online)
            times["implicit_prm_update"] = time.perf_counter() - t_prm
        with use_mesh(self.mesh, self.rules):
            times["scoring"] = time.perf_counter() - t1
            t2 = time.perf_counter()
            arrays, reward_metrics = self.shape_fn(scores, put(step_end), response_d, put(success))
            reward_metrics = to_host(reward_metrics)
        times["shaping_gae"] = time.perf_counter() - t2

        metrics: dict[str, Any] = dict(reward_metrics, **prm_metrics, **filter_metrics)
        metrics["rollout/truncated"] = float(np.mean(truncated))
        metrics.update(rollout_text_stats(texts, c.data.step_separator))
        metrics["rollout/response_length"] = float(response.sum(1).mean())
        metrics["rollout/batch_accuracy"] = float(np.mean(correct))
        metrics["rollout/uniform_groups"] = float(uniform_groups(outcome.outcome_B, n))
        metrics.update(self.verifier_watch.observe(verdict, it + 1))
        metrics["rollout/finished_by_eos"] = float(np.mean(finish == 1))

        t3 = time.perf_counter()
        if not math.isfinite(float(reward_metrics["reward/total"])):
            metrics["update/skipped"] = 1.0
            metrics["update/nonfinite_reward"] = 1.0
        else:
            batch = {
                "tokens": seq,
                "attention_mask": seq_mask,
                "response_mask": response_d,
                "old_logp": scores["old_logp"],
                "advantages": arrays["advantages"],
                "ref_logp": scores["ref_logp"],
            }
            if "values" in scores:  # GAE: the critic's targets
                batch.update(old_values=scores["values"], returns=arrays["returns"])
            warmup = it < c.ppo.critic_warmup_iterations
            metrics["update/critic_warmup"] = float(warmup)
            metrics.update(self._update(batch, k_perm, warmup))
        times["update"] = time.perf_counter() - t3
        update_tokens = float(response.sum()) * c.ppo.epochs
        metrics["time/rollout_tokens_per_s"] = float(response.sum()) / max(times["rollout"], 1e-9)
        metrics["time/update_tokens_per_s"] = update_tokens / max(times["update"], 1e-9)
        for k, v in times.items():
            metrics[f"time/{k}"] = v
        metrics["time/iteration"] = time.perf_counter() - t0
        return metrics

    def _update(self, batch, key, warmup: bool = False) -> dict[str, float]:
        """PPO epochs over minibatches; ``warmup``: the critic-only step (policy unchanged)."""
        c = self.cfg
        update_fn = self.warmup_update_fn if warmup else self.update_fn
        rows = self.batch_rows
        per = rows // c.ppo.minibatches
        sums: dict[str, float] = {}
        count = 0
        with use_mesh(self.mesh, self.rules):
            for epoch in range(c.ppo.epochs):
                perm = np.asarray(jax.random.permutation(jax.random.fold_in(key, epoch), rows))
                for m in range(c.ppo.minibatches):
                    idx = to_global(perm[m * per : (m + 1) * per], self.replicated)
                    self.state, mets = update_fn(self.state, self.take_rows(batch, idx))
                    mets = to_host(mets)
                    for k, v in mets.items():
                        sums[k] = sums.get(k, 0.0) + float(v)
                    count += 1
        out = {f"update/{k}": v / count for k, v in sums.items() if k != "skipped"}
        out["update/skipped"] = sums.get("skipped", 0.0)
        return out

    # --- the loop ------------------------------------------------------------------------------

    def _handle_sigterm(self, signum, frame):
        del signum, frame
        self._stop_requested = True  # finish the iteration, save, exit (TPU preemption notice)

    def run(self) -> dict[str, Any]:
        c = self.cfg
        data_iter = data_lib.PromptIterator(self.examples, c.data.prompts_per_batch, c.seed)
        start = 0
        bad_in_a_row = 0
        saved = implicit_prm_online.checkpoint_tree(self.state, self.online_prm)
        restored = self.checkpointer.restore_latest(saved)
        if restored is not None:
            _, saved, loop = restored
            self.state = implicit_prm_online.from_checkpoint_tree(saved, self.online_prm)
            data_iter = data_lib.PromptIterator.from_state(self.examples, loop["data"])
            start, bad_in_a_row = loop["iteration"], loop["bad_in_a_row"]
        writer = MetricsWriter(self.workdir, resume_step=start)
        previous = signal.signal(signal.SIGTERM, self._handle_sigterm)
        last_metrics: dict[str, Any] = {}
        try:
            for it in range(start, c.train.iterations):
                metrics = self.iteration(it, next(data_iter), lambda: next(data_iter))
                bad_in_a_row = bad_in_a_row + 1 if metrics.get("update/skipped", 0) else 0
                metrics["update/bad_in_a_row"] = bad_in_a_row
                if self.evaluator is not None and (it + 1) % c.train.eval_every == 0:
                    metrics.update(self.evaluate())
                writer.write(it + 1, metrics)
                last_metrics = metrics
                if bad_in_a_row >= c.train.max_bad_updates:
                    raise TooManyBadUpdates(
                        f"{bad_in_a_row} consecutive iterations had a non-finite loss or reward "
                        f"(train.max_bad_updates={c.train.max_bad_updates}); stopping at "
                        f"iteration {it + 1}. See {writer.path}."
                    )
                done = it + 1 == c.train.iterations
                # SIGTERM reaches a pod's hosts at different moments; all must stop together.
                self._stop_requested = distributed.any_process(self._stop_requested)
                if done or (it + 1) % c.train.checkpoint_every == 0 or self._stop_requested:
                    self.checkpointer.save(
                        it + 1,
                        implicit_prm_online.checkpoint_tree(self.state, self.online_prm),
                        {
                            "iteration": it + 1,
                            "bad_in_a_row": bad_in_a_row,
                            "data": data_iter.state(),
                        },
                    )
                if self._stop_requested:
                    if is_main_process():
                        print(f"SIGTERM: saved iteration {it + 1}, exiting", flush=True)
                    break
        finally:
            signal.signal(signal.SIGTERM, previous)
            writer.close()
        if not self._stop_requested:
            self.export_policy(self.workdir / "policy")
        return last_metrics

    def export_policy(self, path: str | os.PathLike) -> epath.Path:
        """The current policy as a Hugging Face directory (config.json, safetensors, tokenizer):
        loadable by ``models.hf_io.load_causal_lm``, ``rl.evaluate`` and transformers.

        Every process must call it: the sharded parameters are gathered collectively, then
        process 0 writes. ``save_causal_lm`` writes local files only, so a ``gs://`` target is
        written to a local staging directory and copied up by process 0.
        """
        model = nnx.merge(self.models.policy, self.state.policy)
        path = distributed.run_path(path)
        if not distributed.is_remote(path):
            save_causal_lm(model, Path(path), tokenizer=self.tokenizer)
            return path
        with tempfile.TemporaryDirectory() as staging:
            save_causal_lm(model, Path(staging), tokenizer=self.tokenizer)
            if is_main_process():
                path.mkdir(parents=True, exist_ok=True)
                for f in sorted(Path(staging).iterdir()):
                    with f.open("rb") as src, (path / f.name).open("wb") as dst:
                        shutil.copyfileobj(src, dst)
        return path

    def close(self):
        if self._own_verifier:
            self.verifier.close()
        self.checkpointer.close()
