"""Mesh rules, sharded creation and loading, and sharded == single-device numerics (8 fake CPUs)."""

import jax
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P

from configs.sharding import RULES
from models import hf_io, sharding
from models.decoder import CausalLM, cache_shardings, init_cache
from models.heads import ValueModel
from tests.models.hf_reference import hf_logits, jit, jit_forward, left_padded, max_abs

SIZES = {"data": 2, "fsdp": 2, "tensor": 2}


def test_rules_map_dedupe_and_fall_back_on_divisibility():
    spec = sharding.logical_to_spec
    assert spec(("embed", "mlp"), RULES, SIZES, (8, 8)) == P("fsdp", "tensor")
    assert spec(("batch", "length", "act_embed"), RULES, SIZES, (8, 3, 4)) == P(
        ("data", "fsdp"), None, None
    )
    # Batch 2 is not divisible by data*fsdp=4: keep the longest prefix that divides.
    assert spec(("batch", "length"), RULES, SIZES, (2, 3)) == P("data", None)
    # 3 KV heads cannot split over tensor=2: replicated.
    assert spec(("embed", "kv_heads", "head_dim"), RULES, SIZES, (8, 3, 4)) == P("fsdp", None, None)
    # A mesh axis is used once per array.
    assert spec(("embed", "embed"), RULES, SIZES, (8, 8)) == P("fsdp", None)
    # Mesh axes the mesh lacks, or of size 1, are skipped.
    assert spec(("vocab", "embed"), RULES, {"fsdp": 4}, (8, 8)) == P(None, "fsdp")
    assert spec(("vocab", "embed"), RULES, {"fsdp": 4, "tensor": 1}, (8, 8)) == P(None, "fsdp")
    with pytest.raises(KeyError, match="'embd'"):
        spec(("embd",), RULES, SIZES)


def test_make_mesh_fills_minus_one():
    mesh = sharding.make_mesh((2, -1, 1))
    assert dict(mesh.shape) == {"data": 2, "fsdp": 4, "tensor": 1}
    with pytest.raises(ValueError, match="at most one -1"):
        sharding.make_mesh((-1, -1, 1))
    with pytest.raises(ValueError, match="needs 6 devices"):
        sharding.make_mesh((2, 3, 1))


@pytest.mark.parametrize("shape", [(2, 4, 1), (1, 2, 4)], ids=["data2_fsdp4", "fsdp2_tensor4"])
def test_sharded_forward_equals_single_device(tiny_config, tiny_model, tiny_forward, shape):
    mesh = sharding.make_mesh(shape)
    if shape == (1, 2, 4):
        # Same seed as the single-device `tiny_model`: sharded init must give the same parameters.
        sharded = sharding.create_sharded(
            lambda: CausalLM(tiny_config, rngs=nnx.Rngs(0)), mesh, RULES
        )
    else:
        sharded = sharding.shard_model(nnx.clone(tiny_model), mesh, RULES)

    q = sharded.backbone.layers[0].self_attn.q_proj.kernel[...]
    k = sharded.backbone.layers[0].self_attn.k_proj.kernel[...]
    if shape == (1, 2, 4):
        assert q.sharding.spec == P("fsdp", "tensor", None)  # 4 heads over tensor=4
        assert k.sharding.spec == P("fsdp", None, None)  # 2 KV heads cannot: replicated
    else:
        assert q.sharding.spec == P("fsdp", None, None)  # tensor=1 is dropped
    embedding = sharded.backbone.embed_tokens.embedding[...]
    assert len(embedding.addressable_shards) == 8
    assert embedding.addressable_shards[0].data.size < embedding.size

    rng = np.random.default_rng(0)
    ids, mask = left_padded(
        rng, batch=8, length=12, pads=(0, 1, 2, 3, 4, 5, 6, 7), vocab=tiny_config.vocab_size
    )
    expected = tiny_forward(ids, mask)
    batch = sharding.array_sharding(("batch", "length"), ids.shape, mesh, RULES)
    with sharding.use_mesh(mesh, RULES):
        got = jit_forward(sharded)(jax.device_put(ids, batch), jax.device_put(mask, batch))
    assert got.sharding.spec[0] == batch.spec[0] == (("data", "fsdp") if shape[0] > 1 else "fsdp")
    real = mask.astype(bool)
    assert np.abs(np.asarray(got)[real] - np.asarray(expected)[real]).max() < 1e-5


def test_sharded_decode_with_sharded_cache(tiny_config, tiny_model, tiny_forward):
    mesh = sharding.make_mesh((1, 2, 4))
    model = sharding.shard_model(nnx.clone(tiny_model), mesh, RULES)
    ids = np.random.default_rng(0).integers(1, tiny_config.vocab_size, (4, 6)).astype(np.int32)
    cache = init_cache(tiny_config, 4, 8)
    cache = jax.device_put(cache, cache_shardings(cache, mesh, RULES))
    assert cache.k.sharding.spec == P(None, "fsdp", None, None, None)
    graphdef, state = nnx.split(model)
    with sharding.use_mesh(mesh, RULES):
        logits, cache = jit(lambda s, i, c: nnx.merge(graphdef, s).decode(i, None, c))(
            state, ids, cache
        )
    assert max_abs(logits, tiny_forward(ids)) < 1e-5


def test_load_directly_sharded(qwen2_hf, qwen2_dir, monkeypatch):
    mesh = sharding.make_mesh((2, 2, 2))
    reads = {}
    read = hf_io.Checkpoint.read

    def recording_read(self, name, index):
        block = read(self, name, index)
        reads.setdefault(name, []).append(block.size)
        return block

    monkeypatch.setattr(hf_io.Checkpoint, "read", recording_read)
    model = hf_io.load_causal_lm(qwen2_dir, mesh=mesh, rules=RULES)
    # Each device's block is read from disk, never the whole tensor; replicas (data=2) share a read.
    up_reads = reads["model.layers.1.mlp.up_proj.weight"]
    assert len(up_reads) == 4 and max(up_reads) == 64 * 96 // 4
    up = model.backbone.layers[1].mlp.up_proj.kernel[...]
    assert up.sharding == NamedSharding(mesh, P("fsdp", "tensor"))
    o = model.backbone.layers[0].self_attn.o_proj.kernel[...]
    assert o.sharding.spec == P("tensor", None, "fsdp")
    ids = np.random.default_rng(5).integers(0, 128, (4, 10)).astype(np.int32)
    with sharding.use_mesh(mesh, RULES):
        out = jit_forward(model)(ids)
    assert max_abs(out, hf_logits(qwen2_hf, ids)) < 1e-4
    with pytest.raises(ValueError, match="rules"):
        hf_io.load_causal_lm(qwen2_dir, mesh=mesh)


def test_value_model_from_sharded_policy_keeps_shardings(tiny_model):
    mesh = sharding.make_mesh((2, 4, 1))
    policy = sharding.shard_model(nnx.clone(tiny_model), mesh, RULES)
    critic = sharding.shard_model(ValueModel.from_policy(policy), mesh, RULES)
    p = policy.backbone.layers[0].mlp.gate_proj.kernel[...]
    c = critic.backbone.layers[0].mlp.gate_proj.kernel[...]
    assert c.sharding == p.sharding and c is not p
    assert critic.v_head.out.kernel[...].sharding.mesh == mesh
