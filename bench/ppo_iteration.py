"""Seconds per PPO iteration of this project against google-tunix's PPOLearner, side by side.

    python bench/ppo_iteration.py [--iterations 6]
    python bench/ppo_iteration.py --tunix_python=/tmp/tunixvenv/bin/python

The configuration (the one tunix's PPO learner runs on CPU in issue 16): a random Qwen2, untied,
4 layers, hidden 256, MLP 1024, 4 heads of 64, 2 KV heads, vocabulary 151,936, fp32; policy +
critic + reference; 16 prompts x 1 sample of the toy task, prompts up to 32 tokens, 64 new tokens at
temperature 1; one PPO epoch of one minibatch; the success reward only (no PRM, no ORM); KL to the
reference in the reward (k1, coefficient 0.02); Adam (b1 0.9, b2 0.95, lr 1e-4) after a global-norm
clip of 1.0 for both models.

Tokenizer: the Qwen2 tokenizer shipped in ``models/assets/qwen2_tokenizer`` (151,669 entries, its
chat template formats the toy prompts: 19-25 tokens), with the model's vocabulary padded to
151,936 through ``policy.overrides`` as Qwen2's checkpoints pad it. Both sides use this tokenizer
and the same formatted prompt texts (tunix gets them in a JSON file).

This project: ``rl.trainers.ppo_trainer.Trainer.iteration``, one compiling iteration, then the
median of ``--iterations`` (6) of each phase (rollout, scoring, shaping + GAE, update) and of the
whole iteration.

FLOP bounds, at this machine's fp32 matmul peak measured in this run (``bench.common.
matmul_peak_flops``, before and after this project's iterations; the larger is the roof). Per
token a model costs 2 FLOPs per matmul weight forward and 6 forward + backward; weights: backbone
N_b = 4 x (256·256 + 2·256·128 + 256·256 + 3·256·1024) = 3,932,160, LM head N_h = 151,936 x 256 =
38,895,616 (the critic's value head, 256, is left out; attention's score/value matmuls, 4·S·256
per token and layer, are under 1% at S = 96 and left out too). Rows B = 16, prompt P = 32,
response R = 64, S = P + R = 96:

* ``flops_full`` (the issue's count: every model over all B·S = 1,536 positions, LM head included):
  rollout 2·(N_b+N_h)·B·S = 131.6 GFLOP; scoring (policy + reference + critic forward)
  2·(2·(N_b+N_h) + N_b)·B·S = 275.2 GFLOP; update (policy + critic forward + backward)
  6·(N_b+N_h+N_b)·B·S = 430.9 GFLOP.
* ``flops_needed`` (the LM head only where its logits are used: the B·R response positions; the
  backbone still over B·S): rollout 2·(N_b·B·S + N_h·B·R) = 91.7 GFLOP; scoring
  2·(2·(N_b·B·S + N_h·B·R) + N_b·B·S) = 195.6 GFLOP; update 6·(2·N_b·B·S + N_h·B·R) = 311.5 GFLOP.

With ``--old_logp=sampler`` (the project's default ``rollout.old_logp``, PPO's old log-probs taken
from the sampler) scoring has no policy pass: 2·((N_b+N_h) + N_b)·B·S = 143.6 GFLOP full,
2·(2·N_b·B·S + N_h·B·R) = 103.8 GFLOP needed. ``--old_logp=recompute`` runs it as tunix does
(tunix's ``get_old_per_token_logps``); the FLOP counts follow the flag.

``fraction_of_flop_bound`` = (flops / peak) / seconds for each count. Shaping + GAE has no matmul
(no FLOP bound). Decode also reads every policy weight once per new token: ``rollout.bytes_bound_s``
= R x 4 bytes x (N_b + N_h) / the read bandwidth measured in this run
(``bench.common.memory_bandwidth``), and ``fraction_of_roofline`` is against the larger of that and
the needed FLOP bound. At 16 rows the FLOP bound is the larger (about 0.7 s against 0.4 s at 130
GFLOP/s and 27 GB/s): the rollout is compute-bound here, not memory-bound.

Tunix (with ``--tunix_python``): ``bench/tunix_side.py ppo`` runs under that interpreter (never
importing this project) with google-tunix 0.1.7's ``PPOLearner`` on an ``RLCluster`` of the same
configuration for 3 + ``--iterations`` steps, fed the same prompts (its steps 4.. get the batches
of this project's timed iterations 1..); its steady state is (t(9 steps) - t(3 steps)) / 6, and
``speedup_vs_tunix`` that over this project's median iteration. The two run in lockstep: tunix
stops at the start of each step, its previous step's work finished, and this project runs one timed
iteration while it waits, so each tunix step and the project iteration before it see the same load
(this shared machine's load moves by several x within minutes; ``speedup_vs_tunix_per_pair``
lists the ratio of each pair). Install tunix in a separate venv, never into the project's:

    python3 -m venv /tmp/tunixvenv && /tmp/tunixvenv/bin/pip install google-tunix==0.1.7

Prints ONE JSON object, with each side's peak resident memory (``project.peak_rss_bytes``: this
process; ``tunix.peak_rss_bytes``: the tunix process).
"""

import argparse
import contextlib
import json
import os
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

ROOT = pathlib.Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from bench.common import matmul_peak_flops, memory_bandwidth  # noqa: E402
from configs import smoke  # noqa: E402
from rl.config import RLConfig  # noqa: E402
from rl.data import PromptIterator  # noqa: E402
from rl.data import prompts as prompts_lib  # noqa: E402
from rl.rollout.tokenizer import stop_token_ids  # noqa: E402
from rl.trainers.ppo_trainer import Trainer  # noqa: E402

PHASES = ("rollout", "scoring", "shaping_gae", "update")
TOKENIZER = ROOT / "models" / "assets" / "qwen2_tokenizer"
MODEL = dict(
    vocab_size=151936,
    hidden_size=256,
    intermediate_size=1024,
    num_layers=4,
    num_heads=4,
    num_kv_heads=2,
    head_dim=64,
    tie_word_embeddings=False,
    rope_theta=10000.0,
    rms_norm_eps=1e-6,
    initializer_range=0.02,
)
ROWS, PROMPT_LEN, NEW_TOKENS = 16, 32, 64
LEARNING_RATE, KL_COEF, MAX_GRAD_NORM = 1e-4, 0.02, 1.0
TUNIX_WARM_STEPS = 3  # tunix's compiling steps, before the timed ones


def project_config(old_logp: str = "sampler"):
    cfg = smoke.get_config()
    cfg.rollout.old_logp = old_logp
    cfg.tokenizer = str(TOKENIZER)
    cfg.policy.overrides = dict(MODEL)
    cfg.prm.preset = ""
    cfg.reward.prm_weight = 0.0
    cfg.reward.success_weight = 1.0
    cfg.reward.kl_coef = KL_COEF
    cfg.reward.kl_estimator = "k1"
    cfg.reward.kl_in = "reward"
    cfg.ppo.epochs, cfg.ppo.minibatches, cfg.ppo.microbatches = 1, 1, 1
    cfg.optim.learning_rate = cfg.optim.critic_learning_rate = LEARNING_RATE
    cfg.optim.max_grad_norm = MAX_GRAD_NORM
    cfg.mesh.shape = (1, 1, 1)
    cfg.data.prompts_per_batch, cfg.data.samples_per_prompt = ROWS, 1
    cfg.data.max_prompt_len = PROMPT_LEN
    cfg.rollout.max_new_tokens = NEW_TOKENS
    cfg.rollout.temperature = 1.0
    cfg.train.eval_every = 0
    cfg.train.checkpoint_every = 1000
    return cfg


def weights(model: dict = MODEL) -> tuple[int, int]:
    """(N_b, N_h): backbone matmul weights and LM-head weights (see the module docstring)."""
    d, f = model["hidden_size"], model["intermediate_size"]
    q, kv = model["num_heads"] * model["head_dim"], model["num_kv_heads"] * model["head_dim"]
    backbone = model["num_layers"] * (d * q + 2 * d * kv + q * d + 3 * d * f)
    return backbone, model["vocab_size"] * d


def flop_counts(
    rows: int, prompt_len: int, new_tokens: int, model: dict = MODEL, *, policy_pass: bool = True
) -> dict:
    """FLOPs of each phase, ``full`` (every position) and ``needed`` (the LM head on the response
    positions only), as the module docstring writes them; ``policy_pass=False``
    (``rollout.old_logp="sampler"``): scoring runs the reference and the critic only."""
    nb, nh = weights(model)
    all_pos, resp = rows * (prompt_len + new_tokens), rows * new_tokens
    lm_full, lm_needed = (nb + nh) * all_pos, nb * all_pos + nh * resp
    lms = 2 if policy_pass else 1
    return {
        "full": {
            "rollout": 2 * lm_full,
            "scoring": 2 * (lms * lm_full + nb * all_pos),
            "update": 6 * (lm_full + nb * all_pos),
        },
        "needed": {
            "rollout": 2 * lm_needed,
            "scoring": 2 * (lms * lm_needed + nb * all_pos),
            "update": 6 * (lm_needed + nb * all_pos),
        },
    }


def prompt_rows(trainer: Trainer, batch) -> list[dict]:
    """A batch as tunix gets it: the prompt text exactly as this project formats it, and the
    answer."""
    system = prompts_lib.system_prompt_for(trainer.cfg.data.dataset)
    return [
        {
            "prompt": prompts_lib.format_prompt(
                e.question, trainer.tokenizer, system_prompt=system
            ),
            "answer": e.answer,
        }
        for e in batch
    ]


def run(iterations: int, tunix_python: str, old_logp: str) -> tuple[dict, dict | None]:
    """This project's compiling iteration, then ``iterations`` timed ones; with ``tunix_python``
    each timed iteration runs while tunix waits at a step boundary (``run_tunix``)."""
    cfg = project_config(old_logp)
    # TFDS announces its build on stdout; keep stdout for the one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg.data_dir = str(pathlib.Path(tmp) / "tfds")
        trainer = Trainer(RLConfig.from_config_dict(cfg), pathlib.Path(tmp) / "run")
        it = PromptIterator(trainer.examples, ROWS, 0)
        # Iteration 0 compiles; tunix's steps 1..WARM compile, then both time the same batches.
        drawn = [next(it) for _ in range(TUNIX_WARM_STEPS + iterations)]
        ours = [drawn[0], *drawn[TUNIX_WARM_STEPS:]]
        t0 = time.perf_counter()
        trainer.iteration(0, ours[0])
        compile_s = time.perf_counter() - t0
        phases = {k: [] for k in (*PHASES, "total")}
        lengths = []

        def timed(i: int):
            t0 = time.perf_counter()
            metrics = trainer.iteration(i, ours[i])
            phases["total"].append(time.perf_counter() - t0)
            for k in PHASES:
                phases[k].append(metrics[f"time/{k}"])
            lengths.append(metrics["rollout/response_length"])

        tunix = None
        if tunix_python:
            batches = [prompt_rows(trainer, b) for b in drawn]
            stops = list(stop_token_ids(trainer.tokenizer))
            tunix = run_tunix(tunix_python, batches, stops, timed)
        else:
            for i in range(1, iterations + 1):
                timed(i)
        trainer.close()
    out = {f"{k}_s": float(np.median(v)) for k, v in phases.items()}
    out["all_total_s"] = phases["total"]
    out["first_iteration_s"] = compile_s
    out["mean_response_tokens"] = float(np.mean(lengths))
    out["peak_rss_bytes"] = _maxrss(resource.RUSAGE_SELF)
    return out, tunix


def bounds(project: dict, peak: float, bandwidth: float, old_logp: str) -> dict:
    flops = flop_counts(ROWS, PROMPT_LEN, NEW_TOKENS, policy_pass=old_logp == "recompute")
    out = {}
    for phase in ("rollout", "scoring", "update"):
        seconds = project[f"{phase}_s"]
        out[phase] = {"seconds": seconds}
        for count in ("full", "needed"):
            bound_s = flops[count][phase] / peak
            out[phase][f"flops_{count}"] = flops[count][phase]
            out[phase][f"flop_bound_{count}_s"] = bound_s
            out[phase][f"fraction_of_flop_bound_{count}"] = bound_s / seconds
    nb, nh = weights()
    bytes_s = NEW_TOKENS * 4 * (nb + nh) / bandwidth
    roof = max(bytes_s, out["rollout"]["flop_bound_needed_s"])
    out["rollout"].update(bytes_bound_s=bytes_s, fraction_of_roofline=roof / project["rollout_s"])
    out["shaping_gae"] = {"seconds": project["shaping_gae_s"], "flop_bound": None}
    return out


def _maxrss(who) -> int:
    return resource.getrusage(who).ru_maxrss * 1024


def run_tunix(python: str, batches: list, stops: list[int], ours) -> dict:
    """``bench/tunix_side.py ppo`` under ``python``, in lockstep with this project: tunix stops at
    the start of each step (all its work finished) and waits; after its WARM compiling steps the
    caller's ``ours(i)`` runs one timed iteration in each pause, so every tunix step and the
    iteration before it see the same machine load. Returns tunix's JSON."""
    spec = {
        "tokenizer": str(TOKENIZER),
        "model": MODEL,
        "rows": ROWS,
        "prompt_len": PROMPT_LEN,
        "new_tokens": NEW_TOKENS,
        "learning_rate": LEARNING_RATE,
        "kl_coef": KL_COEF,
        "max_grad_norm": MAX_GRAD_NORM,
        "eos_tokens": stops,
        "steps": len(batches),
        "warm_steps": TUNIX_WARM_STEPS,
        "lockstep": True,
        "batches": batches,
    }
    with tempfile.TemporaryDirectory() as tmp:
        path, log = pathlib.Path(tmp) / "spec.json", pathlib.Path(tmp) / "stderr.txt"
        path.write_text(json.dumps(spec))
        cmd = [python, str(ROOT / "bench" / "tunix_side.py"), "ppo", str(path)]
        with log.open("w") as err:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=err, text=True
            )
            result = None
            for line in proc.stdout:
                message = json.loads(line) if line.startswith("{") else {}
                if "waiting" in message:
                    step = message["waiting"]
                    if step > TUNIX_WARM_STEPS:
                        ours(step - TUNIX_WARM_STEPS)
                    proc.stdin.write("go\n")
                    proc.stdin.flush()
                elif "steady_step_s" in message:
                    result = message
            proc.wait()
        # Linux reports ru_maxrss in KiB; the only child this process has waited for is tunix.
        result = dict(result or {}, peak_rss_bytes=_maxrss(resource.RUSAGE_CHILDREN))
        if proc.returncode or "steady_step_s" not in result:
            sys.stderr.write(log.read_text()[-20000:])
            raise SystemExit(f"--tunix_python={python}: bench/tunix_side.py ppo failed (above)")
    return result


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations (median)")
    parser.add_argument(
        "--tunix_python", default="", help="a python with google-tunix 0.1.7 (module docstring)"
    )
    parser.add_argument(
        "--old_logp",
        choices=("sampler", "recompute"),
        default="sampler",
        help="rollout.old_logp: the sampler's log-probs (the default) or a policy pass in scoring",
    )
    args = parser.parse_args()
    peak_before, bandwidth = matmul_peak_flops(), memory_bandwidth()
    project, tunix = run(args.iterations, args.tunix_python, args.old_logp)
    # The roof is the least disturbed of two measurements around the timed iterations.
    peak_after = matmul_peak_flops()
    peak = max(peak_before, peak_after)
    result = {
        "benchmark": "ppo_iteration",
        "backend": jax.default_backend(),
        "config": dict(
            MODEL,
            rows=ROWS,
            prompt_len=PROMPT_LEN,
            new_tokens=NEW_TOKENS,
            epochs=1,
            minibatches=1,
            old_logp=args.old_logp,
        ),
        "matmul_peak_flops": peak,
        "matmul_peak_flops_before_after": [peak_before, peak_after],
        "memory_bandwidth": bandwidth,
        "iterations_timed": args.iterations,
        "seconds_per_iteration": project["total_s"],
        "project": project,
        "phases": bounds(project, peak, bandwidth, args.old_logp),
    }
    if tunix is not None:
        result["tunix"] = tunix
        result["speedup_vs_tunix"] = tunix["steady_step_s"] / project["total_s"]
        # Each timed tunix step against the project iteration just before it.
        pairs = zip(tunix["step_s"][TUNIX_WARM_STEPS:], project["all_total_s"])
        result["speedup_vs_tunix_per_pair"] = [t / o for t, o in pairs]
    result["cpu_load_1min"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
