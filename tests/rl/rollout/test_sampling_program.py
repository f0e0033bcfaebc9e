"""The sampling program against transformers' generate and against full forward passes, on a tiny
random Qwen2.

Every sampled run is checked for what PPO relies on: the returned log-probs are the model's, rows
stop where they should and are padded after, and the same key gives the same samples whether
prompts share their prefix or are repeated. The two pieces written here rather than taken from the
model, the shared-prefix attention and the prefill, are checked on their own first.
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
import torch
from flax import nnx

from models.attention import attend
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import FinishReason, attend_shared, prefill
from tests.rl.rollout.sampling_helpers import (
    R,
    assert_logp_is_models,
    check_stopped,
    first_hit,
    forward_logits,
    reference_sample_logp,
    run,
    synthetic_token_bytes,
)


def test_attend_shared_equals_attend_over_the_repeated_prefix():
    """N rows over one prefix copy = `attend` over [prefix repeated N times | own slots]."""
    b, n, p, s, kh, g, dh = 2, 3, 5, 4, 2, 2, 8
    keys = jax.random.split(jax.random.key(0), 5)
    q = jax.random.normal(keys[0], (b * n, kh * g, dh))
    k_pre, v_pre = (jax.random.normal(k, (b, p, kh, dh)) for k in keys[1:3])
    k_dec, v_dec = (jax.random.normal(k, (b * n, s, kh, dh)) for k in keys[3:5])
    pre_valid = jnp.array([[False, False, True, True, True], [True] * p])
    dec_valid = jnp.arange(s) <= 1  # two decode slots written so far
    got = jax.jit(attend_shared)(
        q,
        k_pre.transpose(0, 2, 3, 1),
        v_pre.transpose(0, 2, 1, 3),
        pre_valid,
        k_dec.transpose(0, 2, 3, 1),
        v_dec.transpose(0, 2, 1, 3),
        dec_valid,
    )
    k_all = jnp.concatenate([jnp.repeat(k_pre, n, axis=0), k_dec], axis=1)
    v_all = jnp.concatenate([jnp.repeat(v_pre, n, axis=0), v_dec], axis=1)
    mask = jnp.concatenate(
        [jnp.repeat(pre_valid, n, axis=0), jnp.broadcast_to(dec_valid, (b * n, s))], axis=1
    )
    want = jax.jit(attend)(q[:, None], k_all, v_all, mask[:, None, :])[:, 0]
    np.testing.assert_allclose(np.asarray(got), np.asarray(want), atol=1e-5)


def test_prefill_logits_are_the_forward_passes_last(model, forward, prompts):
    ids, mask = prompts
    graphdef = nnx.graphdef(model)
    out = jax.jit(lambda state, i, m: prefill(nnx.merge(graphdef, state), i, m))(
        nnx.state(model), jnp.asarray(ids), jnp.asarray(mask, bool)
    )
    want = np.asarray(forward(ids, mask))[:, -1]
    np.testing.assert_allclose(np.asarray(out.logits_BxV), want, atol=1e-4)
    np.testing.assert_array_equal(np.asarray(out.positions_B), mask.sum(-1))


def test_greedy_matches_transformers_generate(hf_model, forward, prompts, greedy):
    ids, mask = prompts
    hf_model.generation_config.eos_token_id = None
    hf_model.generation_config.pad_token_id = 0
    with torch.no_grad():
        want = hf_model.generate(
            torch.tensor(ids, dtype=torch.long),
            attention_mask=torch.tensor(mask, dtype=torch.long),
            max_new_tokens=R,
            do_sample=False,
        )[:, ids.shape[1] :].numpy()
    np.testing.assert_array_equal(greedy.tokens, want)
    assert greedy.response_mask.all() and (greedy.lengths == R).all()
    assert (greedy.finish_reason == FinishReason.LENGTH).all() and greedy.steps == R
    assert (greedy.sample_logp == 0).all()
    assert_logp_is_models(forward, ids, mask, greedy)


@pytest.mark.parametrize(
    "cfg",
    [dict(temperature=1e-4), dict(temperature=1.0, top_k=1), dict(temperature=1.0, top_p=1e-6)],
    ids=["tiny_temperature", "top_k_1", "tiny_top_p"],
)
def test_degenerate_sampling_equals_greedy(model, prompts, greedy, cfg):
    out = run(model, prompts, key=3, **cfg)
    np.testing.assert_array_equal(out.tokens, greedy.tokens)
    np.testing.assert_allclose(out.logp, greedy.logp, atol=1e-5)


def test_plain_sampling_logp_equal_forward_pass(forward, prompts, sampled):
    """Temperature 1, no filter (PPO's setting): both log-probs are the model's."""
    assert_logp_is_models(forward, *prompts, sampled)
    np.testing.assert_allclose(sampled.sample_logp, sampled.logp, atol=1e-6)
    assert (sampled.tokens != sampled.tokens[:, :1]).any()  # actually random, not stuck


@pytest.mark.parametrize(
    "cfg",
    [
        dict(temperature=0.7, top_k=20, top_p=0.8),
        dict(temperature=1.3, top_p=0.9, top_p_candidates=8),
    ],
    ids=["top_k_top_p", "top_p_bisection"],
)
def test_filtered_sampling_logp_equal_forward_pass(model, forward, prompts, cfg):
    ids, mask = prompts
    out = run(model, prompts, key=5, **cfg)
    assert_logp_is_models(forward, ids, mask, out)
    logits = forward_logits(forward, ids, mask, out)
    want = reference_sample_logp(
        logits, out.tokens, cfg["temperature"], cfg.get("top_k", 0), cfg.get("top_p", 1.0)
    )
    m = out.response_mask
    assert np.isfinite(want[m]).all(), "a token outside the top-k/top-p set was sampled"
    assert np.abs(out.sample_logp[m] - want[m]).max() < 1e-4


def test_shared_prefix_equals_repeated_prompts(model, forward, prompts):
    ids, mask = prompts
    n = 3
    shared = run(model, prompts, key=11, temperature=1.0, top_p=0.95, samples_per_prompt=n)
    plain = run(
        model, (np.repeat(ids, n, 0), np.repeat(mask, n, 0)), key=11, temperature=1.0, top_p=0.95
    )
    assert shared.tokens.shape == (len(ids) * n, R)
    np.testing.assert_array_equal(shared.tokens, plain.tokens)
    np.testing.assert_allclose(shared.logp, plain.logp, atol=1e-5)
    # The N samples of one prompt differ from each other.
    assert (shared.tokens[0::n] != shared.tokens[1::n]).any()
    assert_logp_is_models(forward, np.repeat(ids, n, 0), np.repeat(mask, n, 0), shared)


def test_eos_stops_rows_and_pads_after(model, prompts, sampled):
    # Two EOS ids taken from rows' samples, so every row stops somewhere (or runs to the end).
    eos = (
        int(sampled.tokens[0, 4]),
        int(sampled.tokens[2, 2]),
        int(sampled.tokens[3, 6]),
        int(sampled.tokens[1, 9]),
    )
    out = run(model, prompts, key=7, temperature=1.0, eos_ids=eos)
    stops = first_hit(np.isin(sampled.tokens, eos))
    assert all(s is not None for s in stops)
    check_stopped(out, sampled, stops, FinishReason.EOS)
    assert out.steps == max(stops) + 1 < R  # the loop exited once every row was done


def test_stop_strings_across_token_boundaries(model, prompts, sampled):
    tb = synthetic_token_bytes()
    text = [b"".join(tb[t] for t in row) for row in sampled.tokens]
    # Row 0: a string spanning the boundary of tokens 3|4; row 2: one spanning tokens 5|6|7.
    stop_a = text[0][7:9].decode()
    stop_b = text[2][11:15].decode()
    cfg = SamplerConfig(max_new_tokens=R, temperature=1.0, stop_strings=(stop_a, stop_b, "never"))
    out = Sampler(nnx.graphdef(model), cfg, token_bytes=tb)  # a GraphDef works as well as a model
    out = jax.tree.map(np.asarray, out(nnx.state(model), *prompts, jax.random.key(7)))
    stops = []
    for row in sampled.tokens:  # brute force on the decoded text of each prefix
        hits = [
            any(s.encode() in b"".join(tb[t] for t in row[: i + 1]) for s in (stop_a, stop_b))
            for i in range(R)
        ]
        stops.append(first_hit(np.array([hits]))[0])
    assert stops[0] is not None and stops[0] <= 4 and stops[2] is not None and stops[2] <= 7
    check_stopped(out, sampled, stops, FinishReason.STOP)
