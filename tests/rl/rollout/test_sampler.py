"""The Sampler wrapper: one compiled program per prompt shape whatever the parameter values, the
prefill/decode split equal to the whole, the mesh layout equal to one device, and the argument
errors it names before compiling anything."""

import jax
import numpy as np
import pytest
from flax import nnx

from configs.sharding import RULES
from models.hf_io import load_causal_lm
from models.sharding import make_mesh
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from tests.rl.rollout.sampling_helpers import R


def test_seeded_reproducible_and_compiled_once(model, prompts):
    sampler = Sampler(model, SamplerConfig(max_new_tokens=R, temperature=1.0, top_k=50))
    state = nnx.state(model)
    a = sampler(state, *prompts, jax.random.key(1))
    b = sampler(state, *prompts, jax.random.key(1))
    c = sampler(state, *prompts, jax.random.key(2))
    # New parameter values (as after a PPO update) reuse the compiled program.
    moved = jax.tree.map(lambda x: x * 1.01, state)
    d = sampler(moved, *prompts, jax.random.key(1))
    np.testing.assert_array_equal(a.tokens, b.tokens)
    np.testing.assert_array_equal(a.logp, b.logp)
    assert (np.asarray(a.tokens) != np.asarray(c.tokens)).any()
    assert d.tokens.shape == a.tokens.shape
    assert sampler.num_traces == 1
    # The same program split in two (prefill, then decode from the prefix) gives the same samples.
    split = sampler.decode(state, sampler.prefill(state, *prompts), jax.random.key(1))
    np.testing.assert_array_equal(np.asarray(split.tokens), np.asarray(a.tokens))


def test_sharded_run_equals_single_device(ckpt, model, prompts):
    mesh = make_mesh((2, 4, 1))
    sharded_model = load_causal_lm(ckpt, mesh=mesh, rules=RULES)
    cfg = SamplerConfig(max_new_tokens=R, temperature=1.0, top_k=20, samples_per_prompt=2)
    sampler = Sampler(sharded_model, cfg, mesh=mesh, rules=RULES)
    out = sampler(nnx.state(sharded_model), *prompts, jax.random.key(4))
    assert out.tokens.sharding.spec[0] == ("data", "fsdp")
    single = Sampler(model, cfg)(nnx.state(model), *prompts, jax.random.key(4))
    np.testing.assert_array_equal(np.asarray(out.tokens), np.asarray(single.tokens))
    np.testing.assert_allclose(np.asarray(out.logp), np.asarray(single.logp), atol=1e-5)


def test_construction_errors_are_named(model):
    cfg = SamplerConfig(max_new_tokens=R)
    with pytest.raises(ValueError, match="give both mesh= and rules="):
        Sampler(model, cfg, rules=RULES)
    stops = SamplerConfig(max_new_tokens=R, stop_strings=("\n\n",))
    with pytest.raises(ValueError, match=r"stop_strings=\('\\n\\n',\) needs Sampler\(tokenizer="):
        Sampler(model, stops)


def test_prompt_errors_are_named_before_compiling(model, prompts):
    sampler = Sampler(model, SamplerConfig(max_new_tokens=R))
    ids, mask = prompts
    right_padded = mask[:, ::-1].copy()  # rows with pads now end in pads
    with pytest.raises(ValueError, match="must be left-padded"):
        sampler(nnx.state(model), ids, right_padded, jax.random.key(0))
    with pytest.raises(ValueError, match=r"must be the same \[B, P\] shape"):
        sampler(nnx.state(model), ids[:, 1:], mask, jax.random.key(0))
    assert sampler.num_traces == 0


def test_a_bfloat16_head_samples_from_logits_within_bf16_rounding(model, prompts):
    """head_dtype='bfloat16': the sampled tokens' log-probs under the bf16 head are the fp32
    head's within bf16 rounding of the head's operands, and the greedy choice rarely changes."""
    full = Sampler(model, SamplerConfig(max_new_tokens=R, temperature=0.0))
    half = Sampler(model, SamplerConfig(max_new_tokens=R, temperature=0.0, head_dtype="bfloat16"))
    state = nnx.state(model)
    a, b = full(state, *prompts, jax.random.key(0)), half(state, *prompts, jax.random.key(0))
    # Until the first disagreement both rows are conditioned on the same tokens.
    same_prefix = np.cumprod(np.asarray(a.tokens) == np.asarray(b.tokens), axis=1).astype(bool)
    assert same_prefix[:, 0].all()  # the prefill's head agrees on every first token
    diff = np.abs(np.asarray(a.logp) - np.asarray(b.logp))[same_prefix]
    assert 0 < diff.max() < 0.05, diff.max()  # rounded, but only just
    with pytest.raises(ValueError, match=r"SamplerConfig.head_dtype='fp16'"):
        SamplerConfig(max_new_tokens=R, head_dtype="fp16")
