"""Hand-computed checks of the building blocks: RMSNorm and the dense projection.

RoPE is tested in test_rope.py, attention and its masks in test_attention.py."""

import math

import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.config import ModelConfig
from models.layers import Dense, RMSNorm

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
