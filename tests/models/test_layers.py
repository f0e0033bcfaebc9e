"""Hand-computed checks of the building blocks: RMSNorm and the dense projection.

RoPE is tested in test_rope.py, attention and its masks in test_attention.py."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.config import ModelConfig
from models.layers import Dense, RMSNorm, dense_dot

CFG = ModelConfig(
    vocab_size=16,
    hidden_size=4,
    intermediate_size=8,
    num_layers=1,
    num_heads=2,
    num_kv_heads=1,
    rms_norm_eps=1e-6,
)


def test_rmsnorm_by_hand():
    norm = RMSNorm(CFG, rngs=nnx.Rngs(0))
    norm.scale[...] = jnp.array([1.0, 2.0, 0.5, -1.0])
    x = jnp.array([[3.0, 4.0, 0.0, 0.0]])
    rms = math.sqrt((9 + 16) / 4 + 1e-6)
    np.testing.assert_allclose(norm(x), [[3 / rms, 8 / rms, 0.0, 0.0]], rtol=1e-6)
    assert norm(x.astype(jnp.bfloat16)).dtype == jnp.bfloat16


def test_dense_keeps_heads_as_dims_and_logical_axes():
    dense = Dense(
        (4,),
        (2, 3),
        in_axes=("embed",),
        out_axes=("heads", "head_dim"),
        use_bias=True,
        config=CFG,
        rngs=nnx.Rngs(0),
    )
    assert dense.kernel.get_metadata()["out_sharding"] == ("embed", "heads", "head_dim")
    x = jnp.ones((5, 7, 4))
    expected = jnp.einsum("btd,dhk->bthk", x, dense.kernel[...]) + dense.bias[...]
    np.testing.assert_allclose(dense(x), expected, rtol=1e-6)


@pytest.mark.parametrize(
    "x_shape, in_shape, out_shape",
    [
        ((5, 7, 4), (4,), (6,)),  # gate / up / down projections
        ((3, 2, 4), (4,), (2, 3)),  # q/k/v: heads kept as dims
        ((2, 5, 2, 3), (2, 3), (4,)),  # o_proj: contracts (heads, head_dim)
    ],
)
def test_dense_dot_values_and_gradients_equal_autodiff_of_the_plain_product(
    x_shape, in_shape, out_shape
):
    """`dense_dot`'s backward (an explicit x^T @ dy for the kernel) against JAX's autodiff of the
    plain `dot_general`, with a random cotangent: values and both gradients."""
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=x_shape), jnp.float32)
    w = jnp.asarray(rng.normal(size=in_shape + out_shape), jnp.float32)
    n_in = len(in_shape)
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    plain = lambda x, w: jax.lax.dot_general(x, w, (contract, ((), ())))  # noqa: E731
    ct = jnp.asarray(rng.normal(size=x_shape[: x.ndim - n_in] + out_shape), jnp.float32)
    got, got_vjp = jax.vjp(lambda x, w: dense_dot(x, w, n_in), x, w)
    want, want_vjp = jax.vjp(plain, x, w)
    np.testing.assert_allclose(got, want, rtol=1e-6)
    for a, b in zip(got_vjp(ct), want_vjp(ct), strict=True):
        assert a.shape == b.shape and a.dtype == b.dtype
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-5)
