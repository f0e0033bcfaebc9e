"""CausalLM behaviour beyond HF equivalence: padding, packed rows, remat, dtypes, parameter
metadata."""

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.decoder import CausalLM
from tests.models.hf_reference import build, jit, jit_apply, left_padded, max_abs


def test_left_padding_does_not_change_real_tokens(tiny_forward, tiny_config):
    fwd = tiny_forward
    ids, mask = left_padded(np.random.default_rng(0), 2, 10, (0, 4), tiny_config.vocab_size)
    padded = np.asarray(fwd(ids, mask))
    alone = np.asarray(fwd(ids[1:, 4:]))
    assert np.abs(padded[1, 4:] - alone[0]).max() < 1e-5
    assert padded.dtype == np.float32 and padded.shape == (2, 10, tiny_config.vocab_size)


def test_a_packed_row_gives_each_sequence_its_own_logits(tiny_forward, tiny_model, tiny_config):
    """Two sequences in one row (segment ids 1 and 2, positions restarting, one pad): each token's
    logits are those of its sequence run alone."""
    rng = np.random.default_rng(3)
    a, b = (rng.integers(1, tiny_config.vocab_size, (1, n)).astype(np.int32) for n in (5, 4))
    ids = np.concatenate([a, b, np.zeros((1, 1), np.int32)], axis=1)
    segments = np.array([[1] * 5 + [2] * 4 + [0]], np.int32)
    positions = np.array([list(range(5)) + list(range(4)) + [0]], np.int32)
    packed = jit_apply(tiny_model, lambda m, i, s, p: m(i, s > 0, p, s))(ids, segments, positions)
    assert max_abs(packed[:, :5], tiny_forward(a)) < 1e-5
    assert max_abs(packed[:, 5:9], tiny_forward(b)) < 1e-5
    unpacked = tiny_forward(ids, segments > 0)  # without segments, b would attend to a
    assert max_abs(unpacked[:, 5:9], tiny_forward(b)) > 1e-3


def test_hidden_feeds_logits(tiny_model, tiny_forward, tiny_config):
    ids = np.arange(8, dtype=np.int32).reshape(1, 8)
    hidden, logits = jit_apply(
        tiny_model, lambda m, i: (m.hidden(i), m.logits_from_hidden(m.hidden(i)))
    )(ids)
    assert hidden.shape == (1, 8, tiny_config.hidden_size)
    assert max_abs(logits, tiny_forward(ids)) == 0.0
    np.testing.assert_array_equal(
        tiny_model.output_embedding(),  # Tied: the input embedding.
        tiny_model.backbone.embed_tokens.embedding[...],
    )


def test_remat_same_values_and_gradients(tiny_model, tiny_config):
    ids = np.random.default_rng(1).integers(0, tiny_config.vocab_size, (2, 8)).astype(np.int32)
    state = nnx.state(tiny_model, nnx.Param)

    def loss_and_grad(config):
        graphdef = nnx.graphdef(nnx.eval_shape(lambda: CausalLM(config, rngs=nnx.Rngs(0))))

        def loss(s):
            return jnp.mean(jax.nn.log_softmax(nnx.merge(graphdef, s)(ids))[..., 0])

        fn = jax.value_and_grad(loss)
        assert ("remat" in str(jax.make_jaxpr(fn)(state))) == config.remat
        return jit(fn)(state)

    (l0, g0), (l1, g1) = loss_and_grad(tiny_config), loss_and_grad(tiny_config.replace(remat=True))
    assert abs(float(l0) - float(l1)) < 1e-6
    assert (
        max(float(jnp.abs(a - b).max()) for a, b in zip(jax.tree.leaves(g0), jax.tree.leaves(g1)))
        < 1e-6
    )


def test_dtype_policy(tiny_config, tiny_forward):
    cfg = tiny_config.replace(dtype="bfloat16", param_dtype="float32")
    model = build(lambda: CausalLM(cfg, rngs=nnx.Rngs(0)))
    assert all(v.dtype == jnp.float32 for v in jax.tree.leaves(nnx.state(model, nnx.Param)))
    ids = np.arange(8, dtype=np.int32).reshape(1, 8)
    hidden, logits = jit_apply(model, lambda m, i: (m.hidden(i), m(i)))(ids)
    assert hidden.dtype == jnp.bfloat16 and logits.dtype == jnp.float32
    assert max_abs(logits, tiny_forward(ids)) < 0.1


def test_every_parameter_has_logical_axes(tiny_config):
    model = nnx.eval_shape(
        lambda: CausalLM(tiny_config.replace(tie_word_embeddings=False), rngs=nnx.Rngs(0))
    )
    axes = {}
    for path, var in nnx.to_flat_state(nnx.state(model, nnx.Param)):
        names = var.get_metadata().get("out_sharding")
        assert names is not None and len(names) == var.ndim, path
        axes[".".join(map(str, path))] = names
    assert axes["backbone.embed_tokens.embedding"] == ("vocab", "embed")
    assert axes["backbone.layers.1.self_attn.q_proj.kernel"] == ("embed", "heads", "head_dim")
    assert axes["backbone.layers.1.self_attn.k_proj.kernel"] == ("embed", "kv_heads", "head_dim")
    assert axes["backbone.layers.1.self_attn.o_proj.kernel"] == ("heads", "head_dim", "embed")
    assert axes["backbone.layers.1.mlp.gate_proj.kernel"] == ("embed", "mlp")
    assert axes["backbone.layers.1.mlp.down_proj.kernel"] == ("mlp", "embed")
    assert axes["lm_head.embedding"] == ("vocab", "embed")
