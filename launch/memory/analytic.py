"""Per-device bytes of a PPO run from the sharding rules' arithmetic, without compiling.

Parameters and Adam moments are exact: each array's bytes over the number of ways the rules split it
on the mesh (what models.sharding.state_shardings gives it). Each program's transient memory is an
estimate of what the model code materializes (one layer at a time under remat), and each program's
peak adds what stays resident meanwhile (models and optimizer states live in HBM between programs).
The verdict for every slice a config supports comes from this count alone (launch.memory.assess).
"""

from __future__ import annotations

import math
from typing import Any

import jax
import numpy as np
from flax import nnx

from launch.memory.abstract import Abstract
from models.config import matmul_params
from models.sharding import logical_to_spec
from rl.algo import token_stats
from rl.algo.prm_scorer import derived_bucket


def shard_factor(logical_axes, shape, sizes, rules) -> int:
    """How many ways the rules split an array of `shape` on a mesh of `sizes` (what
    models.sharding.state_shardings would give it)."""
    spec = logical_to_spec(logical_axes, rules, sizes, shape)
    factor = 1
    for entry in spec:
        for axis in () if entry is None else (entry,) if isinstance(entry, str) else entry:
            factor *= sizes[axis]
    return factor


def state_bytes(state, sizes, rules) -> int:
    """Per-device bytes of an abstract nnx state: each array's bytes over its shard factor."""
    total = 0
    for var in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
        value = var.get_value()
        axes = var.get_metadata().get("out_sharding")
        factor = shard_factor(axes, value.shape, sizes, rules) if axes else 1
        total += math.prod(value.shape) * value.dtype.itemsize // factor
    return total


def _dim_factor(name: str, n: int, sizes, rules) -> int:
    return shard_factor((name,), (n,), sizes, rules)


def analytic(models: dict[str, Abstract], rl, sizes: dict[str, int]) -> dict[str, Any]:
    """Per-device bytes of state and an estimate of each program's transient memory, for the run
    `rl` (an RLConfig; its mesh.rules shard the arrays) on a mesh of axis `sizes`.

    The activation terms are estimates (what the model code materializes, one layer at a time under
    remat); the state terms are exact up to replicated scalars.
    """
    d, ppo, rules = rl.data, rl.ppo, rl.mesh.rules
    pc = models["policy"].config
    p, r = d.max_prompt_len, rl.rollout.max_new_tokens
    s = p + r
    prompts, rows = d.prompts_per_batch, d.prompts_per_batch * d.samples_per_prompt
    rows_u = rows // ppo.minibatches
    c = np.dtype(pc.dtype).itemsize
    params = {n: state_bytes(m.state, sizes, rules) for n, m in models.items()}
    # Under a critic-free estimator there is no critic (launch.memory.abstract builds none).
    n_trained = 2 if "critic" in models else 1
    trained = params["policy"] + params.get("critic", 0)
    adam = 2 * trained  # mu and nu in the parameters' dtype (optax.adamw's default)

    def per_device(n_rows):
        return max(1, math.ceil(n_rows / _dim_factor("batch", n_rows, sizes, rules)))

    def layer_act(mc, n_rows, length, backward):
        """One decoder layer's activations for n_rows x length tokens (x2 with its gradients)."""
        t = lambda name, n: n // _dim_factor(name, n, sizes, rules)  # noqa: E731
        h, k, dh = t("act_heads", mc.num_heads), t("act_kv_heads", mc.num_kv_heads), mc.head_dim
        f = t("act_mlp", mc.intermediate_size)
        cb = np.dtype(mc.dtype).itemsize
        per_token = (
            (h + 2 * k) * dh * cb + 3 * f * cb + 4 * mc.hidden_size * cb + h * length * (4 + cb)
        )  # q k v, SwiGLU, residuals, fp32 scores, probs
        return n_rows * length * per_token * (2 if backward else 1)

    def vocab_shard(mc):
        return mc.vocab_size // _dim_factor("act_vocab", mc.vocab_size, sizes, rules)

    def head_chunk(mc):
        """Columns of one vocabulary chunk (the whole chunk: its slice of a vocabulary-sharded
        table is counted unsharded, on the safe side)."""
        return token_stats.pick_chunk(mc.vocab_size, token_stats.DEFAULT_CHUNK)

    def gathered_embedding(mc):
        return vocab_shard(mc) * mc.hidden_size * np.dtype(mc.param_dtype).itemsize

    # update: one minibatch, microbatch by microbatch.
    b = per_device(rows_u // ppo.microbatches)
    if pc.remat:  # each layer's input, for policy (and critic)
        saved = n_trained * pc.num_layers * b * s * pc.hidden_size * c
    else:  # every layer's activations
        saved = n_trained * pc.num_layers * layer_act(pc, b, s, backward=False)
    # XLA:TPU computes each layer's weight gradient at full (unsharded) size and reduce-scatters it
    # later; measured, it holds about one model's worth at once (7B on v5e-64: 28 GiB of
    # temporaries where the other terms give 8).
    layer_weights = matmul_params(pc) - pc.vocab_size * pc.hidden_size  # all layers, no head
    pending_grads = (
        layer_weights
        * np.dtype(pc.param_dtype).itemsize
        // _dim_factor("mlp", pc.intermediate_size, sizes, rules)
    )
    update_act = {
        "unsharded layer weight gradients (pre reduce-scatter)": pending_grads,
        "layer activations kept for backward": saved,
        "one layer recomputed + its gradients": layer_act(pc, b, s, backward=True),
        # rl.algo.token_stats: the head over the R response positions only, one vocabulary chunk
        # at a time (logits, probabilities and their gradient), the head's fp32 gradient whole.
        "LM head: vocabulary chunks (fp32) + its gradient": 3 * b * r * head_chunk(pc) * 4
        + vocab_shard(pc) * pc.hidden_size * 4,
        "gradient accumulators + microbatch gradients": 2 * trained,
        "optimizer update tree": trained,
        "all-gathered embedding / LM head": gathered_embedding(pc),
    }
    minibatch = per_device(rows_u) * (s * (4 + 1) + r * (1 + 5 * 4))  # tokens,mask | resp,5 fp32
    # The iteration's rollout stays on device through the updates: sequences and masks, then per
    # response token 3 masks and 7 fp32 arrays (log-probs, values, PRM scores, rewards, GAE).
    rollout_buffers = per_device(rows) * (s * (4 + 1) + r * (3 + 7 * 4))

    # sample: prefill of `prompts` rows, decode of `rows` rows.
    kh = pc.num_kv_heads // _dim_factor("kv_heads", pc.num_kv_heads, sizes, rules)
    bp, bn = per_device(prompts), per_device(rows)
    kv_prefix = 2 * pc.num_layers * bp * p * kh * pc.head_dim * c * 2  # cache + decode layout
    kv_decode = 2 * pc.num_layers * bn * kh * pc.head_dim * max(r - 1, 1) * c
    sample_act = {
        "KV cache: prompts' prefix (prefill + decode layout)": kv_prefix,
        "KV cache: per-sample decode slots": kv_decode,
        "prefill: one layer's activations": layer_act(pc, bp, p, backward=False),
        "decode: logits and sampling (fp32)": 2 * bn * vocab_shard(pc) * 4,
        "all-gathered embedding / LM head": gathered_embedding(pc),
        "outputs: tokens, log-probs, masks": bn * r * (4 + 4 + 4 + 1),
    }

    # score: every model over the whole rollout, one after the other; a published PRM over its
    # own input bucket (prm.max_input_len tokens of its tokenizer; rl.algo.prm_scorer).
    lm = [m.config for n, m in models.items() if n in ("policy", "ref", "implicit")]
    lengths = {n: s for n in models}
    if "prm" in models and rl.prm.published_format:
        lengths["prm"] = derived_bucket(rl.prm, p, r)[0]
    # rollout.score_rows > 0: the models run block by block (rl.algo.row_chunks).
    bs = per_device(min(rows, rl.rollout.score_rows or rows))
    score_act = {
        "largest model: one layer's activations + hidden states": max(
            layer_act(m.config, bs, lengths[n], backward=False)
            + 2 * bs * lengths[n] * m.config.hidden_size * c
            for n, m in models.items()
        ),
        # Log-probs of the response tokens in vocabulary chunks (rl.algo.token_stats): one chunk's
        # logits and its exponentials at a time, never [rows, S, V].
        "log-probs: one vocabulary chunk of one LM (fp32)": max(
            2 * bs * r * head_chunk(m) * 4 for m in lm
        ),
        "all-gathered embedding / LM head": max(
            gathered_embedding(m.config) for m in models.values()
        ),
        "outputs": bn * r * 4 * (3 + len(models)),
    }
    frozen = sum(v for n, v in params.items() if n not in ("policy", "critic"))
    resident = trained + adam + frozen
    programs = {
        "update": dict(
            args=trained + adam + minibatch, transient=update_act, others=frozen + rollout_buffers
        ),
        "sample": dict(
            args=params["policy"] + bp * p * (4 + 1),
            transient=sample_act,
            others=resident - params["policy"],
        ),
        "score": dict(args=trained + frozen + bn * (s * 5 + r), transient=score_act, others=adam),
    }
    for prog in programs.values():
        prog["peak"] = prog["args"] + sum(prog["transient"].values()) + prog["others"]
    return dict(
        params=params,
        adam=adam,
        resident=resident,
        minibatch=minibatch,
        rollout_buffers=rollout_buffers,
        kv_cache=kv_prefix + kv_decode,
        programs=programs,
    )
