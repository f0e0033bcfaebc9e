"""generate(): prompts go through the sampler in batches of exactly `batch_size` (the last padded
with repeats of its last prompt, whose responses are dropped), responses come back in prompt order,
decoded over their response mask and cut at the stop strings. A fake sampler with hand-made
outputs stands in for the real one (which the evaluator tests run)."""

import types

import jax
import numpy as np
import pytest

from rl.data.toy_tokenizer import toy_tokenizer
from rl.eval.generation import Generations, generate

TOK = toy_tokenizer()
DIGIT = {str(d): TOK.convert_tokens_to_ids(str(d)) for d in range(10)}
PLUS, EQUALS = TOK.convert_tokens_to_ids("+"), TOK.convert_tokens_to_ids("=")


class _FakeSampler:
    """Prompt row b (its last token a digit d) and sample j respond "d+j=9", then a "7" outside the
    response mask; records what each call received."""

    def __init__(self, samples_per_prompt: int, stop_strings: tuple[str, ...]):
        self.config = types.SimpleNamespace(
            samples_per_prompt=samples_per_prompt, stop_strings=stop_strings
        )
        self.calls = []

    def __call__(self, params, ids_BxP, mask_BxP, key):
        self.calls.append((np.asarray(ids_BxP).copy(), np.asarray(mask_BxP).copy(), key))
        n = self.config.samples_per_prompt
        rows = [
            [int(last), PLUS, DIGIT[str(j)], EQUALS, DIGIT["9"], DIGIT["7"]]
            for last in ids_BxP[:, -1]
            for j in range(n)
        ]
        tokens = np.asarray(rows, np.int32)
        m = tokens.shape[0]
        return types.SimpleNamespace(
            tokens=tokens,
            response_mask=np.tile(np.array([1, 1, 1, 1, 1, 0], np.int32), (m, 1)),
            logp=np.arange(m * 6, dtype=np.float32).reshape(m, 6),
            lengths=np.full(m, 5, np.int32),
            finish_reason=np.arange(m, dtype=np.int32),
        )


def _prompts(e: int):
    """E prompts, left-padded to 2 tokens: [pad, digit e+1]."""
    ids = np.array([[TOK.pad_token_id, DIGIT[str(i + 1)]] for i in range(e)], np.int32)
    return ids, np.tile(np.array([0, 1], np.int32), (e, 1))


@pytest.mark.parametrize(
    "stops, texts",
    [
        ((), ["1+0=9", "1+1=9", "2+0=9", "2+1=9", "3+0=9", "3+1=9"]),
        (("=",), ["1+0=", "1+1=", "2+0=", "2+1=", "3+0=", "3+1="]),
    ],
)
def test_generate_batches_pads_drops_and_decodes(stops, texts):
    sampler = _FakeSampler(2, stops)
    ids, mask = _prompts(3)
    key = jax.random.key(5)
    gens = generate(sampler, "params", ids, mask, TOK, batch_size=2, key=key)

    assert isinstance(gens, Generations) and gens.samples_per_prompt == 2
    # Two calls of exactly 2 prompts; the second pads prompt 2 with a repeat of itself.
    assert [c[0].shape for c in sampler.calls] == [(2, 2), (2, 2)]
    np.testing.assert_array_equal(sampler.calls[0][0], ids[[0, 1]])
    np.testing.assert_array_equal(sampler.calls[1][0], ids[[2, 2]])
    np.testing.assert_array_equal(sampler.calls[1][1], mask[[2, 2]])
    for i, (_, _, k) in enumerate(sampler.calls):
        want = jax.random.key_data(jax.random.fold_in(key, i))
        np.testing.assert_array_equal(jax.random.key_data(k), want)
    # 3 prompts x 2 samples: the padding repeat's 2 rows are gone, prompt order kept.
    assert gens.tokens.shape == (6, 6) and gens.response_mask.dtype == bool
    assert gens.texts == texts  # the masked-out "7" is never decoded
    np.testing.assert_array_equal(gens.lengths, [5] * 6)
    np.testing.assert_array_equal(gens.finish_reason, [0, 1, 2, 3, 0, 1])  # 2nd call: rows 0, 1
    np.testing.assert_array_equal(gens.logp[4], np.arange(6, dtype=np.float32))


def test_generate_with_one_full_batch_calls_the_sampler_once():
    sampler = _FakeSampler(1, ())
    ids, mask = _prompts(4)
    gens = generate(sampler, None, ids, mask, TOK, batch_size=4, key=jax.random.key(0))
    assert len(sampler.calls) == 1
    assert gens.texts == ["1+0=9", "2+0=9", "3+0=9", "4+0=9"]
