"""Reward transforms: hand-computed expectations and property tests of the exact semantics."""

import functools

import hypothesis.extra.numpy as hnp
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from rewards import shaping

ETA = 0.5


def _place(scores, ends, t):
    """Scores s_1..s_K placed at token positions ``ends`` of a length-t sequence."""
    s = np.zeros(t, np.float32)
    m = np.zeros(t, bool)
    s[list(ends)] = scores
    m[list(ends)] = True
    return jnp.asarray(s), jnp.asarray(m)


def _at(rewards, ends):
    return np.asarray(rewards)[list(ends)]


# --- hand-computed expectations -------------------------------------------------------------


def test_worked_example_delta():
    s, m = _place([0.7, 0.2, 0.4, 0.8], [2, 5, 7, 11], 14)
    out = np.asarray(shaping.delta(s, m))
    np.testing.assert_allclose(_at(out, [2, 5, 7, 11]), [0.5, -0.2, 0.4, 0.0], atol=1e-6)
    assert np.count_nonzero(out[[i for i in range(14) if i not in (2, 5, 7, 11)]]) == 0


def test_raw_clip_clip_delta_hand_values():
    ends = [1, 4, 6, 9]
    s, m = _place([0.7, 0.2, 0.4, 0.8], ends, 12)
    np.testing.assert_allclose(_at(shaping.raw(s, m), ends), [0.7, 0.2, 0.4, 0.8], atol=1e-6)
    # min(s - 0.5, 0) = (0, -0.3, -0.1, 0)
    np.testing.assert_allclose(
        _at(shaping.clip(s, m, ETA), ends), [0.0, -0.3, -0.1, 0.0], atol=1e-6
    )
    # delta of c = (0, -0.3, -0.1, 0): (0 - -0.3, -0.3 - -0.1, c_3, 0) = (0.3, -0.2, -0.1, 0)
    np.testing.assert_allclose(
        _at(shaping.clip_delta(s, m, ETA), ends), [0.3, -0.2, -0.1, 0.0], atol=1e-6
    )


@pytest.mark.parametrize(
    "fn",
    [
        shaping.raw,
        shaping.delta,
        functools.partial(shaping.clip, eta=ETA),
        functools.partial(shaping.clip_delta, eta=ETA),
    ],
)
def test_no_steps_gives_zeros(fn):
    s = jnp.full((8,), 0.9)
    m = jnp.zeros((8,), bool)
    np.testing.assert_array_equal(fn(s, m), np.zeros(8))


def test_single_step():
    s, m = _place([0.9], [3], 6)
    np.testing.assert_array_equal(shaping.delta(s, m), np.zeros(6))
    np.testing.assert_array_equal(shaping.clip_delta(s, m, ETA), np.zeros(6))
    np.testing.assert_allclose(shaping.raw(s, m), [0, 0, 0, 0.9, 0, 0], atol=1e-6)
    s, m = _place([0.2], [3], 6)
    np.testing.assert_allclose(shaping.clip(s, m, ETA), [0, 0, 0, -0.3, 0, 0], atol=1e-6)


def test_two_steps_delta_puts_first_score_on_first_step():
    s, m = _place([0.6, 0.9], [1, 3], 5)
    np.testing.assert_allclose(shaping.delta(s, m), [0, 0.6, 0, 0, 0], atol=1e-6)


def test_padding_after_response_and_step_ending_on_last_token():
    # Response of 6 tokens then 4 padding tokens whose (garbage) scores must be ignored;
    # the last step ends on the last token of the whole array in the second case.
    s = jnp.asarray([0, 0.7, 0, 0.2, 0, 0.4, 5.0, 5.0, 5.0, 5.0], jnp.float32)
    m = jnp.asarray([0, 1, 0, 1, 0, 1, 0, 0, 0, 0], bool)
    np.testing.assert_allclose(shaping.delta(s, m), [0, 0.5, 0, 0.2, 0, 0, 0, 0, 0, 0], atol=1e-6)
    np.testing.assert_allclose(
        shaping.clip(s, m, ETA), [0, 0, 0, -0.3, 0, -0.1, 0, 0, 0, 0], atol=1e-6
    )
    s2, m2 = _place([0.7, 0.2, 0.4, 0.8], [0, 3, 6, 9], 10)
    np.testing.assert_allclose(
        _at(shaping.delta(s2, m2), [0, 3, 6, 9]), [0.5, -0.2, 0.4, 0.0], atol=1e-6
    )


def test_gated():
    s, m = _place([0.7, 0.2], [1, 3], 5)
    np.testing.assert_allclose(shaping.gated(s, m, 1.0, 0.5), [0, 0.7, 0, 0.2, 0], atol=1e-6)
    np.testing.assert_array_equal(shaping.gated(s, m, 0.0, 0.5), np.zeros(5))
    # Threshold is inclusive: R_outcome >= tau.
    np.testing.assert_allclose(shaping.gated(s, m, 0.5, 0.5), [0, 0.7, 0, 0.2, 0], atol=1e-6)


def test_shape_prm_dispatch_and_error():
    s, m = _place([0.7, 0.2, 0.4, 0.8], [1, 4, 6, 9], 12)
    np.testing.assert_allclose(
        shaping.shape_prm(s, m, "clip_delta", ETA), shaping.clip_delta(s, m, ETA)
    )
    with pytest.raises(ValueError, match="transform.*'clipdelta'"):
        shaping.shape_prm(s, m, "clipdelta", ETA)


def test_implicit_prm_sums_step_log_ratios():
    logp = jnp.asarray([-1.0, -2.0, -0.5, -0.1, -3.0, -0.2, -9.0])
    ref = jnp.asarray([-1.5, -1.0, -0.5, -0.4, -2.0, -0.1, -1.0])
    # log-ratios: 0.5, -1.0, 0.0, 0.3, -1.0, -0.1, (padding)
    resp = jnp.asarray([1, 1, 1, 1, 1, 1, 0], bool)
    # steps: tokens 0-1, 2-3; the tail (tokens 4-5: answer and EOS) is credited at token 5.
    ends = jnp.asarray([0, 1, 0, 1, 0, 0, 0], bool)
    out = shaping.implicit_prm(logp, ref, ends, resp, beta=0.1)
    expected = [0, 0.1 * (0.5 - 1.0), 0, 0.1 * 0.3, 0, 0.1 * (-1.0 - 0.1), 0]
    np.testing.assert_allclose(out, expected, atol=1e-6)
    # The rewards sum to the outcome reward the implicit PRM is trained as: beta * sum log-ratio.
    np.testing.assert_allclose(out.sum(), 0.1 * (0.5 - 1.0 + 0.0 + 0.3 - 1.0 - 0.1), atol=1e-6)


def test_implicit_prm_last_step_ending_at_the_last_token_is_one_segment():
    logp = jnp.asarray([-1.0, -2.0, -0.5, 0.0])
    ref = jnp.asarray([-1.5, -1.0, -0.4, 0.0])
    resp = jnp.asarray([1, 1, 1, 0], bool)
    ends = jnp.asarray([1, 0, 1, 0], bool)
    out = shaping.implicit_prm(logp, ref, ends, resp, beta=1.0)
    np.testing.assert_allclose(out, [0.5, 0, -1.0 - 0.1, 0], atol=1e-6)
    empty = shaping.implicit_prm(logp, ref, jnp.zeros(4, bool), jnp.zeros(4, bool), beta=1.0)
    np.testing.assert_array_equal(empty, np.zeros(4))


def test_kl_estimators():
    logp = jnp.asarray([-1.0, -2.0, -0.5])
    ref = jnp.asarray([-1.5, -1.0, -7.0])
    resp = jnp.asarray([1, 1, 0], bool)
    np.testing.assert_allclose(shaping.kl_penalty(logp, ref, resp, "k1"), [0.5, -1.0, 0], atol=1e-6)
    k1 = np.array([0.5, -1.0])
    np.testing.assert_allclose(
        shaping.kl_penalty(logp, ref, resp, "k3"), np.r_[np.exp(-k1) - 1 + k1, 0], rtol=1e-6
    )
    np.testing.assert_allclose(
        shaping.kl_penalty(logp, ref, resp, "k2"), np.r_[0.5 * k1**2, 0], rtol=1e-6
    )
    with pytest.raises(ValueError, match="estimator.*'k4'"):
        shaping.kl_penalty(logp, ref, resp, "k4")


def test_combine_hand_values():
    resp = jnp.asarray([1, 1, 1, 1, 0, 0], bool)
    prm = jnp.asarray([0, 0.5, 0, -0.2, 0, 0])
    kl = jnp.asarray([0.1, 0.2, 0.0, -0.1, 0.3, 0.3])
    r = shaping.combine(
        resp, success=1.0, orm=0.6, prm_T=prm, kl_T=kl, orm_weight=0.5, prm_weight=2.0, kl_coef=0.1
    )
    # last token 3: 1 + 0.5*0.6 + 2*(-0.2) - 0.1*(-0.1) = 0.91
    np.testing.assert_allclose(r, [-0.01, 0.98, 0.0, 0.91, 0, 0], atol=1e-6)
    np.testing.assert_array_equal(shaping.combine(jnp.zeros(4, bool), success=1.0), np.zeros(4))


def test_flip_success_is_seeded_and_has_the_right_rate():
    sr = jnp.tile(jnp.asarray([0.0, 1.0]), 20000)
    key = jax.random.key(3)
    a = shaping.flip_success(sr, key, 0.4)
    np.testing.assert_array_equal(a, shaping.flip_success(sr, key, 0.4))
    assert abs(float(jnp.mean(a != sr)) - 0.4) < 0.01
    np.testing.assert_array_equal(shaping.flip_success(sr, key, 0.0), sr)
    np.testing.assert_array_equal(shaping.flip_success(sr, key, 1.0), 1.0 - sr)


# --- properties -----------------------------------------------------------------------------

T = 24


@st.composite
def sequences(draw, t=T):
    mask = draw(hnp.arrays(bool, t))
    scores = draw(hnp.arrays(np.float32, t, elements=st.floats(0, 1, width=32)))
    return jnp.asarray(scores), jnp.asarray(mask)


@settings(max_examples=60, deadline=None)
@given(sequences(), st.floats(0, 1))
def test_clip_rewards_are_never_positive(seq, eta):
    s, m = seq
    assert np.all(np.asarray(shaping.clip(s, m, eta)) <= 0)
    assert np.all(np.asarray(shaping.clip_delta(s, m, eta))[np.asarray(~m)] == 0)


@settings(max_examples=60, deadline=None)
@given(sequences())
def test_delta_return_from_step_k_equals_s_k(seq):
    s, m = seq
    d = np.asarray(shaping.delta(s, m))
    ends = np.flatnonzero(np.asarray(m))
    s_k = np.asarray(s)[ends]
    for k in range(len(ends) - 1):  # every step k < K
        np.testing.assert_allclose(d[ends[k] :].sum(), s_k[k], atol=1e-5)
    if len(ends):
        assert d[ends[-1]] == 0


def _returns_with_repeats(base_scores, repeated_score, n_repeats, eta):
    """Returns of each transform for a response whose last correct step is repeated n times.

    Token layout: one token per step, the final answer step last (as in a real response, where the
    repeated steps come before the answer).
    """
    scores = list(base_scores[:-1]) + [repeated_score] * n_repeats + [base_scores[-1]]
    k = len(scores)
    s, m = _place(scores, range(k), k)
    return {
        name: float(jnp.sum(f(s, m)))
        for name, f in [
            ("raw", shaping.raw),
            ("delta", shaping.delta),
            ("clip", functools.partial(shaping.clip, eta=eta)),
            ("clip_delta", functools.partial(shaping.clip_delta, eta=eta)),
        ]
    }


@settings(max_examples=40, deadline=None)
@given(
    st.lists(st.floats(0, 1, width=32), min_size=1, max_size=5),
    st.floats(0.015625, 1, width=32),
    st.floats(0, 1),
)
def test_repeated_steps_grow_raw_linearly_but_never_the_bounded_returns(base, rep, eta):
    rets = [_returns_with_repeats(base, rep, n, eta) for n in range(6)]
    raws = np.array([r["raw"] for r in rets])
    np.testing.assert_allclose(np.diff(raws), rep, atol=1e-5)  # linear growth, slope = score
    best_single = max(base + [rep])
    for r in rets:
        assert r["clip"] <= 1e-6
        assert r["clip_delta"] <= 1e-6
        assert r["delta"] <= best_single + 1e-5
    # Clip never rewards adding steps.
    clips = np.array([r["clip"] for r in rets])
    assert np.all(np.diff(clips) <= 1e-6)


def _return_to_go_at(rewards, position):
    """gamma = 1 return of the token at ``position``: what PPO credits the action taken there."""
    return float(np.asarray(rewards)[position:].sum())


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1, width=32), min_size=1, max_size=5),
    st.floats(0, 1, width=32),
    st.floats(0, 1, width=32),
    st.floats(0, 1),
)
def test_stop_or_continue_credit_delta_pays_the_extra_step_like_raw(prefix, extra, final, eta):
    """At the decision "write the final step now, or one more step first", the return-to-go of
    the step written at that position differs by s_extra under both raw and delta: Delta bounds
    the whole response's return (s_1) but not this per-decision credit, because a step's delta
    reward s_k - s_{k+1} depends on the *next* step. Clip and Clip-Delta credit it by at most 0.

    This is why, in the embedded default, PRM-delta lengthens responses like PRM-raw (README).
    """
    stop = list(prefix) + [final]  # the decision point is step j = len(prefix)
    cont = list(prefix) + [extra, final]
    j = len(prefix)
    fns = {
        "raw": shaping.raw,
        "delta": shaping.delta,
        "clip": functools.partial(shaping.clip, eta=eta),
        "clip_delta": functools.partial(shaping.clip_delta, eta=eta),
    }
    gap = {}
    for name, f in fns.items():
        r_stop = f(*_place(stop, range(len(stop)), len(stop)))
        r_cont = f(*_place(cont, range(len(cont)), len(cont)))
        gap[name] = _return_to_go_at(r_cont, j) - _return_to_go_at(r_stop, j)
        # ...while the whole response's return of delta and clip_delta never grows with the step.
        if name in ("delta", "clip_delta"):
            np.testing.assert_allclose(float(jnp.sum(r_cont)), float(jnp.sum(r_stop)), atol=1e-5)
    np.testing.assert_allclose(gap["delta"], extra, atol=1e-5)
    np.testing.assert_allclose(gap["raw"], extra, atol=1e-5)
    np.testing.assert_allclose(gap["clip_delta"], min(extra - eta, 0.0), atol=1e-5)
    assert gap["clip"] <= 1e-6


_RESP = jnp.ones((T,), bool)
_ROW_FNS = {
    "raw": shaping.raw,
    "clip": lambda s, m: shaping.clip(s, m, ETA),
    "delta": shaping.delta,
    "clip_delta": lambda s, m: shaping.clip_delta(s, m, ETA),
    "gated": lambda s, m: shaping.gated(s, m, s[0], 0.5),
    "implicit": lambda s, m: shaping.implicit_prm(jnp.log(s + 0.1), jnp.log(0.5), m, _RESP, 0.1),
    "combine": lambda s, m: shaping.combine(
        _RESP, success=1.0, prm_T=shaping.delta(s, m), prm_weight=1.0, kl_T=s, kl_coef=0.1
    ),
}
# Compiled once for the module, so hypothesis examples do not each pay compilation.
_JIT_VMAP = {name: jax.jit(jax.vmap(f)) for name, f in _ROW_FNS.items()}
_JIT = {name: jax.jit(f) for name, f in _ROW_FNS.items()}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(bool, (4, T)), hnp.arrays(np.float32, (4, T), elements=st.floats(0, 1, width=32)))
def test_vmap_and_jit_equal_row_by_row(mask, scores):
    s, m = jnp.asarray(scores), jnp.asarray(mask)
    for name, f in _ROW_FNS.items():
        rows = np.stack([np.asarray(f(s[i], m[i])) for i in range(4)])
        np.testing.assert_allclose(_JIT_VMAP[name](s, m), rows, atol=1e-6, err_msg=name)
        np.testing.assert_allclose(_JIT[name](s[0], m[0]), rows[0], atol=1e-6, err_msg=name)


def test_transforms_do_not_sync_with_host():
    """Tracing under jit must not need concrete values (no Python branching on arrays)."""
    s, m = _place([0.7, 0.2], [1, 3], 5)
    with jax.transfer_guard("disallow"):
        for f in (shaping.raw, shaping.delta, lambda s, m: shaping.clip_delta(s, m, ETA)):
            jax.jit(f).lower(s, m)


# --- min_form (PURE) and potential ----------------------------------------------------------


def _suffix_returns(rewards, ends):
    r = np.asarray(rewards)
    return np.array([r[e:].sum() for e in ends])


def test_min_form_hand_values():
    np.testing.assert_array_equal(
        shaping.min_form(jnp.full((6,), 0.9), jnp.zeros((6,), bool)), np.zeros(6)
    )
    s, m = _place([0.7], [2], 5)
    np.testing.assert_allclose(shaping.min_form(s, m), [0, 0, 0.7, 0, 0], atol=1e-6)
    # s = (0.6, 0.3, 0.8): G = (0.3, 0.3, 0.8), G_4 = 0; r = (0, -0.5, 0.8).
    ends = [1, 4, 6]
    s, m = _place([0.6, 0.3, 0.8], ends, 9)
    out = np.asarray(shaping.min_form(s, m))
    np.testing.assert_allclose(_at(out, ends), [0.0, -0.5, 0.8], atol=1e-6)
    assert np.count_nonzero(np.delete(out, ends)) == 0
    np.testing.assert_allclose(_suffix_returns(out, ends), [0.3, 0.3, 0.8], atol=1e-6)
    # Garbage scores on padding after the response are ignored.
    s_pad = s.at[7:].set(-5.0)
    np.testing.assert_allclose(shaping.min_form(s_pad, m), out, atol=1e-6)


def test_min_form_temperature_hand_values():
    # PURE's weights over all steps: w = softmax(-s / T), r_k = w_k s_k.
    ends = [0, 2]
    s, m = _place([0.2, 0.6], ends, 4)
    w = np.exp([-0.2 / 0.5, -0.6 / 0.5])
    w = w / w.sum()
    np.testing.assert_allclose(
        _at(shaping.min_form(s, m, 0.5), ends), w * np.array([0.2, 0.6]), rtol=1e-5
    )
    np.testing.assert_array_equal(
        shaping.min_form(jnp.full((4,), 0.9), jnp.zeros((4,), bool), 0.5), np.zeros(4)
    )


def test_potential_hand_values():
    np.testing.assert_array_equal(
        shaping.potential(jnp.full((5,), 0.9), jnp.zeros((5,), bool), True), np.zeros(5)
    )
    s, m = _place([0.7], [2], 4)
    np.testing.assert_allclose(shaping.potential(s, m), [0, 0, 0.7, 0], atol=1e-6)
    np.testing.assert_allclose(shaping.potential(s, m, True), np.zeros(4), atol=1e-6)
    ends = [1, 4, 6, 9]
    s, m = _place([0.7, 0.2, 0.4, 0.8], ends, 12)
    # s_k - s_{k-1}: (0.7, -0.5, 0.2, 0.4); terminal: last becomes 0.4 - 0.8 = -s_3 = -0.4.
    np.testing.assert_allclose(_at(shaping.potential(s, m), ends), [0.7, -0.5, 0.2, 0.4], atol=1e-6)
    out = np.asarray(shaping.potential(s, m, True))
    np.testing.assert_allclose(_at(out, ends), [0.7, -0.5, 0.2, -0.4], atol=1e-6)
    assert np.count_nonzero(np.delete(out, ends)) == 0
    # Return from step k: s_K - s_{k-1} = (0.8, 0.1, 0.6, 0.4); terminal: -s_{k-1}.
    np.testing.assert_allclose(
        _suffix_returns(shaping.potential(s, m), ends), [0.8, 0.1, 0.6, 0.4], atol=1e-6
    )
    np.testing.assert_allclose(_suffix_returns(out, ends), [0, -0.7, -0.2, -0.4], atol=1e-6)


def test_shape_prm_dispatches_min_form_and_potential():
    s, m = _place([0.7, 0.2, 0.4, 0.8], [1, 4, 6, 9], 12)
    np.testing.assert_allclose(
        shaping.shape_prm(s, m, "min_form", min_form_temperature=0.3), shaping.min_form(s, m, 0.3)
    )
    np.testing.assert_allclose(shaping.shape_prm(s, m, "min_form"), shaping.min_form(s, m))
    np.testing.assert_allclose(
        shaping.shape_prm(s, m, "potential", potential_terminal=True),
        shaping.potential(s, m, True),
    )
    assert {"min_form", "potential"} <= set(shaping.PRM_TRANSFORMS)


def _pure_transcription(scores, temperature):
    """CJReinforce/PURE openrlhf/utils/utils.py turn_process_reward_logits_to_reward, given the
    process rewards directly (on the K step ends), then experience_maker.py's
    ``reward.fliplr().cumsum(dim=1).fliplr()`` for the returns."""
    s = np.asarray(scores, np.float64)
    logits = -s / temperature
    w = np.exp(logits - logits.max())
    w = w / w.sum()
    r = w * s
    return r, np.cumsum(r[::-1])[::-1]


@settings(max_examples=60, deadline=None)
@given(sequences())
def test_min_form_return_from_every_step_is_the_min_remaining_score(seq):
    s, m = seq
    out = np.asarray(shaping.min_form(s, m))
    ends = np.flatnonzero(np.asarray(m))
    s_k = np.asarray(s)[ends]
    want = np.array([s_k[k:].min() for k in range(len(ends))])
    np.testing.assert_allclose(_suffix_returns(out, ends), want, atol=1e-5)
    assert np.all(np.delete(out, ends) == 0)
    if len(ends):  # the response's return lies in [0, 1] for scores in [0, 1]
        assert -1e-6 <= out.sum() <= 1 + 1e-6


@settings(max_examples=60, deadline=None)
@given(sequences(), st.floats(0.01, 10))
def test_min_form_temperature_matches_pure_transcription(seq, temperature):
    s, m = seq
    ends = np.flatnonzero(np.asarray(m))
    out = np.asarray(shaping.min_form(s, m, temperature))
    assert np.all(np.delete(out, ends) == 0)
    if not len(ends):
        return
    r, returns = _pure_transcription(np.asarray(s)[ends], temperature)
    np.testing.assert_allclose(out[ends], r, atol=1e-5)
    np.testing.assert_allclose(_suffix_returns(out, ends), returns, atol=1e-5)


@settings(max_examples=40, deadline=None)
@given(st.lists(st.floats(0, 1, width=32), min_size=1, max_size=6, unique=True))
def test_min_form_temperature_approaches_exact_as_t_goes_to_zero(scores):
    """As T -> 0, PURE's weighted form gives the exact form's response return min_k s_k, and the
    exact return from every step up to the argmin; after the argmin it gives 0 (its weights are a
    softmax over all K steps, not over the remaining ones)."""
    k = len(scores)
    s, m = _place(scores, range(k), k)
    exact = _suffix_returns(shaping.min_form(s, m), range(k))
    argmin = int(np.argmin(scores))
    gaps = sorted(set(scores))
    # Temperature small against the gap between the two smallest scores (weights ~ exp(-gap/T)).
    gap = gaps[1] - gaps[0] if len(gaps) > 1 else 1.0
    soft = _suffix_returns(shaping.min_form(s, m, max(gap, 1e-3) / 60), range(k))
    np.testing.assert_allclose(soft[: argmin + 1], exact[: argmin + 1], atol=1e-4)
    np.testing.assert_allclose(soft[argmin + 1 :], 0.0, atol=1e-4)
    # And the error of the response's return shrinks monotonically as T decreases.
    errs = [
        abs(float(jnp.sum(shaping.min_form(s, m, t))) - min(scores)) for t in (1.0, 0.3, 0.1, 0.03)
    ]
    assert all(a >= b - 1e-6 for a, b in zip(errs, errs[1:]))


@settings(max_examples=60, deadline=None)
@given(sequences(), st.booleans())
def test_potential_return_telescopes(seq, terminal):
    s, m = seq
    out = np.asarray(shaping.potential(s, m, terminal))
    ends = np.flatnonzero(np.asarray(m))
    assert np.all(np.delete(out, ends) == 0)
    s_k = np.asarray(s)[ends]
    s_prev = np.r_[0.0, s_k[:-1]][: len(ends)]
    s_last = 0.0 if terminal or not len(ends) else s_k[-1]
    np.testing.assert_allclose(_suffix_returns(out, ends), s_last - s_prev, atol=1e-5)
    np.testing.assert_allclose(out.sum(), s_last, atol=1e-5)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.floats(0, 1, width=32), max_size=5),
    st.floats(0, 1, width=32),
    st.floats(0, 1, width=32),
    st.floats(0, 1, width=32),
    st.booleans(),
)
def test_stop_or_continue_credit_potential_pays_the_effect_on_the_final_score(
    prefix, extra, final_stop, final_cont, terminal
):
    """At the decision "write the final step now (score s_F) or one more step first (score
    s_extra, after which the final step scores s_F')", the return-to-go of the step written at
    that position is s_F - s_prev (stop) vs s_F' - s_prev (continue) under ``potential``: the gap
    is s_F' - s_F, the extra step's effect on the final score, independent of its own score
    s_extra. Under raw the gap is s_extra + s_F' - s_F. With ``terminal`` both returns are
    -s_prev and the gap is 0.
    """
    stop = list(prefix) + [final_stop]
    cont = list(prefix) + [extra, final_cont]
    j = len(prefix)
    s_prev = prefix[-1] if prefix else 0.0
    gap = {}
    for name, f in {
        "raw": shaping.raw,
        "potential": functools.partial(shaping.potential, terminal=terminal),
    }.items():
        r_stop = f(*_place(stop, range(len(stop)), len(stop)))
        r_cont = f(*_place(cont, range(len(cont)), len(cont)))
        gap[name] = _return_to_go_at(r_cont, j) - _return_to_go_at(r_stop, j)
        if name == "potential":
            want = -s_prev if terminal else final_cont - s_prev
            np.testing.assert_allclose(_return_to_go_at(r_cont, j), want, atol=1e-5)
    np.testing.assert_allclose(gap["raw"], extra + final_cont - final_stop, atol=1e-5)
    np.testing.assert_allclose(
        gap["potential"], 0.0 if terminal else final_cont - final_stop, atol=1e-5
    )


_NEW_ROW_FNS = {
    "min_form": shaping.min_form,
    "min_form_t": lambda s, m: shaping.min_form(s, m, 0.2),
    "potential": shaping.potential,
    "potential_terminal": lambda s, m: shaping.potential(s, m, True),
}
_NEW_JIT_VMAP = {name: jax.jit(jax.vmap(f)) for name, f in _NEW_ROW_FNS.items()}


@settings(max_examples=25, deadline=None)
@given(hnp.arrays(bool, (4, T)), hnp.arrays(np.float32, (4, T), elements=st.floats(0, 1, width=32)))
def test_min_form_and_potential_vmap_and_jit_equal_row_by_row(mask, scores):
    s, m = jnp.asarray(scores), jnp.asarray(mask)
    for name, f in _NEW_ROW_FNS.items():
        rows = np.stack([np.asarray(f(s[i], m[i])) for i in range(4)])
        np.testing.assert_allclose(_NEW_JIT_VMAP[name](s, m), rows, atol=1e-6, err_msg=name)


def test_min_form_and_potential_options_may_be_traced():
    s, m = _place([0.7, 0.2, 0.4], [1, 3, 5], 6)
    temperature, terminal = jnp.asarray(0.1, jnp.float32), jnp.asarray(True)
    with jax.transfer_guard("disallow"):
        jax.jit(shaping.min_form).lower(s, m, temperature)
        jax.jit(shaping.potential).lower(s, m, terminal)
    np.testing.assert_allclose(
        jax.jit(shaping.min_form)(s, m, 0.1), shaping.min_form(s, m, 0.1), atol=1e-6
    )
    np.testing.assert_allclose(
        jax.jit(shaping.min_form)(s, m, 0.0), shaping.min_form(s, m), atol=1e-6
    )
