"""The iteration's verified rollout under PRIME's prompt filter, by hand: rounds drawn until the
band fills the batch (and no further), each round's sampling key, the kept rows with their
prompts, the batch filled with out-of-band prompts when the rounds run out, and no filter at all
without a band. The sampler is replaced by a scripted rollout (its texts are decoded by the real
toy tokenizer and judged by a success function, as the trainer's ``success_fn``)."""

from types import SimpleNamespace

import jax
import numpy as np
import pytest

from rewards.verifier_pool import BatchResult
from rl.config import DataConfig
from rl.data.example import Example
from rl.data.toy_tokenizer import toy_tokenizer
from rl.trainers.prompt_filter import PromptFilter

N, R = 4, 3
# Which of each prompt's 4 samples are right: a 4/4, b 2/4, c 0/4, d 3/4, e 4/4.
SCRIPT = {"a": "1111", "b": "1010", "c": "0000", "d": "0111", "e": "1111"}


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


def _scripted(tok, calls):
    """rollout(examples, key): each sample's text is "1" (right) or "0" (wrong), per SCRIPT."""

    def rollout(examples, key):
        calls.append(([e.id for e in examples], key))
        texts = [bit for e in examples for bit in SCRIPT[e.id]]
        tokens = np.full((len(texts), R), tok.pad_token_id, np.int32)
        tokens[:, 0] = [tok.convert_tokens_to_ids(t) for t in texts]
        response = np.zeros((len(texts), R), bool)
        response[:, 0] = True
        ids = np.array([[ord(e.id)] for e in examples], np.int32)  # prompt p's "tokens"
        # Each sample's log-prob names its prompt and sample: -(ord(id) + j / 10).
        logp = [-(ord(e.id) + j / 10) for e in examples for j in range(N)]
        out = SimpleNamespace(
            tokens=tokens,
            response_mask=response,
            sample_logp=np.where(response, np.array(logp)[:, None], 0.0),
            finish_reason=np.ones(len(texts)),
        )
        return ids, np.ones_like(ids, bool), out

    return rollout


def _filter(tok, calls, band, rounds=4):
    data = DataConfig(
        samples_per_prompt=N, prompts_per_batch=2, accuracy_band=band, filter_rounds=rounds
    ).validate()
    success = lambda texts, answers, tokens, response: [t == "1" for t in texts]  # noqa: E731
    return PromptFilter(data, _scripted(tok, calls), tok, verifier=None, success_fn=success)


def _batches(*ids):
    it = iter([[Example(i, f"q{i}", "1") for i in batch] for batch in ids])
    return lambda: next(it)


def test_rounds_fill_the_batch_with_in_band_prompts(tok):
    calls = []
    refill = _batches("ab", "cd", "e")
    key = jax.random.key(3)
    kept, metrics = _filter(tok, calls, (0.25, 0.75)).collect(refill(), key, refill)
    # Round 1: a (1.0) out, b (0.5) in; round 2: c (0.0) out, d (0.75) in -> full, no round 3.
    assert [ids for ids, _ in calls] == [["a", "b"], ["c", "d"]]
    np.testing.assert_array_equal(jax.random.key_data(calls[0][1]), jax.random.key_data(key))
    np.testing.assert_array_equal(
        jax.random.key_data(calls[1][1]), jax.random.key_data(jax.random.fold_in(key, 1))
    )
    assert [e.id for e in kept.examples] == ["b", "d"]
    np.testing.assert_array_equal(kept.ids[:, 0], [ord("b"), ord("d")])
    assert kept.texts == list("1010" + "0111")
    np.testing.assert_array_equal(kept.correct, [1, 0, 1, 0, 0, 1, 1, 1])
    # The sampler's log-probs (PPO's old log-probs) travel with their rows.
    want = [-(ord(p) + j / 10) for p in "bd" for j in range(N)]
    np.testing.assert_allclose(kept.logp[:, 0], want, rtol=1e-6)
    assert (kept.logp[:, 1:] == 0).all()
    assert kept.tokens.shape == (2 * N, R) and kept.response.shape == (2 * N, R)
    assert metrics == {
        "filter/rounds": 2.0,
        "filter/in_band_fraction": 0.5,
        "filter/out_of_band": 0.0,
        "filter/sampled_accuracy": 9 / 16,
    }


def test_too_few_in_band_fills_with_the_nearest_out_of_band_prompts(tok):
    calls = []
    refill = _batches("ac", "eb")
    kept, metrics = _filter(tok, calls, (0.5, 0.75), rounds=2).collect(
        refill(), jax.random.key(0), refill
    )
    # In band: b only. Out of band: a and e 0.25 above, c 0.5 below -> a, the earlier sampled.
    assert [ids for ids, _ in calls] == [["a", "c"], ["e", "b"]]
    assert [e.id for e in kept.examples] == ["a", "b"]
    assert metrics["filter/rounds"] == 2.0 and metrics["filter/out_of_band"] == 1.0
    assert metrics["filter/in_band_fraction"] == 0.25


def test_no_band_is_one_batch_as_sampled_and_no_refill_is_the_first_batch_only(tok):
    calls = []
    kept, metrics = _filter(tok, calls, ()).collect(_batches("ac")(), jax.random.key(0), None)
    assert [ids for ids, _ in calls] == [["a", "c"]] and metrics == {}
    assert [e.id for e in kept.examples] == ["a", "c"] and kept.texts == list("1111" + "0000")
    calls.clear()
    kept, metrics = _filter(tok, calls, (0.25, 0.75)).collect(_batches("ab")(), jax.random.key(0))
    assert len(calls) == 1 and [e.id for e in kept.examples] == ["a", "b"]
    assert metrics["filter/out_of_band"] == 1.0


def test_the_verifier_counts_of_every_round_are_the_iterations(tok):
    """Graded by the verifier (a stand-in returning its real BatchResult), each round's counts add
    up into the one verdict rl.runtime.verifier_watch sees per iteration, kept rows or not."""

    class Verifier:
        def check_batch(self, texts, answers):
            assert answers == ["1"] * len(texts)
            return BatchResult(
                [t == "1" for t in texts],
                num_timeouts=1,
                num_errors=0,
                num_crashes=1,
                num_checked=len(texts),
            )

    data = DataConfig(samples_per_prompt=N, prompts_per_batch=2, accuracy_band=(0.25, 0.75))
    refill = _batches("ac", "bd")
    rollouts = PromptFilter(data.validate(), _scripted(tok, []), tok, Verifier())
    kept, _ = rollouts.collect(refill(), jax.random.key(0), refill)
    assert [e.id for e in kept.examples] == ["b", "d"]
    np.testing.assert_array_equal(kept.correct, [1, 0, 1, 0, 0, 1, 1, 1])
    # The sampler's log-probs (PPO's old log-probs) travel with their rows.
    want = [-(ord(p) + j / 10) for p in "bd" for j in range(N)]
    np.testing.assert_allclose(kept.logp[:, 0], want, rtol=1e-6)
    assert (kept.logp[:, 1:] == 0).all()
    v = kept.verdict
    assert (v.num_timeouts, v.num_crashes, v.num_errors, v.num_checked) == (2, 2, 0, 16)
    assert len(v.correct) == 16 and not v.all_failed
