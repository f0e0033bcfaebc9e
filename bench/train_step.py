"""PPO update throughput and memory, scoring time, and the time split of one full iteration.

    python bench/train_step.py [--batch 8] [--prompt 64] [--response 960] [--iterations 3]
    python bench/train_step.py --sections update --microbatches 4      # one section per process
    python bench/train_step.py --sections update --compile-only        # memory only, no run

Prints one JSON object:
* ``update``: the jitted PPO step (policy + critic, hidden 512, 8 layers, vocab 32k, fp32) on
  batch x (prompt + response) = 8k tokens: seconds, tokens/s and achieved FLOP/s as a fraction of
  this machine's fp32 matmul peak measured in the same run. FLOPs counted: forward + backward of
  both models, 6 x matmul parameters x tokens each, plus 3 x the causal attention FLOPs (the plain
  program's work: the LM head over every position). Memory: the compiled program's temporary,
  argument and output bytes (XLA's buffer assignment) and the process's peak RSS
  (``resource.getrusage``) after the timed steps; ``--compile-only`` reports the compiled bytes
  without running (for programs that do not fit the machine).
* ``score``: the jitted scoring pass (policy and reference log-probs, critic values) over the same
  batch: seconds, and as a fraction of the matmul peak (2 x matmul parameters x tokens per model).
* ``iteration``: seconds per phase (rollout, scoring, shaping + GAE, update) of full ``rl.train``
  iterations of the same model shape on the toy task (vocabulary = the toy tokenizer's, so rollouts
  decode to text), after a warm-up iteration that compiles.
"""

import argparse
import contextlib
import json
import pathlib
import resource
import sys
import tempfile
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

from bench.common import matmul_peak_flops, time_fn  # noqa: E402
from configs import smoke  # noqa: E402
from configs.sharding import RULES  # noqa: E402
from models import presets  # noqa: E402
from models.config import ModelConfig, matmul_params  # noqa: E402
from models.decoder import CausalLM  # noqa: E402
from models.heads import ValueModel  # noqa: E402
from models.sharding import make_mesh, shard_model, use_mesh  # noqa: E402
from rl.algo import update as upd  # noqa: E402
from rl.algo.scoring import make_score_fn  # noqa: E402
from rl.config import OptimConfig, PPOConfig, RewardConfig, RLConfig  # noqa: E402
from rl.data import PromptIterator  # noqa: E402
from rl.trainers.ppo_trainer import Trainer  # noqa: E402


def _peak_rss_bytes() -> int:
    """This process's peak resident set so far (Linux reports kilobytes)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024


def _compiled_bytes(compiled) -> dict:
    m = compiled.memory_analysis()
    return {
        "temp": m.temp_size_in_bytes,
        "arguments": m.argument_size_in_bytes,
        "outputs": m.output_size_in_bytes,
        "generated_code": m.generated_code_size_in_bytes,
    }


def _models(mesh):
    cfg = ModelConfig.from_dict(presets.bench().to_dict())
    policy = shard_model(CausalLM(cfg, rngs=nnx.Rngs(0)), mesh, RULES)
    critic = shard_model(ValueModel.from_policy(policy), mesh, RULES)
    return cfg, policy, critic


def _random_batch(cfg, batch: int, prompt: int, response: int) -> dict:
    rng = np.random.default_rng(0)
    s = prompt + response
    f = lambda: rng.normal(size=(batch, response)).astype(np.float32)  # noqa: E731
    return {
        "tokens": rng.integers(0, cfg.vocab_size, (batch, s)).astype(np.int32),
        "attention_mask": np.ones((batch, s), bool),
        "response_mask": np.ones((batch, response), bool),
        "old_logp": -np.abs(f()) - 5,
        "old_values": f(),
        "advantages": f(),
        "returns": f(),
        "ref_logp": -np.abs(f()) - 5,
    }


def bench_update(
    batch: int,
    prompt: int,
    response: int,
    args_microbatches: int,
    repeats: int,
    compile_only: bool = False,
) -> dict:
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    cfg, policy, critic = _models(mesh)
    tx = upd.make_optimizer(OptimConfig(), 1e-6, 100)
    models, state, sharding = upd.init_train_state(policy, critic, tx, tx, mesh, RULES)
    fn = upd.make_update_fn(
        models, PPOConfig(microbatches=args_microbatches), RewardConfig(), tx, tx, prompt
    )
    batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    step = upd.jit_update(fn, sharding, batch_sh, NamedSharding(mesh, PartitionSpec()))
    data = jax.device_put(_random_batch(cfg, batch, prompt, response), batch_sh)
    tokens = batch * (prompt + response)
    out = {"tokens": tokens, "microbatches": args_microbatches}
    with use_mesh(mesh, RULES):
        out["compiled_bytes"] = _compiled_bytes(step.lower(state, data).compile())
    if compile_only:
        return out
    holder = [state]

    def run():
        with use_mesh(mesh, RULES):
            holder[0], metrics = step(holder[0], data)
        return metrics

    seconds = time_fn(run, repeats=repeats)
    out["peak_rss_bytes"] = _peak_rss_bytes()
    s = prompt + response
    attention = 4 * batch * s * s * cfg.num_heads * cfg.head_dim * cfg.num_layers / 2  # causal
    flops = 2 * (6 * matmul_params(cfg) * tokens + 3 * attention)
    peak = matmul_peak_flops()
    out.update(
        {
            "seconds": seconds,
            "tokens_per_s": tokens / seconds,
            "flops": flops,
            "achieved_flops_per_s": flops / seconds,
            "matmul_peak_flops_per_s": peak,
            "fraction_of_matmul_peak": flops / seconds / peak,
            "model": {
                "hidden": cfg.hidden_size,
                "layers": cfg.num_layers,
                "vocab": cfg.vocab_size,
                "matmul_params": matmul_params(cfg),
            },
        }
    )
    return out


def bench_score(batch: int, prompt: int, response: int, repeats: int) -> dict:
    """The scoring pass of the same models (reference = a second policy) over the same batch."""
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    cfg, policy, critic = _models(mesh)
    graphdefs, params = {}, {}
    for name, model in (("policy", policy), ("critic", critic), ("ref", policy)):
        graphdefs[name], params[name] = nnx.split(model)
    data = _random_batch(cfg, batch, prompt, response)
    args = (params, data["tokens"], data["attention_mask"], data["response_mask"])
    score = jax.jit(make_score_fn(graphdefs, prompt))
    with use_mesh(mesh, RULES):
        compiled = _compiled_bytes(score.lower(*args).compile())
        seconds = time_fn(score, *args, repeats=repeats)
    tokens = batch * (prompt + response)
    s = prompt + response
    attention = 4 * batch * s * s * cfg.num_heads * cfg.head_dim * cfg.num_layers / 2
    flops = 3 * (2 * matmul_params(cfg) * tokens + attention)  # the plain program's work
    peak = matmul_peak_flops()
    return {
        "tokens": tokens,
        "seconds": seconds,
        "compiled_bytes": compiled,
        "peak_rss_bytes": _peak_rss_bytes(),
        "flops": flops,
        "matmul_peak_flops_per_s": peak,
        "fraction_of_matmul_peak": flops / seconds / peak,
    }


def bench_iteration(iterations: int) -> dict:
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
    cfg.mesh.shape = (1, 1, 1)
    cfg.data.prompts_per_batch, cfg.data.samples_per_prompt = 8, 4
    cfg.rollout.max_new_tokens = 64
    cfg.train.iterations = iterations + 1
    cfg.train.checkpoint_every = 1000
    # TFDS announces its build on stdout; keep stdout for the one JSON object.
    with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(sys.stderr):
        cfg.data_dir = str(pathlib.Path(tmp) / "tfds")
        trainer = Trainer(RLConfig.from_config_dict(cfg), pathlib.Path(tmp) / "run")
        it = PromptIterator(trainer.examples, cfg.data.prompts_per_batch, 0)
        trainer.iteration(0, next(it))  # compiles
        phases = {"rollout": [], "scoring": [], "shaping_gae": [], "update": []}
        totals = []
        for i in range(iterations):
            t0 = time.perf_counter()
            metrics = trainer.iteration(i + 1, next(it))
            for k in phases:
                phases[k].append(metrics[f"time/{k}"])
            totals.append(time.perf_counter() - t0)
        phases["total"] = totals
        trainer.close()
    out = {k: float(np.median(v)) for k, v in phases.items()}
    out["fractions"] = {
        k: out[k] / out["total"] for k in ("rollout", "scoring", "shaping_gae", "update")
    }
    out["rows"] = cfg.data.prompts_per_batch * cfg.data.samples_per_prompt
    out["max_new_tokens"] = cfg.rollout.max_new_tokens
    return out


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--prompt", type=int, default=64)
    parser.add_argument("--response", type=int, default=960)
    parser.add_argument("--iterations", type=int, default=3)
    parser.add_argument("--microbatches", type=int, default=1)
    parser.add_argument("--repeats", type=int, default=3, help="timed steps (median)")
    parser.add_argument("--sections", default="update,score,iteration")
    parser.add_argument("--compile-only", action="store_true", help="update: compiled bytes only")
    args = parser.parse_args()
    sections = args.sections.split(",")
    result = {"benchmark": "ppo_train_step", "backend": jax.default_backend()}
    if "update" in sections:
        result["update"] = bench_update(
            args.batch,
            args.prompt,
            args.response,
            args.microbatches,
            args.repeats,
            args.compile_only,
        )
        print(json.dumps({"update": result["update"]}), file=sys.stderr, flush=True)
    if "score" in sections:
        result["score"] = bench_score(args.batch, args.prompt, args.response, args.repeats)
    if "iteration" in sections:
        result["iteration"] = bench_iteration(args.iterations)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
