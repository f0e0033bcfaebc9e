"""Supervised fine-tuning: what the loss sees, length grouping, packing, and exact resumption in
chunks."""

import jax
import numpy as np
import optax
import pytest
from flax import nnx

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.data import Example, toy
from rl.data import prompts as prompts_lib
from rl.data.toy_tokenizer import toy_tokenizer
from rl.trainers import sft


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def examples():
    rows = toy.generate("train", 48, seed=3)
    return [
        Example(
            id=r.id, question=r.problem.question, answer=str(r.problem.answer), solution=r.solution
        )
        for r in rows
    ]


def _model(tok, seed=0):
    values = presets.tiny(vocab_size=len(tok), max_position_embeddings=256).to_dict()
    values.update(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    return CausalLM(ModelConfig.from_dict(values), rngs=nnx.Rngs(seed))


def test_encode_targets_solution_and_eos_only(tok, examples):
    data = sft.encode_sft(examples[:4], tok, 128, None)
    for i, ex in enumerate(examples[:4]):
        prompt = prompts_lib.format_prompt(ex.question, tok, system_prompt=None)
        n_prompt = len(tok(prompt, add_special_tokens=False)["input_ids"])
        n_total = int(data["attention_mask"][i].sum())
        target = np.flatnonzero(data["target_mask"][i])
        assert target[0] == n_prompt and target[-1] == n_total - 1
        assert len(target) == n_total - n_prompt
        assert data["tokens"][i, n_total - 1] == tok.eos_token_id
        assert tok.decode(data["tokens"][i, n_prompt : n_total - 1]) == ex.solution
        assert not data["attention_mask"][i, n_total:].any()


def test_encode_too_long_names_the_example(tok, examples):
    with pytest.raises(ValueError, match=f"{examples[0].id}.*max_len=10"):
        sft.encode_sft(examples[:1], tok, 10, None)


def test_uniform_batches_depend_on_seed_and_step_only():
    lengths = np.arange(100)
    a = sft.batch_indices(lengths, 8, seed=1, step=5)
    np.testing.assert_array_equal(a, np.random.default_rng([1, 5]).integers(0, 100, size=8))
    np.testing.assert_array_equal(a, sft.batch_indices(lengths, 8, seed=1, step=5))
    assert not np.array_equal(a, sft.batch_indices(lengths, 8, seed=1, step=6))


def test_grouped_batches_partition_a_pool_sorted_by_length():
    rng = np.random.default_rng(0)
    lengths = rng.integers(10, 120, size=500)
    g, b = 4, 16
    for pool_id in range(3):
        batches = [
            sft.batch_indices(lengths, b, 7, pool_id * g + j, group_by_length=g) for j in range(g)
        ]
        pool = np.random.default_rng([7, pool_id, 0]).integers(0, 500, size=g * b)
        np.testing.assert_array_equal(np.sort(np.concatenate(batches)), np.sort(pool))
        spans = sorted((lengths[x].min(), lengths[x].max()) for x in batches)
        for (_, hi), (lo, _) in zip(spans, spans[1:]):
            assert hi <= lo  # batches do not interleave in length
        # Grouping pays: the padded width (longest row) is far below the uniform draw's.
        assert np.mean([lengths[x].max() for x in batches]) < lengths[pool].max()


def test_cutting_right_padding_leaves_the_step_unchanged(tok, examples):
    data = sft.encode_sft(examples[:8], tok, 128, None)
    width = int(data["attention_mask"].sum(-1).max())
    cut = {k: v[:, :width] for k, v in data.items()}
    results = []
    for batch in (data, cut):
        graphdef, params = nnx.split(_model(tok))
        tx = sft.sft_optimizer(1e-3, 10, warmup_steps=0)
        params, _, loss = jax.jit(sft.make_sft_step(graphdef, tx))(params, tx.init(params), batch)
        results.append((float(loss), params))
    assert results[0][0] == pytest.approx(results[1][0], rel=1e-5)
    assert results[0][0] == pytest.approx(np.log(len(tok)), rel=0.2)  # random init: ~uniform
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-6),
        results[0][1],
        results[1][1],
    )


def test_chunks_continue_exactly_and_training_lowers_the_loss(tok, examples):
    kwargs = dict(
        steps=12,
        batch_size=8,
        learning_rate=3e-3,
        max_len=128,
        seed=0,
        warmup_steps=2,
        log_every=1,
        group_by_length=3,
        pad_multiple=64,
    )
    whole, _, losses = sft.train_sft(_model(tok), tok, examples, **kwargs)
    part, opt_state, first = sft.train_sft(_model(tok), tok, examples, end_step=5, **kwargs)
    part, _, rest = sft.train_sft(part, tok, examples, start_step=5, opt_state=opt_state, **kwargs)
    np.testing.assert_allclose(first + rest, losses, rtol=1e-5)
    jax.tree.map(
        lambda a, b: np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-7),
        nnx.state(whole, nnx.Param),
        nnx.state(part, nnx.Param),
    )
    assert np.mean(losses[-3:]) < 0.8 * np.mean(losses[:3])


def test_pack_batch_by_hand():
    # Lengths 5, 3, 4 into rows of 8, longest first: 5 opens row 0, 4 does not fit beside it and
    # opens row 1, 3 fills row 0; two rows, and empty ones up to a multiple of row_multiple (4).
    lengths = [5, 3, 4]
    tokens = np.zeros((3, 6), np.int32)
    mask = np.zeros((3, 6), bool)
    for i, n in enumerate(lengths):
        tokens[i, :n] = 10 * (i + 1) + np.arange(n)
        mask[i, :n] = True
    batch = {"tokens": tokens, "attention_mask": mask, "target_mask": mask}
    packed = sft.pack_batch(batch, 8, row_multiple=4)
    assert packed["tokens"].shape == (4, 8)
    np.testing.assert_array_equal(packed["tokens"][0], [10, 11, 12, 13, 14, 20, 21, 22])
    np.testing.assert_array_equal(packed["tokens"][1], [30, 31, 32, 33, 0, 0, 0, 0])
    np.testing.assert_array_equal(packed["segment_ids"][0], [1, 1, 1, 1, 1, 2, 2, 2])
    np.testing.assert_array_equal(packed["positions"][0], [0, 1, 2, 3, 4, 0, 1, 2])
    np.testing.assert_array_equal(packed["positions"][1], [0, 1, 2, 3, 0, 0, 0, 0])
    assert packed["attention_mask"].sum() == 12 and not packed["attention_mask"][2:].any()
    assert sft.pack_batch(batch, 8)["tokens"].shape == (2, 8)  # the default: no empty rows
    with pytest.raises(ValueError, match="a 5-token row does not fit width=4"):
        sft.pack_batch({"tokens": tokens, "attention_mask": mask}, 4)


def test_a_packed_batch_gives_the_same_loss_and_gradient(tok, examples):
    """The same 16 solutions, padded to 128 or packed into rows of 256: the loss and its gradient
    (one SGD step of rate 1 from the same parameters) agree to float rounding, from fewer tokens."""
    data = sft.encode_sft(examples[:16], tok, 128, None)
    packed = sft.pack_batch(data, 256)
    longest = int(data["attention_mask"].sum(-1).max())
    assert packed["tokens"].size < len(data["tokens"]) * longest  # the padded batch, cut
    graphdef, start = nnx.split(_model(tok))
    tx = optax.sgd(1.0)
    step = jax.jit(sft.make_sft_step(graphdef, tx))
    results = [step(start, tx.init(start), batch) for batch in (data, packed)]
    assert float(results[0][2]) == pytest.approx(float(results[1][2]), rel=1e-6)
    grads = [jax.tree.map(lambda a, b: a - b, start, r[0]) for r in results]
    scale = max(float(np.abs(g).max()) for g in jax.tree.leaves(grads[0]))
    jax.tree.map(lambda a, b: np.testing.assert_allclose(a, b, atol=1e-5 * scale), *grads)


def test_packed_training_follows_padded_training(tok, examples):
    kwargs = dict(steps=3, batch_size=8, learning_rate=3e-3, max_len=128, seed=0, log_every=1)
    _, _, padded = sft.train_sft(_model(tok), tok, examples, warmup_steps=2, **kwargs)
    _, _, packed = sft.train_sft(
        _model(tok), tok, examples, warmup_steps=2, pack_width=256, pad_multiple=16, **kwargs
    )
    np.testing.assert_allclose(packed, padded, rtol=1e-4)
