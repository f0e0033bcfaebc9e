"""Decode throughput of `rl.rollout.sampler.Sampler` against its roofline and transformers'
generate.

    python bench/sampler.py --batch 16
    python bench/sampler.py --batch 64
    python bench/sampler.py --batch 1 --samples-per-prompt 64 --no-hf

Model: a random Qwen2 of 4 layers, width 256, 4 heads / 2 KV heads of 64, MLP 1024, vocabulary
151,936, tied embeddings, fp32 (created with transformers, saved, loaded through `hf_io`, so both
implementations run the same weights). Prompts of 32 tokens, 128 new tokens, greedy, no EOS (every
row runs to the end). --temperature/--top-k/--top-p switch to sampling (the head_* loops stay
greedy).

With --head-dtype bfloat16 (``rollout.head_dtype``), ``low_head``: the same call with the LM
head's weights and the hidden state in bf16 (fp32 accumulation): tokens/s, its own head bound (the
head loop in bf16), ``head_fraction`` against that bound, ``speedup_vs_fp32_head``, and the
numerical difference: ``tokens_equal_to_fp32`` (greedy tokens equal to the fp32 run's, position by
position) and ``first_divergence_step_median`` (the step where a row first differs; new_tokens if
never).

Prints ONE JSON object:
  * tokens_per_s (median of --repeats full calls: prefill + decode, compile excluded) and
    best_tokens_per_s;
  * hf_tokens_per_s / hf_best_tokens_per_s: transformers' `generate` (PyTorch CPU, same weights and
    prompts, --hf-repeats runs); speedup_vs_hf (medians) and best_speedup_vs_hf (best runs);
  * matmul_peak_flops, memory_bandwidth (bench.common, this run) and the roofline: per decode step
    max(flops / peak, bytes / bandwidth) with bytes = every parameter (the 155 MB embedding, read by
    the tied LM head, dominates) + the KV cache read; roofline_tokens_per_s and roofline_fraction;
  * where the time goes, per decode step (loops of the same length, min of repeats): head_ms (the LM
    head matmul alone), head_select_ms (head + the sampler's greedy selection), step_ms (the
    sampler: whole call / new tokens); head_bound_tokens_per_s = rows / head_ms is the decode bound
    (XLA's own speed on the head), head_fraction = best_tokens_per_s / that (both
    sides' least disturbed runs); cpu_load_1min says how shared the machine was;
  * with --samples-per-prompt N > 1: shared_prefix_s (B prompts × N samples, one call, prefill
    included) vs decode_only_s (B·N distinct rows decoding from an already prefilled cache), timed
    in interleaved pairs (medians), shared_over_decode_ratio (target <= 1.1) and each pair's ratio;
  * with --tunix_python (an interpreter with google-tunix 0.1.7, installed apart from the project:
    ``python3 -m venv /tmp/tunixvenv && /tmp/tunixvenv/bin/pip install google-tunix==0.1.7``):
    ``bench/tunix_side.py sampler`` runs tunix's ``tunix.generate.sampler.Sampler`` in that
    interpreter on the same checkpoint (re-saved for it), the same prompt ids (B·N rows, as
    transformers gets them) and sampling settings, cache = prompt + new tokens:
    tunix_tokens_per_s / tunix_best_tokens_per_s (median / best of --repeats calls after a
    compiling one), speedup_vs_tunix (medians) and best_speedup_vs_tunix, and, greedy only,
    tunix_tokens_agree: the fraction of generated tokens equal on both sides (same weights, so
    near 1; fp32 reductions in a different order can flip a near-tie and the rows then diverge).
    Without --tunix_python no tunix field is printed: a peer's figure is never written in as if
    measured.
The machine is shared: every timing is taken in this run; compare ratios, not absolute numbers.
"""

import argparse
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
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402
import transformers  # noqa: E402
from flax import nnx  # noqa: E402

from bench.common import matmul_peak_flops, memory_bandwidth, time_fn_all  # noqa: E402
from models.hf_io import load_causal_lm  # noqa: E402
from rl.rollout import token_selection as sampling  # noqa: E402
from rl.rollout.sampler import Sampler  # noqa: E402
from rl.rollout.sampler_config import SamplerConfig  # noqa: E402

HF_CONFIG = dict(
    vocab_size=151936,
    hidden_size=256,
    intermediate_size=1024,
    num_hidden_layers=4,
    num_attention_heads=4,
    num_key_value_heads=2,
    head_dim=64,
    tie_word_embeddings=True,
    max_position_embeddings=4096,
    rope_theta=10000.0,
)


def build_models(workdir: str):
    torch.manual_seed(0)
    hf = transformers.Qwen2ForCausalLM(transformers.Qwen2Config(**HF_CONFIG)).eval()
    hf.save_pretrained(workdir)
    return hf, load_causal_lm(workdir, jnp.float32)


def head_loops(model, rows: int, steps: int, dtype=None):
    """Jitted loops of `steps` LM-head matmuls (alone, and followed by greedy selection); `dtype`:
    the head's weights and the hidden state cast to it (fp32 accumulation), as the sampler's
    `head_dtype` computes it."""
    table = model.output_embedding()
    if dtype is not None:
        table = table.astype(dtype)

    def loop(select: bool):
        @jax.jit
        def run(table, x):
            def body(_, x):
                logits = jnp.einsum(
                    "bd,vd->bv", x.astype(table.dtype), table, preferred_element_type=jnp.float32
                )
                if select:
                    sel = sampling.greedy(logits)
                    feed = sel.logp_B + sel.tokens_B.astype(jnp.float32)
                else:
                    feed = logits[:, 0]
                return x + 1e-9 * feed[:, None]  # a dependence, so steps cannot overlap or vanish

            return jax.lax.fori_loop(0, steps, body, x)

        return run

    x = jnp.full((rows, table.shape[1]), 0.01, jnp.float32)
    return loop(False), loop(True), (table, x)


def hf_generate_seconds(
    hf, ids, mask, new_tokens: int, sampling_cfg: dict, repeats: int
) -> list[float]:
    ids_t, mask_t = torch.tensor(ids, dtype=torch.long), torch.tensor(mask, dtype=torch.long)
    kw = dict(attention_mask=mask_t, eos_token_id=None, pad_token_id=0)
    if sampling_cfg["temperature"] > 0:
        kw.update(
            do_sample=True,
            temperature=sampling_cfg["temperature"],
            top_k=sampling_cfg["top_k"],
            top_p=sampling_cfg["top_p"],
        )  # top_k=0: off
    else:
        kw.update(do_sample=False)
    with torch.no_grad():
        hf.generate(ids_t, max_new_tokens=4, **kw)  # warmup
        times = []
        for _ in range(repeats):
            t0 = time.perf_counter()
            out = hf.generate(ids_t, max_new_tokens=new_tokens, min_new_tokens=new_tokens, **kw)
            times.append(time.perf_counter() - t0)
            assert out.shape[1] == ids.shape[1] + new_tokens
    return sorted(times)


def tunix_sampler(python, hf, ids, mask, new_tokens, sampling_cfg, repeats) -> dict:
    """``bench/tunix_side.py sampler`` under ``python`` on ``hf``'s weights and these rows."""
    prompts = [row[m.astype(bool)].tolist() for row, m in zip(ids, mask)]
    used = {t for row in prompts for t in row}
    pad = next(i for i in range(HF_CONFIG["vocab_size"]) if i not in used)  # no prompt token
    model = dict(
        num_layers=HF_CONFIG["num_hidden_layers"],
        num_heads=HF_CONFIG["num_attention_heads"],
        num_kv_heads=HF_CONFIG["num_key_value_heads"],
        rms_norm_eps=hf.config.rms_norm_eps,
        **{k: HF_CONFIG[k] for k in ("vocab_size", "hidden_size", "intermediate_size")},
        **{k: HF_CONFIG[k] for k in ("head_dim", "rope_theta", "tie_word_embeddings")},
    )
    with tempfile.TemporaryDirectory() as tmp:
        hf.save_pretrained(tmp)
        spec = dict(
            checkpoint=tmp,
            model=model,
            prompts=prompts,
            pad_id=pad,
            prompt_len=int(ids.shape[1]),
            new_tokens=new_tokens,
            repeats=repeats,
            **sampling_cfg,
        )
        path = pathlib.Path(tmp) / "spec.json"
        path.write_text(json.dumps(spec))
        cmd = [python, str(ROOT / "bench" / "tunix_side.py"), "sampler", str(path)]
        done = subprocess.run(cmd, capture_output=True, text=True)
    if done.returncode:
        sys.stderr.write(done.stderr[-20000:])
        raise SystemExit(f"--tunix_python={python}: bench/tunix_side.py sampler failed (above)")
    return json.loads(done.stdout.strip().splitlines()[-1])


def roofline(
    cfg, rows: int, prompts: int, prompt_len: int, new_tokens: int, peak: float, bandwidth: float
) -> dict:
    """Per decode step, averaged over the response: flops and the minimum bytes a step must read."""
    d, v, layers = cfg.hidden_size, cfg.vocab_size, cfg.num_layers
    h, k, dh, f = cfg.num_heads, cfg.num_kv_heads, cfg.head_dim, cfg.intermediate_size
    layer_params = d * (h + 2 * k) * dh + h * dh * d + 3 * d * f
    ctx = new_tokens / 2  # mean own decode slots read per step
    attn_flops = 4 * rows * layers * h * dh * (prompt_len + ctx)
    flops = 2 * rows * (layers * layer_params + v * d) + attn_flops
    kv_bytes = 2 * layers * k * dh * 4 * (prompts * prompt_len + rows * ctx)
    param_bytes = 4 * (layers * layer_params + v * d)
    step_s = max(flops / peak, (param_bytes + kv_bytes) / bandwidth)
    return dict(
        step_flops=flops,
        step_bytes=param_bytes + kv_bytes,
        roofline_step_ms=step_s * 1e3,
        roofline_tokens_per_s=rows / step_s,
    )


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--batch", type=int, default=16, help="prompts B")
    parser.add_argument("--samples-per-prompt", type=int, default=1, help="samples N per prompt")
    parser.add_argument("--prompt-len", type=int, default=32)
    parser.add_argument("--new-tokens", type=int, default=128)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--temperature", type=float, default=0.0, help="0: greedy (the target run)")
    parser.add_argument("--top-k", type=int, default=0)
    parser.add_argument("--top-p", type=float, default=1.0)
    parser.add_argument("--no-hf", action="store_true", help="skip transformers' generate")
    parser.add_argument("--hf-repeats", type=int, default=2)
    parser.add_argument(
        "--tunix_python", default="", help="a python with google-tunix 0.1.7 (see the docstring)"
    )
    parser.add_argument(
        "--head-dtype",
        default="",
        help="bfloat16: also time the sampler with a bf16 LM head (rollout.head_dtype), against "
        "the head loop in bf16, and count its tokens equal to the fp32 run's",
    )
    args = parser.parse_args()
    b, n, p, r = args.batch, args.samples_per_prompt, args.prompt_len, args.new_tokens
    rows = b * n

    with tempfile.TemporaryDirectory() as workdir:
        hf, model = build_models(workdir)
    cfg = model.config
    state = nnx.state(model)
    rng = np.random.default_rng(0)
    ids = rng.integers(0, cfg.vocab_size, (b, p)).astype(np.int32)
    mask = np.ones_like(ids)
    ids[1::2, :4] = 0  # half the prompts left-padded: real prompts come in different lengths
    mask[1::2, :4] = 0

    peak, bandwidth = matmul_peak_flops(), memory_bandwidth()
    sampling_cfg = dict(temperature=args.temperature, top_k=args.top_k, top_p=args.top_p)
    sampler = Sampler(model, SamplerConfig(max_new_tokens=r, samples_per_prompt=n, **sampling_cfg))
    key = jax.random.key(0)
    t0 = time.perf_counter()
    out = jax.block_until_ready(sampler(state, ids, mask, key))
    compile_s = time.perf_counter() - t0
    assert int(out.steps) == r and bool(out.response_mask.all())
    times = time_fn_all(lambda: sampler(state, ids, mask, key), repeats=args.repeats, warmup=0)
    seconds = times[len(times) // 2]
    memory = (
        sampler._generate.lower(state, jnp.asarray(ids), jnp.asarray(mask, bool), key, None)
        .compile()
        .memory_analysis()
    )

    head, head_select, head_args = head_loops(model, rows, r - 1)
    head_s = min(time_fn_all(head, *head_args, repeats=args.repeats))
    head_select_s = min(time_fn_all(head_select, *head_args, repeats=args.repeats))

    result = {
        "benchmark": "sampler." + ("greedy" if args.temperature == 0 else "sample"),
        "backend": jax.default_backend(),
        **sampling_cfg,
        "batch": b,
        "samples_per_prompt": n,
        "rows": rows,
        "prompt_len": p,
        "new_tokens": r,
        "tokens_per_s": rows * r / seconds,
        "best_tokens_per_s": rows * r / times[0],
        "seconds": seconds,
        "compile_s": compile_s - seconds,
        "step_ms": seconds / r * 1e3,
        "head_ms": head_s / (r - 1) * 1e3,
        "head_select_ms": head_select_s / (r - 1) * 1e3,
        "head_bound_tokens_per_s": rows * (r - 1) / head_s,
        "matmul_peak_flops": peak,
        "memory_bandwidth": bandwidth,
        **roofline(cfg, rows, b, p, r, peak, bandwidth),
        "kv_cache_bytes": 2
        * cfg.num_layers
        * cfg.num_kv_heads
        * cfg.head_dim
        * 4
        * (b * p + rows * r),
        "compiled_temp_bytes": getattr(memory, "temp_size_in_bytes", None),
    }
    result["roofline_fraction"] = result["tokens_per_s"] / result["roofline_tokens_per_s"]
    # Least-disturbed runs on both sides: the sampler's best call against the head loop's best.
    result["head_fraction"] = result["best_tokens_per_s"] / result["head_bound_tokens_per_s"]

    if args.head_dtype:
        low = Sampler(
            model,
            SamplerConfig(
                max_new_tokens=r, samples_per_prompt=n, head_dtype=args.head_dtype, **sampling_cfg
            ),
        )
        low_out = jax.block_until_ready(low(state, ids, mask, key))
        low_times = time_fn_all(lambda: low(state, ids, mask, key), repeats=args.repeats, warmup=0)
        lhead, _, lhead_args = head_loops(model, rows, r - 1, jnp.dtype(args.head_dtype))
        lhead_s = min(time_fn_all(lhead, *lhead_args, repeats=args.repeats))
        bound = rows * (r - 1) / lhead_s
        result["low_head"] = {
            "head_dtype": args.head_dtype,
            "tokens_per_s": rows * r / low_times[len(low_times) // 2],
            "best_tokens_per_s": rows * r / low_times[0],
            "head_bound_tokens_per_s": bound,
            "head_fraction": rows * r / low_times[0] / bound,
            "speedup_vs_fp32_head": seconds / low_times[len(low_times) // 2],
            "tokens_equal_to_fp32": float(
                np.mean(np.asarray(low_out.tokens) == np.asarray(out.tokens))
            ),
            "first_divergence_step_median": float(
                np.median(
                    [
                        np.argmax(row) if row.any() else r
                        for row in np.asarray(low_out.tokens) != np.asarray(out.tokens)
                    ]
                )
            ),
        }

    if n > 1:
        # Interleaved (shared call, decode-only call) pairs, so both see the same machine load.
        plain = Sampler(model, SamplerConfig(max_new_tokens=r, **sampling_cfg))
        rows_ids = rng.integers(0, cfg.vocab_size, (rows, p)).astype(np.int32)
        prefix = jax.block_until_ready(plain.prefill(state, rows_ids, np.ones_like(rows_ids)))
        jax.block_until_ready(plain.decode(state, prefix, key))
        pairs = [
            (
                time_fn_all(lambda: sampler(state, ids, mask, key), repeats=1, warmup=0)[0],
                time_fn_all(lambda: plain.decode(state, prefix, key), repeats=1, warmup=0)[0],
            )
            for _ in range(args.repeats)
        ]
        shared_s = sorted(a for a, _ in pairs)[len(pairs) // 2]
        decode_s = sorted(b for _, b in pairs)[len(pairs) // 2]
        result.update(
            shared_prefix_s=shared_s,
            decode_only_s=decode_s,
            shared_over_decode_ratio=shared_s / decode_s,
            pair_ratios=[a / b for a, b in pairs],
        )

    if not args.no_hf:
        hf_ids, hf_mask = np.repeat(ids, n, 0), np.repeat(mask, n, 0)
        hf_times = hf_generate_seconds(hf, hf_ids, hf_mask, r, sampling_cfg, args.hf_repeats)
        hf_s = hf_times[len(hf_times) // 2]
        result.update(
            hf_tokens_per_s=rows * r / hf_s,
            hf_best_tokens_per_s=rows * r / hf_times[0],
            hf_seconds=hf_times,
            speedup_vs_hf=hf_s / seconds,
            best_speedup_vs_hf=hf_times[0] / times[0],
            torch_threads=torch.get_num_threads(),
        )
    if args.tunix_python:
        ids_n, mask_n = np.repeat(ids, n, 0), np.repeat(mask, n, 0)
        tunix = tunix_sampler(args.tunix_python, hf, ids_n, mask_n, r, sampling_cfg, args.repeats)
        result.update(
            tunix_version=tunix["version"],
            tunix_tokens_per_s=tunix["tokens_per_s"],
            tunix_best_tokens_per_s=tunix["best_tokens_per_s"],
            tunix_seconds=tunix["all_seconds"],
            speedup_vs_tunix=tunix["seconds"] / seconds,
            best_speedup_vs_tunix=tunix["all_seconds"][0] / times[0],
        )
        if args.temperature == 0:
            ours = np.asarray(out.tokens)
            result["tunix_tokens_agree"] = float(np.mean(ours == np.asarray(tunix["tokens"])))
    result["cpu_load_1min"] = os.getloadavg()[0]
    print(json.dumps(result))


if __name__ == "__main__":
    main()
