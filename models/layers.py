"""Building blocks of the decoder: parameters with logical axes, dense projections, RMSNorm, SwiGLU.

Dtype policy: parameters are stored in `config.param_dtype` and cast to `config.dtype` where used,
so one fp32 master copy serves bf16 compute. Norm statistics are always taken in fp32.

Parameters are created with `eager_sharding=False`: their logical axes are metadata that
`models/sharding.py` maps through the rule table (with divisibility fallbacks) when it builds the
model sharded; eager flax sharding would need an active mesh even for single-device use.
"""

from __future__ import annotations

import functools
import math
from collections.abc import Callable, Sequence

import jax
import jax.numpy as jnp
from flax import nnx

from models.config import ModelConfig
from models.sharding import constrain

Initializer = Callable[[jax.Array, Sequence[int], jnp.dtype], jax.Array]


def make_param(
    rngs: nnx.Rngs,
    init: Initializer,
    shape: Sequence[int],
    dtype: jnp.dtype,
    axes: Sequence[str | None],
) -> nnx.Param:
    """A parameter carrying its logical axis names (one per dim)."""
    if len(axes) != len(shape):
        raise ValueError(f"logical axes {tuple(axes)} do not match shape {tuple(shape)}")
    return nnx.Param(
        init(rngs.params(), tuple(shape), dtype), out_sharding=tuple(axes), eager_sharding=False
    )


@functools.partial(jax.custom_vjp, nondiff_argnums=(2,))
def dense_dot(x: jax.Array, kernel: jax.Array, n_in: int) -> jax.Array:
    """``x · kernel``, contracting x's trailing ``n_in`` dims with the kernel's leading ones, with a
    backward pass that hands XLA the weight gradient as a plain matmul.

    Autodiff's weight gradient contracts x and dy over their leading (token) dims; XLA:CPU lowers
    that by writing a transposed copy of dy, the larger operand ([N, F] for an MLP's gate and up
    projections), before the matmul (measured on the 4-layer, 256-wide bench model: a quarter of
    the backbone's backward time). Here the kernel's gradient is ``x^T @ dy`` with x flattened to
    [N, I] and transposed explicitly: the copy is of x, the smaller operand. Same products, same
    fp32 accumulation as the plain ``dot_general``; only the summation order may differ.
    """
    return _dense_forward(x, kernel, n_in)


def _dense_forward(x, kernel, n_in):
    contract = (tuple(range(x.ndim - n_in, x.ndim)), tuple(range(n_in)))
    return jax.lax.dot_general(x, kernel, (contract, ((), ())))


def _dense_fwd(x, kernel, n_in):
    return _dense_forward(x, kernel, n_in), (x, kernel)


def _dense_bwd(n_in, residuals, dy):
    x, kernel = residuals
    lead = x.ndim - n_in
    out_dims = tuple(range(n_in, kernel.ndim))
    dx = jax.lax.dot_general(dy, kernel, ((tuple(range(lead, dy.ndim)), out_dims), ((), ())))
    in_size = math.prod(kernel.shape[:n_in])
    x_IxN = x.reshape(-1, in_size).T
    dy_NxO = dy.reshape(x_IxN.shape[1], -1)
    d_kernel = jnp.matmul(x_IxN, dy_NxO).reshape(kernel.shape)
    return dx.astype(x.dtype), d_kernel.astype(kernel.dtype)


dense_dot.defvjp(_dense_fwd, _dense_bwd)


class Dense(nnx.Module):
    """y = x · W (+ b), contracting x's trailing `len(in_shape)` dims with W's leading ones.

    Kernels keep heads as their own dims (q: [D, H, Dh], o: [H, Dh, D]) so the head axis can be
    sharded by name; the HF loader reshapes the flat HF matrices into this layout.
    """

    def __init__(
        self,
        in_shape: Sequence[int],
        out_shape: Sequence[int],
        *,
        in_axes: Sequence[str | None],
        out_axes: Sequence[str | None],
        use_bias: bool,
        config: ModelConfig,
        rngs: nnx.Rngs,
        kernel_init: Initializer | None = None,
    ):
        self.in_shape = tuple(in_shape)
        self.out_shape = tuple(out_shape)
        self.dtype = config.dtype
        kernel_init = kernel_init or nnx.initializers.normal(config.initializer_range)
        self.kernel = make_param(
            rngs,
            kernel_init,
            self.in_shape + self.out_shape,
            config.param_dtype,
            tuple(in_axes) + tuple(out_axes),
        )
        self.bias = (
            make_param(rngs, nnx.initializers.zeros, self.out_shape, config.param_dtype, out_axes)
            if use_bias
            else None
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        y = dense_dot(x.astype(self.dtype), self.kernel[...].astype(self.dtype), len(self.in_shape))
        if self.bias is not None:
            y = y + self.bias[...].astype(self.dtype)
        return y


class Embed(nnx.Module):
    """Token embedding table [V, D]; also the output projection when embeddings are tied."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.dtype = config.dtype
        self.embedding = make_param(
            rngs,
            nnx.initializers.normal(config.initializer_range),
            (config.vocab_size, config.hidden_size),
            config.param_dtype,
            ("vocab", "embed"),
        )

    def __call__(self, ids_BxT: jax.Array) -> jax.Array:
        return jnp.take(self.embedding[...], ids_BxT, axis=0).astype(self.dtype)


def project_to_vocab(x_BxTxD: jax.Array, table_VxD: jax.Array) -> jax.Array:
    """Logits in fp32: operands in the compute dtype, accumulation and output in fp32.

    PPO ratios and KL terms are differences of log-probs, so the logits keep fp32 even under bf16
    compute.
    """
    logits = jnp.einsum(
        "btd,vd->btv", x_BxTxD, table_VxD.astype(x_BxTxD.dtype), preferred_element_type=jnp.float32
    )
    return constrain(logits, ("batch", "length", "act_vocab"))


class LMHead(nnx.Module):
    """Untied output embedding [V, D] (HF `lm_head.weight`, same layout)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.embedding = make_param(
            rngs,
            nnx.initializers.normal(config.initializer_range),
            (config.vocab_size, config.hidden_size),
            config.param_dtype,
            ("vocab", "embed"),
        )

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        return project_to_vocab(x_BxTxD, self.embedding[...])


class RMSNorm(nnx.Module):
    """x / rms(x) · scale, statistics in fp32, result in the input's dtype (as HF Qwen2/Llama)."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        self.eps = config.rms_norm_eps
        self.scale = make_param(
            rngs, nnx.initializers.ones, (config.hidden_size,), config.param_dtype, ("norm",)
        )

    def __call__(self, x: jax.Array) -> jax.Array:
        x32 = x.astype(jnp.float32)
        x32 = x32 * jax.lax.rsqrt(jnp.mean(x32 * x32, axis=-1, keepdims=True) + self.eps)
        return self.scale[...].astype(x.dtype) * x32.astype(x.dtype)


class MLP(nnx.Module):
    """SwiGLU: down(silu(gate(x)) · up(x))."""

    def __init__(self, config: ModelConfig, *, rngs: nnx.Rngs):
        d, f = config.hidden_size, config.intermediate_size
        kw = dict(use_bias=False, config=config, rngs=rngs)
        self.gate_proj = Dense((d,), (f,), in_axes=("embed",), out_axes=("mlp",), **kw)
        self.up_proj = Dense((d,), (f,), in_axes=("embed",), out_axes=("mlp",), **kw)
        self.down_proj = Dense((f,), (d,), in_axes=("mlp",), out_axes=("embed",), **kw)

    def __call__(self, x_BxTxD: jax.Array) -> jax.Array:
        h_BxTxF = jax.nn.silu(self.gate_proj(x_BxTxD)) * self.up_proj(x_BxTxD)
        h_BxTxF = constrain(h_BxTxF, ("batch", "length", "act_mlp"))
        return self.down_proj(h_BxTxF)
