"""The sampler against transformers' generate and against full forward passes, on a tiny random
Qwen2.

Every sampled run is checked for what PPO relies on: the returned log-probs are the model's, rows
stop where they should and are padded after, and the same key gives the same samples however the
batch is laid out (shared prefix vs repeated prompts, one device vs a (2, 4) mesh).
"""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs.sharding import RULES
from models.hf_io import load_causal_lm
from models.sharding import make_mesh
from rl.rollout import token_selection as sampling
from rl.rollout.sampler import (
    FinishReason,
    Sampler,
    SamplerConfig,
    stop_table,
    token_bytes_from_tokenizer,
)
from tests.models.hf_reference import jit_forward, left_padded, make_hf_model

R = 14
PADS = (0, 3, 5, 1)  # left padding of the 4 prompts: different lengths
VOCAB = 128


@pytest.fixture(scope="module")
def hf_model():
    return make_hf_model("qwen2", seed=0)


@pytest.fixture(scope="module")
def ckpt(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2_sampler")
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return load_causal_lm(ckpt)


@pytest.fixture(scope="module")
def forward(model):
    return jit_forward(model)


@pytest.fixture(scope="module")
def prompts():
    return left_padded(np.random.default_rng(0), batch=4, length=9, pads=PADS, vocab=VOCAB)


def run(model, prompts, key=0, **cfg):
    cfg.setdefault("max_new_tokens", R)
    sampler = Sampler(model, SamplerConfig(**cfg))
    out = sampler(nnx.state(model), *prompts, jax.random.key(key))
    return jax.tree.map(np.asarray, out)


@pytest.fixture(scope="module")
def greedy(model, prompts):
    return run(model, prompts, temperature=0.0)


@pytest.fixture(scope="module")
def sampled(model, prompts):
    """Temperature-1 samples, no stop: the reference for the stop tests (same key)."""
    return run(model, prompts, key=7, temperature=1.0)


def forward_logits(forward, ids, mask, out):
    """Full-forward logits [B, R, V] that predicted each response token."""
    full_ids = np.concatenate([ids, out.tokens], axis=1)
    full_mask = np.concatenate([mask, out.response_mask], axis=1)
    logits = np.asarray(forward(full_ids, full_mask))
    p = ids.shape[1]
    return logits[:, p - 1 : p - 1 + out.tokens.shape[1]]


def assert_logp_is_models(forward, ids, mask, out, tol=1e-4):
    logits = forward_logits(forward, ids, mask, out)
    logp = np.asarray(jax.nn.log_softmax(logits, axis=-1))
    want = np.take_along_axis(logp, out.tokens[..., None], axis=-1)[..., 0]
    m = out.response_mask
    assert np.abs(out.logp[m] - want[m]).max() < tol
    assert (out.logp[~m] == 0).all()


def test_greedy_matches_transformers_generate(hf_model, forward, prompts, greedy):
    import torch

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


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_new_tokens=0),
        dict(temperature=-1.0),
        dict(top_p=0.0),
        dict(top_k=-2),
        dict(eos_ids=(1, -3)),
        dict(stop_strings=("",)),
    ],
)
def test_config_errors_name_the_field(bad):
    values = dict(max_new_tokens=4, **bad) if "max_new_tokens" not in bad else bad
    with pytest.raises(ValueError, match=f"SamplerConfig.{next(iter(bad))}="):
        SamplerConfig(**values)


def reference_probs(logits, temperature, top_k, top_p):
    """transformers' temperature → top-k → top-p warpers then softmax, with a full sort."""
    z = logits / temperature
    if top_k:
        kth = np.sort(z, axis=-1)[..., -top_k][..., None]
        z = np.where(z >= kth, z, -np.inf)
    probs = np.exp(z - z.max(-1, keepdims=True))
    probs /= probs.sum(-1, keepdims=True)
    if top_p < 1:
        order = np.argsort(-probs, axis=-1, kind="stable")
        sorted_p = np.take_along_axis(probs, order, -1)
        excl = np.cumsum(sorted_p, -1) - sorted_p
        last = np.take_along_axis(sorted_p, (excl < top_p).sum(-1, keepdims=True) - 1, -1)
        probs = np.where(probs >= last, probs, 0)  # ties with the last kept token stay
        probs /= probs.sum(-1, keepdims=True)
    return probs


def reference_sample_logp(logits, tokens, temperature, top_k, top_p):
    probs = reference_probs(logits, temperature, top_k, top_p)
    with np.errstate(divide="ignore"):
        return np.log(np.take_along_axis(probs, tokens[..., None], -1)[..., 0])


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


def first_hit(rows_hit):
    """Index of the first True per row, or None."""
    return [int(np.argmax(h)) if h.any() else None for h in rows_hit]


def check_stopped(out, ref, stops, reason):
    """Rows equal the unstopped reference up to and including their stop token, padding after."""
    for b, stop in enumerate(stops):
        n = R if stop is None else stop + 1
        assert out.lengths[b] == n
        assert out.finish_reason[b] == (FinishReason.LENGTH if stop is None else reason)
        np.testing.assert_array_equal(out.tokens[b, :n], ref.tokens[b, :n])
        np.testing.assert_allclose(out.logp[b, :n], ref.logp[b, :n], atol=1e-5)
        assert (out.tokens[b, n:] == 0).all() and (out.logp[b, n:] == 0).all()
        np.testing.assert_array_equal(out.response_mask[b], np.arange(R) < n)


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


def synthetic_token_bytes():
    """Token i's text: a lowercase then an uppercase letter, so 'Xy' only occurs across tokens."""
    return [bytes([97 + i % 26, 65 + i // 26]) for i in range(VOCAB)]


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


def test_stop_table_matches_brute_force():
    rng = np.random.default_rng(0)
    alphabet = [b"a", b"b", b"\n", "é".encode()]
    tb = [b"".join(rng.choice(alphabet, size=rng.integers(0, 4))) for _ in range(40)]
    stops = ("\n\n", "aba", "bé", "aaaa")
    table = stop_table(stops, tb, vocab_size=45)  # ids 40..44 carry no text
    assert table.shape[1] == 45
    match = table.shape[0] - 1
    for _ in range(300):
        seq = rng.integers(0, 45, size=12)
        q, got = 0, None
        for i, tok in enumerate(seq):
            q = table[q, tok]
            if q == match:
                got = i
                break
        text = [b"".join(tb[t] for t in seq[: i + 1] if t < 40) for i in range(len(seq))]
        want = next((i for i, t in enumerate(text) if any(s.encode() in t for s in stops)), None)
        assert got == want, (seq, got, want)


def test_token_bytes_of_qwen2_tokenizer():
    import transformers

    tok = transformers.AutoTokenizer.from_pretrained("models/assets/qwen2_tokenizer")
    tb = token_bytes_from_tokenizer(tok)
    assert len(tb) == len(tok)
    for text in ["Step 1: 3 + 4 = 7.\n\nStep 2: so x = 7", "Ünïcödé 数学 ∑ 🙂 \t  end"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert b"".join(tb[i] for i in ids) == text.encode()
    assert all(tb[i] == b"" for i in tok.all_special_ids)


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


# --- Token selection on its own
# --------------------------------------------------------------------


@pytest.mark.parametrize(
    "v,cfg",
    [
        (131, dict(temperature=1.0)),
        (40, dict(temperature=0.5, top_k=6)),
        (40, dict(temperature=1.0, top_p=0.7, candidates=4)),
    ],
    ids=["padded_vocab", "top_k", "top_p_fallback"],
)
def test_sample_distribution(v, cfg):
    """20k draws from one row's logits match the expected filtered softmax."""
    logits = jax.random.normal(jax.random.key(0), (v,)) * 2.0
    draws = 20_000
    sel = jax.jit(lambda l, k: sampling.sample(jnp.broadcast_to(l, (draws, v)), k, **cfg))(
        logits, jax.random.key(1)
    )
    freq = np.bincount(np.asarray(sel.tokens_B), minlength=v) / draws
    want = reference_probs(
        np.asarray(logits), cfg["temperature"], cfg.get("top_k", 0), cfg.get("top_p", 1.0)
    )
    assert np.abs(freq - want).max() < 0.015
    assert (freq[want == 0] == 0).all()


def test_top_p_fast_threshold_equals_bisection():
    z = jax.random.normal(jax.random.key(2), (6, 1000)) * 3.0

    @jax.jit
    def both(p):
        m = z.max(-1)
        fast = sampling._top_p_threshold(z, m, jax.lax.top_k(z, 1000)[0], 0, p)
        return fast, sampling.bisect_top_p(z, m, jnp.full_like(m, -jnp.inf), p)

    for p in (0.05, 0.5, 0.9, 0.999):
        fast, exact = both(p)
        np.testing.assert_array_equal(np.asarray(fast), np.asarray(exact))
