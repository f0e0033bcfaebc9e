"""launch.memory.analytic: state bytes are the shard shapes of the rules, and the tiny run's count
matches the bytes worked out by hand (tests/launch/memory/tiny.py gives the model's)."""

import dataclasses
import math

import jax
from flax import nnx

from configs.sharding import RULES
from launch.memory import analytic as an
from models import presets as model_presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.sharding import make_mesh, state_shardings
from tests.launch.memory.tiny import CRITIC_BYTES, POLICY_BYTES

ONE = {"data": 1, "fsdp": 1, "tensor": 1}


def test_analytic_bytes_are_the_shard_shapes_of_the_rules():
    values = model_presets.get_config("qwen2_like:64,2").to_dict()
    config = ModelConfig.from_dict(values)
    _, state = nnx.split(nnx.eval_shape(lambda: CausalLM(config, rngs=nnx.Rngs(0))))
    for shape in ((1, 8, 1), (2, 2, 2), (1, 2, 4)):
        mesh = make_mesh(shape)
        shardings = state_shardings(state, mesh, RULES)
        exact = sum(
            math.prod(s.shard_shape(a.shape)) * a.dtype.itemsize
            for a, s in zip(jax.tree.leaves(state), jax.tree.leaves(shardings), strict=True)
        )
        assert an.state_bytes(state, dict(mesh.shape), RULES) == exact


def test_shard_factor_skips_mesh_axes_a_dim_does_not_divide():
    sizes = {"data": 2, "fsdp": 4, "tensor": 4}
    assert an.shard_factor(("vocab", "embed"), (256, 64), sizes, RULES) == 4 * 4
    assert an.shard_factor(("embed",), (63,), sizes, RULES) == 1
    # batch -> (data, fsdp): 4 rows do not split 8 ways, so fsdp is dropped and data keeps 2.
    assert an.shard_factor(("batch",), (4,), sizes, RULES) == 2
    assert an.shard_factor(("norm",), (64,), sizes, RULES) == 1


def test_tiny_policy_bytes_by_hand(tiny_models):
    state = tiny_models["policy"].state
    assert an.state_bytes(state, ONE, RULES) == POLICY_BYTES
    # fsdp=2 halves every array with an `embed` dim (embedding, projections, MLP: 196,608
    # parameters); the q/k/v biases and norm scales (704) stay whole.
    sizes = {"data": 1, "fsdp": 2, "tensor": 1}
    assert an.state_bytes(state, sizes, RULES) == (196_608 // 2 + 704) * 4


def test_tiny_run_analytic_count_by_hand(tiny_models, tiny_rl):
    est = an.analytic(tiny_models, tiny_rl, ONE)
    trained = POLICY_BYTES + CRITIC_BYTES
    assert est["params"] == {"policy": POLICY_BYTES, "critic": CRITIC_BYTES, "ref": POLICY_BYTES}
    assert est["adam"] == 2 * trained
    assert est["resident"] == trained + 2 * trained + POLICY_BYTES
    # 4 rows of S = 12 tokens (int32 + bool) and R = 4 response tokens (bool + 5 fp32 arrays) ...
    assert est["minibatch"] == 4 * (12 * 5 + 4 * 21)
    # ... and for the rollout kept through the updates, 3 masks and 7 fp32 arrays per token.
    assert est["rollout_buffers"] == 4 * (12 * 5 + 4 * 31)
    # K and V, 2 layers, 1 KV head of 64, fp32: the 2 prompts' 8 tokens in two layouts, plus the
    # 4 rows' R - 1 = 3 decode slots.
    assert est["kv_cache"] == 2 * 2 * 2 * 8 * 64 * 4 * 2 + 2 * 2 * 4 * 64 * 3 * 4

    # One layer's activations for 4 x 12 tokens: per token q, k, v (3 * 64), SwiGLU (3 * 384),
    # residuals (4 * 64), all fp32, plus 12 fp32 scores and probabilities.
    layer = 4 * 12 * ((3 * 64 + 3 * 384 + 4 * 64) * 4 + 12 * 8)
    layer_weights = 2 * (4 * 64 * 64 + 3 * 64 * 384)  # both layers' matmul weights, no LM head
    update = est["programs"]["update"]
    assert update["transient"] == {
        "unsharded layer weight gradients (pre reduce-scatter)": layer_weights * 4,
        "layer activations kept for backward": 2 * 2 * layer,  # no remat: every layer, both models
        "one layer recomputed + its gradients": 2 * layer,
        # the head over the R = 4 response positions, one chunk (the whole 256 vocabulary) of
        # logits, probabilities and gradient, and the head's fp32 gradient
        "LM head: vocabulary chunks (fp32) + its gradient": 3 * 4 * 4 * 256 * 4 + 256 * 64 * 4,
        "gradient accumulators + microbatch gradients": 2 * trained,
        "optimizer update tree": trained,
        "all-gathered embedding / LM head": 256 * 64 * 4,
    }
    assert update["args"] == trained + 2 * trained + est["minibatch"]
    assert update["others"] == POLICY_BYTES + est["rollout_buffers"]
    assert update["peak"] == 13_018_680 - 2 * 4 * 12 * 256 * 4 + 3 * 4 * 4 * 256 * 4 + 256 * 64 * 4

    sample, score = est["programs"]["sample"], est["programs"]["score"]
    assert sample["args"] == POLICY_BYTES + 2 * 8 * 5
    assert sample["others"] == est["resident"] - POLICY_BYTES
    assert sample["transient"]["decode: logits and sampling (fp32)"] == 2 * 4 * 256 * 4
    assert sample["transient"]["outputs: tokens, log-probs, masks"] == 4 * 4 * 13
    assert score["args"] == trained + POLICY_BYTES + 4 * (12 * 5 + 4)
    assert score["others"] == est["adam"]
    for prog in est["programs"].values():
        assert prog["peak"] == prog["args"] + sum(prog["transient"].values()) + prog["others"]


def test_scoring_in_blocks_counts_one_blocks_activations(tiny_models, tiny_rl):
    """rollout.score_rows = 2: the 4 rollout rows are scored 2 at a time, so the score program's
    activations are half the one-pass count; its outputs stay the whole rollout's."""
    blocks = dataclasses.replace(
        tiny_rl, rollout=dataclasses.replace(tiny_rl.rollout, score_rows=2)
    )
    whole = an.analytic(tiny_models, tiny_rl, ONE)["programs"]["score"]["transient"]
    half = an.analytic(tiny_models, blocks, ONE)["programs"]["score"]["transient"]
    logits = "log-probs: one vocabulary chunk of one LM (fp32)"
    assert (whole[logits], half[logits]) == (2 * 4 * 4 * 256 * 4, 2 * 2 * 4 * 256 * 4)
    layer = "largest model: one layer's activations + hidden states"
    assert half[layer] * 2 == whole[layer]
    assert half["outputs"] == whole["outputs"]
