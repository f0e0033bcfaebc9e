"""Response-width buckets (``rl.algo.buckets``): the widths by hand, the chosen width as a property
(the smallest bucket holding the longest response), and that scoring, shaping + GAE and the update
give the full-width results on the kept columns while compiling once per bucket, never again.
"""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from hypothesis import given, settings
from hypothesis import strategies as st

from configs.sharding import RULES
from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import ValueModel
from models.sharding import make_mesh, use_mesh
from rl.algo import update as upd
from rl.algo.buckets import bucket_width, trim, trim_to_bucket, width_buckets
from rl.algo.scoring import make_score_fn, make_shape_fn
from rl.config import PPOConfig, RewardConfig


@pytest.mark.parametrize(
    ("args", "want"),
    [
        ((1024,), (256, 512, 768, 1024)),
        # 28, 56, 84, 112 rounded up to multiples of 8.
        ((112,), (32, 56, 88, 112)),
        ((64, 1), (64,)),
        # Narrower than the multiple: rounding to 5 merges every bucket.
        ((5,), (5,)),
        ((100, 3, 1), (34, 67, 100)),
    ],
)
def test_width_buckets_by_hand(args, want):
    assert width_buckets(*args) == want


def test_bad_bucket_arguments_are_named():
    with pytest.raises(ValueError, match="max_width=0"):
        width_buckets(0)
    with pytest.raises(ValueError, match="must end at the response arrays' width 8"):
        bucket_width(np.ones((2, 8), bool), (4, 6))


@settings(max_examples=60, deadline=None)
@given(
    max_width=st.integers(1, 300),
    count=st.integers(1, 6),
    multiple=st.integers(1, 16),
    data=st.data(),
)
def test_the_width_is_the_smallest_bucket_holding_the_longest_response(
    max_width, count, multiple, data
):
    widths = width_buckets(max_width, count, multiple)
    assert 1 <= len(widths) <= count and widths[-1] == max_width
    assert list(widths) == sorted(set(widths))
    lengths = data.draw(st.lists(st.integers(0, max_width), min_size=1, max_size=5))
    response = np.arange(max_width)[None] < np.asarray(lengths)[:, None]
    w = bucket_width(response, widths)
    assert w in widths and w >= max(lengths)
    assert all(x < max(lengths) for x in widths if x < w)
    (cut,) = trim(w, response)
    assert cut.shape == (len(lengths), w) and cut.sum() == response.sum()


# --- the programs at a bucket width equal them at full width, and compile once per bucket --------

V, P, R = 32, 3, 32
CFG = ModelConfig.from_dict(presets.tiny(vocab_size=V, num_layers=1).to_dict())


def _random(make, seed: int):
    """(graphdef, params) of ``make()``'s module, every parameter N(0, 0.3) drawn on the host."""
    graphdef, abstract = nnx.split(nnx.eval_shape(make))
    rng = np.random.default_rng(seed)
    return graphdef, jax.tree.map(
        lambda a: jnp.asarray(rng.normal(size=a.shape) * 0.3, a.dtype), abstract
    )


@pytest.fixture(scope="module")
def models():
    out = {}
    for name, make, seed in (
        ("policy", lambda: CausalLM(CFG, rngs=nnx.Rngs(0)), 0),
        ("critic", lambda: ValueModel(CFG, rngs=nnx.Rngs(0)), 1),
        ("ref", lambda: CausalLM(CFG, rngs=nnx.Rngs(0)), 2),
    ):
        out[name] = _random(make, seed)
    return out


def _rollout(longest: int, seed: int):
    """4 rows, left-padded prompts, responses of random lengths up to ``longest`` (one has it)."""
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, V, size=(4, R)).astype(np.int32)
    lengths = rng.integers(1, longest + 1, size=4)
    lengths[seed % 4] = longest
    response = np.arange(R)[None] < lengths[:, None]
    tokens = np.where(response, tokens, 0)
    prompt = rng.integers(1, V, size=(4, P)).astype(np.int32)
    prompt_mask = np.ones((4, P), bool)
    prompt_mask[::2, 0] = False
    return prompt, prompt_mask, tokens, response


def test_scoring_and_shaping_at_the_bucket_width_equal_full_width_and_compile_once_per_bucket(
    models,
):
    """Five rollouts whose longest responses (3, 14, 7, 2, 20 of R = 32) fall in three of the
    buckets (8, 16, 24, 32): the trimmed scores and GAE equal the full-width ones on the kept
    columns, and the scoring program was traced once per bucket seen, then reused."""
    graphdefs = {k: g for k, (g, _) in models.items()}
    params = {k: p for k, (_, p) in models.items()}
    traced = []

    def counted(params, tokens, mask, last):
        traced.append(tokens.shape[1] - P)  # runs at trace time only
        return make_score_fn(graphdefs, P, temperature=0.7)(params, tokens, mask, last)

    score = jax.jit(counted)
    shape = jax.jit(make_shape_fn(RewardConfig(kl_coef=0.1), PPOConfig(), 1))
    widths = width_buckets(R)
    assert widths == (8, 16, 24, 32)
    for seed, longest in enumerate((3, 14, 7, 2, 20)):
        prompt, prompt_mask, tokens, response = _rollout(longest, seed)
        results = []
        for tok, resp in (trim_to_bucket(tokens, response, R), (tokens, response)):
            seq = np.concatenate([prompt, tok], 1)
            seq_mask = np.concatenate([prompt_mask, resp], 1)
            last = np.zeros_like(resp)
            scores = score(params, seq, seq_mask, last)
            success = np.array([1.0, 0.0, 1.0, 0.0], np.float32)
            arrays, _ = shape(scores, jnp.asarray(resp), jnp.asarray(resp), success)
            results.append((scores, arrays))
        (cut_scores, cut_arrays), (full_scores, full_arrays) = results
        w = cut_scores["old_logp"].shape[1]
        assert w == bucket_width(response, widths) and w >= longest
        for key in full_scores:
            np.testing.assert_allclose(
                cut_scores[key], np.asarray(full_scores[key])[:, :w], rtol=1e-5, atol=1e-6
            )
        for key in full_arrays:
            np.testing.assert_allclose(
                cut_arrays[key], np.asarray(full_arrays[key])[:, :w], rtol=1e-5, atol=1e-6
            )
            assert not np.asarray(full_arrays[key])[:, w:].any(), key  # nothing lost past w
    assert sorted(traced) == [8, 16, 24, 32]  # three buckets and the full width, each once


def test_the_update_at_the_bucket_width_equals_full_width(models):
    """The same gradients and metrics from the trimmed minibatch as from the full-width one."""
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    (policy_def, policy), (critic_def, critic) = models["policy"], models["critic"]
    fn = upd.make_update_fn(
        upd.Models(policy_def, critic_def),
        PPOConfig(entropy_coef=0.01),
        RewardConfig(kl_coef=0.1, kl_in="loss"),
        None,
        None,
        prompt_len=P,
        temperature=0.7,
    )
    prompt, prompt_mask, tokens, response = _rollout(13, 0)
    rng = np.random.default_rng(5)
    f = lambda: np.where(response, rng.normal(size=(4, R)), 0).astype(np.float32)  # noqa: E731
    full = {
        "tokens": np.concatenate([prompt, tokens], 1),
        "attention_mask": np.concatenate([prompt_mask, response], 1),
        "response_mask": response,
        "old_logp": f() - 3.0,
        "old_values": f(),
        "advantages": f(),
        "returns": f(),
        "ref_logp": f() - 3.0,
    }
    w = bucket_width(response, width_buckets(R))
    assert w == 16
    cut = {k: v[:, : P + w] if v.shape[1] == P + R else v[:, :w] for k, v in full.items()}
    accumulate = jax.jit(fn.accumulate)
    with use_mesh(mesh, RULES):
        g_full = accumulate(policy, critic, full)
        g_cut = accumulate(policy, critic, cut)
    chex.assert_trees_all_close(g_cut, g_full, rtol=1e-4, atol=1e-6)
