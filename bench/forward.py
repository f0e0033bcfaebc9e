"""Forward-pass throughput of `CausalLM`, printed as ONE JSON object.

    python -m bench.forward                                  # width 512, 8 layers, 32k vocab,
    8×1024
    python -m bench.forward --batch=4 --length=2048 --dtype=bfloat16

What is counted (per forward, B·T tokens):
  * matmul FLOPs = 2 · matmul_params · B·T, where matmul_params are all q/k/v/o and MLP projection
    weights plus the LM head (V·D); the embedding lookup is a gather and is not counted;
  * attention FLOPs = 4 · B · T² · H · Dh · L: QKᵀ and PV over the full T×T score matrix, which is
    what `models.attention.attend` computes (the causal mask removes no work);
  * softmax, norms, RoPE, biases and activations are not counted.
Utilisation is achieved FLOP/s over this machine's fp32 matmul peak, measured in the same run as the
best time of a jitted 2048³ fp32 matmul (2·2048³ FLOPs). Times are the median of `--iters` runs
after one compile/warm-up run.
"""

import json
import platform
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from absl import app, flags
from flax import nnx

from models import presets as model_presets
from models.config import ModelConfig, count_params, matmul_params
from models.decoder import CausalLM

_BATCH = flags.DEFINE_integer("batch", 8, "sequences per forward")
_LENGTH = flags.DEFINE_integer("length", 1024, "tokens per sequence")
_ITERS = flags.DEFINE_integer("iters", 3, "timed forwards (median reported)")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "compute dtype")
_PEAK_N = flags.DEFINE_integer("peak_n", 2048, "size of the square matmul that measures the peak")


def _timed(fn, *args, iters: int) -> list[float]:
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return times


def matmul_peak(n: int) -> dict:
    """Best-of-5 fp32 n×n×n matmul throughput, the denominator of `utilization`."""
    a = jax.random.normal(jax.random.key(1), (n, n), jnp.float32)
    b = jax.random.normal(jax.random.key(2), (n, n), jnp.float32)
    matmul = jax.jit(lambda x, y: x @ y)
    jax.block_until_ready(matmul(a, b))
    best = min(_timed(matmul, a, b, iters=5))
    return {"n": n, "seconds": best, "flops_per_s": 2 * n**3 / best}


def main(argv):
    del argv
    config = ModelConfig.from_dict(model_presets.bench().to_dict()).replace(dtype=_DTYPE.value)
    b, t = _BATCH.value, _LENGTH.value

    def make():
        return CausalLM(config, rngs=nnx.Rngs(0))

    graphdef, _ = nnx.split(nnx.eval_shape(make))
    state = jax.jit(lambda: nnx.split(make())[1])()

    forward = jax.jit(lambda state, ids: nnx.merge(graphdef, state)(ids))
    ids = jax.random.randint(jax.random.key(0), (b, t), 0, config.vocab_size, jnp.int32)
    start = time.perf_counter()
    jax.block_until_ready(forward(state, ids))
    compile_s = time.perf_counter() - start
    seconds = statistics.median(_timed(forward, state, ids, iters=_ITERS.value))

    tokens = b * t
    matmul_flops = 2 * matmul_params(config) * tokens
    attention_flops = 4 * b * t * t * config.num_heads * config.head_dim * config.num_layers
    flops = matmul_flops + attention_flops
    peak = matmul_peak(_PEAK_N.value)
    result = {
        "benchmark": "forward",
        "device": jax.devices()[0].device_kind,
        "platform": jax.devices()[0].platform,
        "num_devices_used": 1,
        "host": platform.machine(),
        "jax": jax.__version__,
        "model": {
            "hidden": config.hidden_size,
            "layers": config.num_layers,
            "heads": config.num_heads,
            "kv_heads": config.num_kv_heads,
            "head_dim": config.head_dim,
            "mlp": config.intermediate_size,
            "vocab": config.vocab_size,
            "params": count_params(config),
            "matmul_params": matmul_params(config),
            "dtype": config.dtype.name,
        },
        "batch": b,
        "length": t,
        "tokens": tokens,
        "compile_and_first_run_s": round(compile_s, 3),
        "forward_s_median": round(seconds, 4),
        "tokens_per_s": round(tokens / seconds, 1),
        "flops_per_forward": {"matmul": matmul_flops, "attention": attention_flops, "total": flops},
        "achieved_flops_per_s": flops / seconds,
        "peak_fp32_matmul_flops_per_s": peak["flops_per_s"],
        "peak_matmul": {"n": peak["n"], "seconds": round(peak["seconds"], 5)},
        "utilization_of_fp32_matmul_peak": round(flops / seconds / peak["flops_per_s"], 4),
        "counting": "2*matmul_params*tokens (projections + LM head, no embedding gather) + "
        "4*B*T^2*H*Dh*L (full TxT QK^T and PV); elementwise ops not counted",
    }
    print(json.dumps(result))


if __name__ == "__main__":
    np.set_printoptions(precision=4)
    app.run(main)
