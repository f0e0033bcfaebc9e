"""Timing helpers shared by the benchmark scripts (which print one JSON object each)."""

import time

import jax
import jax.numpy as jnp


def time_fn(fn, *args, repeats: int = 5, warmup: int = 1) -> float:
    """Median wall seconds of ``fn(*args)``, blocking on the result; compile excluded by warmup."""
    times = time_fn_all(fn, *args, repeats=repeats, warmup=warmup)
    return times[len(times) // 2]


def matmul_peak_flops(n: int = 2048, dtype=jnp.float32, repeats: int = 5) -> float:
    """This machine's achieved fp32 matmul FLOP/s through XLA (an n^3 matmul), the roofline's
    roof."""
    a = jnp.ones((n, n), dtype)
    b = jnp.ones((n, n), dtype)
    seconds = time_fn(jax.jit(jnp.matmul), a, b, repeats=repeats)
    return 2 * n**3 / seconds


def memory_bandwidth(nbytes: int = 256 << 20, repeats: int = 5) -> float:
    """Achieved read bytes/s of an XLA reduction over an nbytes array: the access pattern of a
    decode step, which reads every weight once.

    Not an elementwise pass: XLA:CPU writes its output to a fresh allocation each call, whose
    first touch page-faults, so ``v * 2 + 1`` measured 3.7-4.7 GB/s on a machine whose reduction
    reads 25 GB/s (and made the rollout's "fraction of roofline" exceed 1).
    """
    x = jnp.ones((nbytes // 4,), jnp.float32)
    seconds = time_fn(jax.jit(jnp.sum), x, repeats=repeats)
    return nbytes / seconds


def time_fn_all(fn, *args, repeats: int = 5, warmup: int = 1) -> list[float]:
    """Sorted wall seconds of ``repeats`` calls of ``fn(*args)`` (blocking), after ``warmup`` calls.

    On a shared machine the minimum is the least disturbed run and the median the typical one.
    """
    for _ in range(warmup):
        jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        t0 = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - t0)
    return sorted(times)
