"""Test helpers: tiny random transformers models (the reference) and jitted JAX forwards.

Random HF models get ALL parameters re-drawn (biases and norm scales included; HF initialises those
to 0/1, which would hide layout bugs), at a scale that makes logits O(1).
"""

import jax
import jax.numpy as jnp
import numpy as np
import torch
import transformers
from flax import nnx


def randomize_(hf_model, seed: int, std: float = 0.1) -> None:

    gen = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in hf_model.named_parameters():
            noise = torch.randn(p.shape, generator=gen) * std
            p.copy_(
                1.0 + noise if "norm" in name else noise * (3.0 if name.endswith("bias") else 1.0)
            )


def make_hf_model(kind: str, seed: int = 0, **overrides):
    """A tiny random transformers model ('qwen2', 'llama' or 'mistral') in eval mode, eager
    attention."""

    torch.manual_seed(seed)
    if kind == "qwen2":
        cfg = dict(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            max_position_embeddings=256,
            rope_theta=5000.0,
            tie_word_embeddings=True,
            rms_norm_eps=1e-6,
        )
        cfg.update(overrides)
        config = transformers.Qwen2Config(**cfg)
        model = transformers.Qwen2ForCausalLM(config)
    elif kind == "llama":
        # Explicit head_dim != hidden/heads, MQA (1 KV head), biases on q/k/v/o, Llama-3.1 RoPE
        # scaling with a short original context so every branch of the frequency rule is exercised.
        cfg = dict(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=1,
            head_dim=24,
            max_position_embeddings=256,
            attention_bias=True,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
            rope_scaling={
                "rope_type": "llama3",
                "factor": 8.0,
                "low_freq_factor": 1.0,
                "high_freq_factor": 4.0,
                "original_max_position_embeddings": 64,
                "rope_theta": 10000.0,
            },
        )
        cfg.update(overrides)
        config = transformers.LlamaConfig(**cfg)
        model = transformers.LlamaForCausalLM(config)
    elif kind == "mistral":
        # Llama-like without any projection bias; a sliding window longer than the test inputs.
        cfg = dict(
            vocab_size=128,
            hidden_size=64,
            intermediate_size=96,
            num_hidden_layers=2,
            num_attention_heads=4,
            num_key_value_heads=2,
            head_dim=16,
            max_position_embeddings=256,
            sliding_window=64,
            rope_theta=10000.0,
            tie_word_embeddings=False,
            rms_norm_eps=1e-5,
        )
        cfg.update(overrides)
        config = transformers.MistralConfig(**cfg)
        model = transformers.MistralForCausalLM(config)
    else:
        raise ValueError(kind)
    model.config._attn_implementation = "eager"
    randomize_(model, seed)
    return model.eval()


def hf_logits(hf_model, ids: np.ndarray, mask: np.ndarray | None = None) -> np.ndarray:
    """transformers' logits with left-padding-aware position ids (as its generate() computes
    them)."""

    ids_t = torch.tensor(np.asarray(ids), dtype=torch.long)
    kwargs = {}
    if mask is not None:
        mask_t = torch.tensor(np.asarray(mask), dtype=torch.long)
        kwargs = dict(attention_mask=mask_t, position_ids=(mask_t.cumsum(-1) - 1).clamp(min=0))
    with torch.no_grad():
        return hf_model(ids_t, **kwargs).logits.float().numpy()


def left_padded(rng: np.random.Generator, batch: int, length: int, pads, vocab: int):
    """Random ids [B, T] and mask with `pads[b]` leading pad slots (pad id 0)."""
    ids = rng.integers(1, vocab, size=(batch, length)).astype(np.int32)
    mask = np.ones((batch, length), np.int32)
    for b, p in enumerate(pads):
        mask[b, :p] = 0
        ids[b, :p] = 0
    return ids, mask


# Tests run tiny models, where XLA's CPU compile time dominates and run time does not matter:
# compile at the lowest backend optimisation level (~3x faster to compile; same math, tolerances
# unchanged).
FAST_COMPILE = {"xla_backend_optimization_level": 0}


def jit(fn, **kwargs):
    return jax.jit(fn, compiler_options=FAST_COMPILE, **kwargs)


def jit_apply(model: nnx.Module, fn):
    """`fn(model, *args)` jitted as a pure function of the model's state (split once, as on the hot
    path); eager NNX calls would dispatch and compile op by op."""
    graphdef, state = nnx.split(model)
    jitted = jit(lambda state, *args: fn(nnx.merge(graphdef, state), *args))
    return lambda *args: jitted(state, *args)


def jit_forward(model: nnx.Module):
    """A jitted forward: f(ids, mask=None, positions=None) -> model(ids, mask, positions)."""
    fwd = jit_apply(model, lambda m, ids, mask, positions: m(ids, mask, positions))
    return lambda ids, mask=None, positions=None: fwd(ids, mask, positions)


def build(make):
    """`make()` initialised inside one jit: one compile instead of one per eager op."""
    graphdef, _ = nnx.split(nnx.eval_shape(make))
    return nnx.merge(graphdef, jit(lambda: nnx.split(make())[1])())


def max_abs(a, b) -> float:
    return float(jnp.max(jnp.abs(jnp.asarray(a, jnp.float32) - jnp.asarray(b, jnp.float32))))
