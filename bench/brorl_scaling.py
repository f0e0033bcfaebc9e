"""BroRL scale: what hundreds of samples per prompt cost, at a fixed number of prompts.

    python bench/brorl_scaling.py [--ns 8,64,256,512] [--prompts 4] [--new-tokens 32]

Each N runs ``configs/brorl.py:N`` (the smoke model: 2 layers, width 64, the toy task's vocabulary;
GRPO with the verifier's outcome reward; update microbatches of at most 64 rows, scoring blocks of
128 rows) for full ``rl.train`` iterations, in its own subprocess, so its peak resident memory is
its own. Prints one JSON object; per N:

* rollout / scoring / update seconds and rollout and update tokens/s (the trainer's own
  ``time/*`` metrics; medians of the iterations after a compiling one; scoring includes decoding
  the texts and the verifier);
* the shared prefill: the sampler's prefill (B prompt rows) and decode (B x N rows) timed apart,
  ``prefill_fraction_of_decode``, and what the prefill would cost if every sample prefilled its own
  copy of the prompt (B x N rows; ``unshared_prefill_fraction_of_decode``);
* compiled temporary bytes (XLA's memory_analysis) of the scoring pass and of the update step as
  run (in pieces) and in one piece (the whole rollout scored at once; a minibatch in one
  microbatch): the first pair stays flat as N grows, the second grows with it;
* peak RSS of the process (on CPU the device buffers are host memory too).
"""

import argparse
import contextlib
import dataclasses
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import time_fn_all  # noqa: E402
from configs import brorl  # noqa: E402
from models.sharding import use_mesh  # noqa: E402
from rl.algo import update as upd  # noqa: E402
from rl.algo.scoring import make_score_fn  # noqa: E402
from rl.config import RLConfig  # noqa: E402
from rl.data import PromptIterator  # noqa: E402
from rl.data import prompts as prompts_lib  # noqa: E402
from rl.trainers.ppo_trainer import Trainer  # noqa: E402

PHASES = ("rollout", "scoring", "shaping_gae", "update")


def config(n: int, prompts: int, new_tokens: int, iterations: int):
    cfg = brorl.get_config(str(n))
    cfg.data.prompts_per_batch = prompts
    cfg.rollout.max_new_tokens = new_tokens
    cfg.train.iterations = iterations + 1
    cfg.train.checkpoint_every = 1000
    return cfg


def temp_bytes(jitted, *args) -> int:
    return int(jitted.lower(*args).compile().memory_analysis().temp_size_in_bytes)


def compiled_memory(trainer: Trainer) -> dict:
    """Temporary bytes of the scoring pass and the update step, in pieces (as the run) and whole."""
    c = trainer.cfg
    rows, s = trainer.batch_rows, c.data.max_prompt_len + c.rollout.max_new_tokens
    r, update_rows = c.rollout.max_new_tokens, rows // c.ppo.minibatches
    sds = lambda shape, dtype: jax.ShapeDtypeStruct(shape, dtype, sharding=trainer.batch_sharding)  # noqa: E731
    params = {"policy": trainer.state.policy, **trainer.frozen_params}
    score_args = (params, sds((rows, s), np.int32), sds((rows, s), bool), sds((rows, r), bool))
    p, temperature = c.data.max_prompt_len, upd.training_temperature(c.rollout.temperature)
    graphdefs = {"policy": trainer.models.policy, **trainer.frozen_defs}
    batch = {
        "tokens": sds((update_rows, s), np.int32),
        "attention_mask": sds((update_rows, s), bool),
        "response_mask": sds((update_rows, r), bool),
        **{k: sds((update_rows, r), np.float32) for k in ("old_logp", "advantages", "ref_logp")},
    }
    whole_update = upd.jit_update(
        upd.make_update_fn(
            trainer.models,
            dataclasses.replace(c.ppo, microbatches=1, microbatch_rows=0),
            c.reward,
            trainer.policy_tx,
            trainer.critic_tx,
            p,
            temperature=temperature,
        ),
        trainer.state_sharding,
        trainer.batch_sharding,
        trainer.replicated,
    )
    with use_mesh(trainer.mesh, trainer.rules):
        return {
            "score_temp_bytes": temp_bytes(trainer.score_fn, *score_args),
            "score_temp_bytes_one_pass": temp_bytes(
                jax.jit(make_score_fn(graphdefs, p, temperature)), *score_args
            ),
            "update_temp_bytes": temp_bytes(trainer.update_fn, trainer.state, batch),
            "update_temp_bytes_one_microbatch": temp_bytes(whole_update, trainer.state, batch),
        }


def prefill_and_decode(trainer: Trainer, examples, repeats: int) -> dict:
    """The sampler's prefill and decode timed apart (medians), and an unshared prefill of every
    sample's own copy of its prompt."""
    c, n = trainer.cfg, trainer.cfg.data.samples_per_prompt
    batch = prompts_lib.encode_prompts(
        examples,
        trainer.tokenizer,
        c.data.max_prompt_len,
        system_prompt=prompts_lib.system_prompt_for(c.data.dataset),
    )
    ids, mask = batch.input_ids, batch.attention_mask
    sampler, state, key = trainer.sampler, trainer.state.policy, jax.random.key(0)
    prefix = jax.block_until_ready(sampler.prefill(state, ids, mask))
    prefill = time_fn_all(lambda: sampler.prefill(state, ids, mask), repeats=repeats)
    decode = time_fn_all(lambda: sampler.decode(state, prefix, key), repeats=repeats)
    rows_ids, rows_mask = np.repeat(ids, n, axis=0), np.repeat(mask, n, axis=0)
    unshared = time_fn_all(lambda: sampler.prefill(state, rows_ids, rows_mask), repeats=repeats)
    med = lambda t: t[len(t) // 2]  # noqa: E731
    return {
        "prefill_s": med(prefill),
        "decode_s": med(decode),
        "unshared_prefill_s": med(unshared),
        "prefill_fraction_of_decode": med(prefill) / med(decode),
        "unshared_prefill_fraction_of_decode": med(unshared) / med(decode),
        "decode_steps": int(sampler.decode(state, prefix, key).steps),
    }


def run_one(n: int, prompts: int, new_tokens: int, iterations: int, repeats: int) -> dict:
    cfg = config(n, prompts, new_tokens, iterations)
    # TFDS announces its build on stdout; keep stdout for the one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg.data_dir = str(pathlib.Path(tmp) / "tfds")
        trainer = Trainer(RLConfig.from_config_dict(cfg), pathlib.Path(tmp) / "run")
        it = PromptIterator(trainer.examples, prompts, 0)
        trainer.iteration(0, next(it))  # compiles
        per = {k: [] for k in (*PHASES, "rollout_tokens_per_s", "update_tokens_per_s")}
        tokens = []
        for i in range(iterations):
            examples = next(it)
            metrics = trainer.iteration(i + 1, examples)
            for k in per:
                per[k].append(metrics[f"time/{k}"])
            tokens.append(metrics["rollout/response_length"] * trainer.batch_rows)
        out = {f"{k}_s" if k in PHASES else k: float(np.median(v)) for k, v in per.items()}
        out["rows"] = trainer.batch_rows
        out["response_tokens"] = float(np.median(tokens))
        out["microbatches"] = trainer.cfg.ppo.microbatches
        out["microbatch_rows"] = trainer.cfg.ppo.microbatch_rows
        out["score_rows"] = trainer.cfg.rollout.score_rows
        with use_mesh(trainer.mesh, trainer.rules):
            out.update(prefill_and_decode(trainer, examples, repeats))
        out.update(compiled_memory(trainer))
        trainer.close()
    # Linux reports ru_maxrss in KiB.
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--ns", default="8,64,256,512", help="samples per prompt, one run each")
    parser.add_argument("--prompts", type=int, default=4, help="prompts per batch (fixed)")
    parser.add_argument("--new-tokens", type=int, default=32)
    parser.add_argument("--iterations", type=int, default=2, help="timed, after a compiling one")
    parser.add_argument("--repeats", type=int, default=3, help="prefill / decode timings")
    parser.add_argument("--one", type=int, help=argparse.SUPPRESS)  # the subprocess: one N
    args = parser.parse_args()
    if args.one:
        result = run_one(args.one, args.prompts, args.new_tokens, args.iterations, args.repeats)
        print(json.dumps(result))
        return
    results = {}
    for n in [int(x) for x in args.ns.split(",")]:
        cmd = [
            sys.executable,
            __file__,
            f"--one={n}",
            f"--prompts={args.prompts}",
            f"--new-tokens={args.new_tokens}",
            f"--iterations={args.iterations}",
            f"--repeats={args.repeats}",
        ]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[str(n)] = json.loads(done.stdout.strip().splitlines()[-1])
    print(
        json.dumps(
            {
                "model": "configs/smoke.py policy (presets.tiny: 2 layers, width 64)",
                "backend": jax.default_backend(),
                "prompts": args.prompts,
                "new_tokens": args.new_tokens,
                "iterations_timed": args.iterations,
                "cpu_load_1min": os.getloadavg()[0],
                "samples_per_prompt": results,
            },
            indent=2,
        )
    )


if __name__ == "__main__":
    main()
