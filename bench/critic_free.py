"""What a critic-free advantage estimator saves per PPO iteration, as a ratio to GAE in one run.

    python bench/critic_free.py [--iterations 3] [--estimators gae,rloo,grpo,reinforce_pp]

Each estimator runs full ``rl.train`` iterations (rollout, scoring, shaping, update) of one model
shape (hidden 512, 8 layers, the toy task's vocabulary; 8 prompts x 4 samples, 64 new tokens, PPO's
2 epochs x 2 minibatches) in its own subprocess, so its peak resident memory is its own. Prints one
JSON object: per estimator the median seconds of each phase after a compiling iteration, the train
state's bytes (parameters + Adam moments; the critic is half of them under GAE), the process's peak
RSS, and each figure divided by GAE's. Subprocesses run one after the other: the ratios compare runs
seconds apart on the same machine.
"""

import argparse
import contextlib
import json
import pathlib
import resource
import subprocess
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402

from configs import smoke  # noqa: E402
from rl.config import RLConfig  # noqa: E402
from rl.data import PromptIterator  # noqa: E402
from rl.trainers.ppo_trainer import Trainer  # noqa: E402

PHASES = ("rollout", "scoring", "shaping_gae", "update")


def config(estimator: str, iterations: int):
    cfg = smoke.get_config()
    cfg.policy.overrides = {
        "hidden_size": 512,
        "num_layers": 8,
        "intermediate_size": 2816,
        "num_heads": 8,
        "num_kv_heads": 2,
        "head_dim": 64,
    }
    cfg.prm.preset = ""
    cfg.reward.prm_weight = 0.0
    cfg.reward.kl_in = "loss"  # GRPO's place for the KL; the same for every estimator here
    cfg.ppo.advantage = estimator
    cfg.mesh.shape = (1, 1, 1)
    cfg.data.prompts_per_batch, cfg.data.samples_per_prompt = 8, 4
    cfg.rollout.max_new_tokens = 64
    cfg.train.iterations = iterations + 1
    cfg.train.checkpoint_every = 1000
    return cfg


def run_one(estimator: str, iterations: int) -> dict:
    cfg = config(estimator, iterations)
    # TFDS announces its build on stdout; keep stdout for the one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg.data_dir = str(pathlib.Path(tmp) / "tfds")
        trainer = Trainer(RLConfig.from_config_dict(cfg), pathlib.Path(tmp) / "run")
        state_bytes = sum(x.nbytes for x in jax.tree.leaves(trainer.state))
        it = PromptIterator(trainer.examples, cfg.data.prompts_per_batch, 0)
        trainer.iteration(0, next(it))  # compiles
        phases = {k: [] for k in (*PHASES, "total")}
        for i in range(iterations):
            t0 = time.perf_counter()
            metrics = trainer.iteration(i + 1, next(it))
            for k in PHASES:
                phases[k].append(metrics[f"time/{k}"])
            phases["total"].append(time.perf_counter() - t0)
        trainer.close()
    out = {f"{k}_s": float(np.median(v)) for k, v in phases.items()}
    out["state_bytes"] = int(state_bytes)
    # Linux reports ru_maxrss in KiB.
    out["peak_rss_bytes"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--estimators", default="gae,rloo,grpo,reinforce_pp")
    parser.add_argument("--one", help=argparse.SUPPRESS)  # the subprocess: one estimator
    args = parser.parse_args()
    if args.one:
        print(json.dumps(run_one(args.one, args.iterations)))
        return
    estimators = args.estimators.split(",")
    if estimators[0] != "gae":
        raise SystemExit("--estimators: the first must be gae (the reference of the ratios)")
    results = {}
    for name in estimators:
        cmd = [sys.executable, __file__, f"--one={name}", f"--iterations={args.iterations}"]
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
        results[name] = json.loads(done.stdout.strip().splitlines()[-1])
    gae = results["gae"]
    for r in results.values():
        r["ratio_to_gae"] = {k: r[k] / gae[k] for k in r if k.endswith(("_s", "_bytes")) and gae[k]}
    print(json.dumps({"iterations_timed": args.iterations, "estimators": results}, indent=2))


if __name__ == "__main__":
    main()
