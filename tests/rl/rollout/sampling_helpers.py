"""Test helpers of tests/rl/rollout: the shapes every sampler test uses, a one-call sampling run,
and NumPy references (transformers' warpers with a full sort; full forward passes) to check the
sampler's tokens and log-probs against.
"""

import jax
import numpy as np
from flax import nnx

from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import FinishReason

R = 14
PADS = (0, 3, 5, 1)  # left padding of the 4 prompts: different lengths
VOCAB = 128


def run(model, prompts, key=0, **cfg):
    cfg.setdefault("max_new_tokens", R)
    sampler = Sampler(model, SamplerConfig(**cfg))
    out = sampler(nnx.state(model), *prompts, jax.random.key(key))
    return jax.tree.map(np.asarray, out)


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


def synthetic_token_bytes():
    """Token i's text: a lowercase then an uppercase letter, so 'Xy' only occurs across tokens."""
    return [bytes([97 + i % 26, 65 + i // 26]) for i in range(VOCAB)]
