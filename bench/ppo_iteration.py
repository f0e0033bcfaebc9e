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

``fraction_of_flop_bound`` = (flops / peak) / seconds for each count. Shaping + GAE has no matmul
(no FLOP bound). Decode reads every policy weight once per new token, so the rollout's real roof is
memory bandwidth: ``rollout.bytes_bound_s`` = R x 4 bytes x (N_b + N_h) / the bandwidth measured in
this run (``bench.common.memory_bandwidth``), with ``fraction_of_roofline`` against the larger of
the two bounds.

Tunix (with ``--tunix_python``): ``bench/tunix_side.py ppo`` runs under that interpreter (never
importing this project) with google-tunix 0.1.7's ``PPOLearner`` on an ``RLCluster`` of the same
configuration for 9 steps, and reports its steady state (t(9 steps) - t(3 steps)) / 6 from one
run; ``speedup_vs_tunix`` is that over this project's median iteration. Install it in a separate
venv, never into the project's:

    python3 -m venv /tmp/tunixvenv && /tmp/tunixvenv/bin/pip install google-tunix==0.1.7

Both sides run one after the other in this one invocation (this project first), so the ratio
compares runs minutes apart on the same machine. Prints ONE JSON object.
"""

import argparse
import contextlib
import json
import os
import pathlib
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
TUNIX_STEPS, TUNIX_WARM_STEPS = 9, 3


def project_config():
    cfg = smoke.get_config()
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


def flop_counts(rows: int, prompt_len: int, new_tokens: int, model: dict = MODEL) -> dict:
    """FLOPs of each phase, ``full`` (every position) and ``needed`` (the LM head on the response
    positions only), as the module docstring writes them."""
    nb, nh = weights(model)
    all_pos, resp = rows * (prompt_len + new_tokens), rows * new_tokens
    lm_full, lm_needed = (nb + nh) * all_pos, nb * all_pos + nh * resp
    return {
        "full": {
            "rollout": 2 * lm_full,
            "scoring": 2 * (2 * lm_full + nb * all_pos),
            "update": 6 * (lm_full + nb * all_pos),
        },
        "needed": {
            "rollout": 2 * lm_needed,
            "scoring": 2 * (2 * lm_needed + nb * all_pos),
            "update": 6 * (lm_needed + nb * all_pos),
        },
    }


def run_project(iterations: int, batches: list) -> dict:
    """Compiles on ``batches[0]``, times ``batches[1:iterations + 1]``; medians of each phase."""
    cfg = project_config()
    # TFDS announces its build on stdout; keep stdout for the one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg.data_dir = str(pathlib.Path(tmp) / "tfds")
        trainer = Trainer(RLConfig.from_config_dict(cfg), pathlib.Path(tmp) / "run")
        it = PromptIterator(trainer.examples, ROWS, 0)
        drawn = [next(it) for _ in range(max(iterations + 1, TUNIX_STEPS))]
        batches.extend(
            [
                {
                    "prompt": prompts_lib.format_prompt(
                        e.question,
                        trainer.tokenizer,
                        system_prompt=prompts_lib.system_prompt_for(cfg.data.dataset),
                    ),
                    "answer": e.answer,
                }
                for e in batch
            ]
            for batch in drawn
        )
        stops = list(stop_token_ids(trainer.tokenizer))
        t0 = time.perf_counter()
        trainer.iteration(0, drawn[0])  # compiles
        compile_s = time.perf_counter() - t0
        phases = {k: [] for k in (*PHASES, "total")}
        lengths = []
        for i in range(iterations):
            t0 = time.perf_counter()
            metrics = trainer.iteration(i + 1, drawn[i + 1])
            phases["total"].append(time.perf_counter() - t0)
            for k in PHASES:
                phases[k].append(metrics[f"time/{k}"])
            lengths.append(metrics["rollout/response_length"])
        trainer.close()
    out = {f"{k}_s": float(np.median(v)) for k, v in phases.items()}
    out["all_total_s"] = phases["total"]
    out["first_iteration_s"] = compile_s
    out["mean_response_tokens"] = float(np.mean(lengths))
    out["stop_token_ids"] = stops
    return out


def bounds(project: dict, peak: float, bandwidth: float) -> dict:
    flops = flop_counts(ROWS, PROMPT_LEN, NEW_TOKENS)
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


def run_tunix(python: str, batches: list, stops: list[int]) -> dict:
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
        "steps": TUNIX_STEPS,
        "warm_steps": TUNIX_WARM_STEPS,
        "batches": batches[:TUNIX_STEPS],
    }
    with tempfile.TemporaryDirectory() as tmp:
        path = pathlib.Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        cmd = [python, str(ROOT / "bench" / "tunix_side.py"), "ppo", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-20000:])
        raise SystemExit(f"--tunix_python={python}: bench/tunix_side.py ppo failed (above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=6, help="timed iterations (median)")
    parser.add_argument(
        "--tunix_python", default="", help="a python with google-tunix 0.1.7 (module docstring)"
    )
    args = parser.parse_args()
    peak_before, bandwidth = matmul_peak_flops(), memory_bandwidth()
    batches: list = []
    project = run_project(args.iterations, batches)
    # The roof is the least disturbed of two measurements around the timed iterations.
    peak_after = matmul_peak_flops()
    peak = max(peak_before, peak_after)
    result = {
        "benchmark": "ppo_iteration",
        "backend": jax.default_backend(),
        "config": dict(
            MODEL, rows=ROWS, prompt_len=PROMPT_LEN, new_tokens=NEW_TOKENS, epochs=1, minibatches=1
        ),
        "matmul_peak_flops": peak,
        "matmul_peak_flops_before_after": [peak_before, peak_after],
        "memory_bandwidth": bandwidth,
        "iterations_timed": args.iterations,
        "seconds_per_iteration": project["total_s"],
        "project": project,
        "phases": bounds(project, peak, bandwidth),
    }
    print(json.dumps(result), file=sys.stderr, flush=True)  # in case the tunix side fails
    if args.tunix_python:
        tunix = run_tunix(args.tunix_python, batches, project["stop_token_ids"])
        result["tunix"] = tunix
        result["speedup_vs_tunix"] = tunix["steady_step_s"] / project["total_s"]
    result["cpu_load_1min"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
