"""Throughput of reward shaping (clip_delta + combine) under jit + vmap on a [B, T] batch.

    python bench/shaping.py [--batch 1024] [--length 2048]

Prints one JSON object: tokens/s of the shaping pass, tokens/s of a plain elementwise pass over an
array of the same shape in the same run, and their ratio (how close shaping is to a memory-bound
pass that touches each token once).
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402

from bench.common import time_fn  # noqa: E402
from rewards import shaping  # noqa: E402


def shape_row(scores_T, step_end_T, response_T, kl_T, success):
    prm_T = shaping.clip_delta(scores_T, step_end_T, 0.5)
    return shaping.combine(
        response_T, success=success, orm=0.0, prm_T=prm_T, kl_T=kl_T, prm_weight=1.0, kl_coef=0.05
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=1024)
    parser.add_argument("--length", type=int, default=2048)
    parser.add_argument("--repeats", type=int, default=5)
    args = parser.parse_args()
    b, t = args.batch, args.length

    k1, k2, k3 = jax.random.split(jax.random.key(0), 3)
    scores = jax.random.uniform(k1, (b, t))
    step_end = jax.random.bernoulli(k2, 0.05, (b, t))
    lengths = jax.random.randint(k3, (b, 1), t // 2, t + 1)
    response = jnp.arange(t)[None, :] < lengths
    step_end = step_end & response
    kl = 0.01 * scores
    success = (lengths[:, 0] % 2).astype(jnp.float32)

    shaped = jax.jit(jax.vmap(shape_row))
    seconds = time_fn(shaped, scores, step_end, response, kl, success, repeats=args.repeats)
    elementwise = jax.jit(lambda x: x * 2.0 + 1.0)
    base_seconds = time_fn(elementwise, scores, repeats=args.repeats)

    tokens = b * t
    print(
        json.dumps(
            {
                "benchmark": "shaping.clip_delta+combine",
                "batch": b,
                "length": t,
                "backend": jax.default_backend(),
                "tokens_per_s": tokens / seconds,
                "elementwise_tokens_per_s": tokens / base_seconds,
                "ratio_to_elementwise": base_seconds / seconds,
                "seconds": seconds,
                "elementwise_seconds": base_seconds,
            }
        )
    )


if __name__ == "__main__":
    main()
