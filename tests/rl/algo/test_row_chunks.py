"""row_chunked: the same values as the unchunked function, for block sizes that divide the batch
and sizes that do not (the last block padded), under jit, over a sharded batch, and for the
trainer's own scoring pass on a real model; outputs that are not row-wise are refused."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from configs import sharding
from models.config import ModelConfig
from models.decoder import CausalLM
from models.presets import tiny
from models.sharding import make_mesh, use_mesh
from rl.algo.row_chunks import row_chunked
from rl.algo.scoring import make_score_fn


def rowwise(w, x_BxT, m_BxT):
    """A row-wise function of two batched arrays and one shared weight, two outputs."""
    h = jnp.tanh(x_BxT @ w) * m_BxT
    return {"h": h, "total": jnp.sum(h, axis=-1)}


@pytest.mark.parametrize(
    "b, rows",
    [(12, 4), (13, 4), (7, 1)],
    ids=["blocks-divide", "last-block-padded", "one-row-blocks"],
)
def test_equals_the_unchunked_function(b, rows):
    rng = np.random.default_rng(b * 100 + rows)
    w = rng.normal(size=(5, 5)).astype(np.float32)
    x = rng.normal(size=(b, 5)).astype(np.float32)
    m = rng.integers(0, 2, size=(b, 5)).astype(np.float32)
    want = rowwise(w, x, m)
    got = jax.jit(row_chunked(rowwise, rows, batched_argnums=(1, 2)))(w, x, m)
    for k in want:
        assert got[k].shape == want[k].shape
        np.testing.assert_allclose(got[k], want[k], rtol=1e-6, atol=1e-6)


def test_blocks_are_strided_and_the_last_one_padded_with_the_last_row():
    """5 rows in blocks of 2: 3 blocks; the padded batch [r0..r4, r4] as [2, 3] gives blocks
    (r0, r3), (r1, r4), (r2, r4); every block sees real rows only, and its outputs come back in
    row order."""
    seen = []

    def record(x):
        jax.debug.callback(lambda v: seen.append(np.asarray(v).tolist()), x)
        return x * 10

    out = jax.jit(row_chunked(record, 2))(jnp.arange(5.0))
    jax.effects_barrier()
    assert sorted(seen) == [[0.0, 3.0], [1.0, 4.0], [2.0, 4.0]]
    np.testing.assert_array_equal(out, [0.0, 10.0, 20.0, 30.0, 40.0])


def test_zero_rows_and_a_block_as_large_as_the_batch_run_the_function_once():
    calls = []

    def f(x):
        calls.append(x.shape)
        return x + 1

    assert row_chunked(f, 0) is f
    np.testing.assert_array_equal(row_chunked(f, 8)(jnp.zeros(8)), np.ones(8))
    assert calls == [(8,)]


@pytest.mark.parametrize("rows", [-1, 1.5, True])
def test_bad_block_sizes_are_refused(rows):
    with pytest.raises(ValueError, match="rows must be an integer >= 0"):
        row_chunked(lambda x: x, rows)


def test_a_function_that_is_not_row_wise_is_refused():
    with pytest.raises(ValueError, match="returned 1 rows for a block of 2"):
        row_chunked(lambda x: x.sum(0, keepdims=True), 2)(jnp.ones((4, 3)))
    with pytest.raises(ValueError, match="same leading"):
        row_chunked(lambda x, y: x + y.sum(), 2)(jnp.ones((4, 3)), jnp.ones((5,)))


def test_the_scoring_pass_in_blocks_over_a_sharded_batch_equals_one_pass():
    """The trainer's use: make_score_fn of a tiny policy and reference, 24 rows sharded over 8
    devices, blocks of 16 (2 blocks, 8 padded rows) vs one pass."""
    mesh = make_mesh((1, 8, 1))
    cfg = ModelConfig.from_dict(tiny().to_dict())
    policy, ref = CausalLM(cfg, rngs=nnx.Rngs(0)), CausalLM(cfg, rngs=nnx.Rngs(1))
    graphdefs = {"policy": nnx.graphdef(policy), "ref": nnx.graphdef(ref)}
    params = {"policy": nnx.state(policy), "ref": nnx.state(ref)}
    rng = np.random.default_rng(0)
    p, r, b = 6, 5, 24
    tokens = rng.integers(0, cfg.vocab_size, size=(b, p + r)).astype(np.int32)
    mask = np.ones((b, p + r), bool)
    mask[::3, :2] = False  # left padding on some prompts
    last = np.zeros((b, r), bool)
    last[:, -1] = True
    rows_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    tokens, mask, last = jax.device_put((tokens, mask, last), rows_sh)
    score = make_score_fn(graphdefs, p)
    with use_mesh(mesh, sharding.RULES):
        want = jax.jit(score)(params, tokens, mask, last)
        got = jax.jit(row_chunked(score, 16, (1, 2, 3)))(params, tokens, mask, last)
    assert set(got) == {"old_logp", "ref_logp"}
    for k in want:
        np.testing.assert_allclose(got[k], want[k], rtol=1e-5, atol=1e-5)
