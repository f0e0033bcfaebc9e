"""Building the run's models from config sections: presets sized to the tokenizer, checkpoints read
from a directory, reward heads, the critic and frozen copies, all directly on the mesh."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx
from jax.sharding import NamedSharding
from jax.sharding import PartitionSpec as P
from transformers import AutoTokenizer

from configs.sharding import RULES
from models import hf_io
from models.decoder import CausalLM
from models.heads import RewardModel, ValueModel
from models.sharding import make_mesh, use_mesh
from rl.config import ConfigError, ModelSpec
from rl.data.toy_tokenizer import toy_tokenizer
from rl.runtime import model_builder
from tests.models.hf_reference import jit_forward

QWEN_TOKENIZER = "models/assets/qwen2_tokenizer"
B, T = 4, 7
# Models built only to check their heads or buffers: one layer compiles in half the time.
ONE_LAYER = {"num_layers": 1}


@pytest.fixture(scope="module")
def tok():
    return toy_tokenizer()


@pytest.fixture(scope="module")
def mesh():
    return make_mesh((1, 4, 2))


@pytest.fixture(scope="module")
def ids(tok):
    return np.random.default_rng(0).integers(2, len(tok), size=(B, T)).astype(np.int32)


@pytest.fixture(scope="module")
def policy(tok, mesh):
    spec = ModelSpec.from_section("policy", {"preset": "tiny", "seed": 3})
    return model_builder.build_causal_lm(spec, tok, mesh, RULES)


def _forward(model, ids, mesh):
    with use_mesh(mesh, RULES):
        return np.asarray(jit_forward(model)(ids))


def test_model_config_sizes_a_preset_to_the_tokenizer(tok):
    spec = ModelSpec.from_section("policy", {"preset": "tiny", "dtype": "bfloat16", "remat": True})
    cfg = model_builder.model_config(spec, tok)
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id) == (
        27,
        1,
        0,
        None,
    )
    assert cfg.dtype == jnp.bfloat16 and cfg.param_dtype == jnp.float32 and cfg.remat
    assert (cfg.hidden_size, cfg.num_layers) == (64, 2)  # the preset's own sizes
    qwen = AutoTokenizer.from_pretrained(QWEN_TOKENIZER)
    cfg = model_builder.model_config(ModelSpec.from_section("prm", {"preset": "tiny"}), qwen)
    assert (cfg.vocab_size, cfg.eos_token_id, cfg.pad_token_id) == (151669, 151645, 151643)


def test_overrides_win_over_preset_and_tokenizer(tok):
    spec = ModelSpec.from_section(
        "policy",
        {"preset": "qwen2_like:128,3", "overrides": {"num_layers": 1, "vocab_size": 40}},
    )
    cfg = model_builder.model_config(spec, tok)
    assert (cfg.hidden_size, cfg.num_heads, cfg.num_layers, cfg.vocab_size) == (128, 2, 1, 40)
    with pytest.raises(ValueError, match=r"no field\(s\) \['layers'\]"):
        model_builder.model_config(
            ModelSpec.from_section("policy", {"preset": "tiny", "overrides": {"layers": 1}}), tok
        )


def test_build_causal_lm_from_a_preset_on_the_mesh(policy, tok, mesh, ids):
    assert isinstance(policy, CausalLM) and policy.config.vocab_size == len(tok)
    up = policy.backbone.layers[0].mlp.up_proj.kernel[...]
    assert up.sharding == NamedSharding(mesh, P("fsdp", "tensor"))
    logits = _forward(policy, ids, mesh)
    assert logits.shape == (B, T, len(tok)) and logits.dtype == np.float32


def test_build_causal_lm_from_a_checkpoint_directory(policy, tok, mesh, ids, tmp_path):
    hf_io.save_causal_lm(policy, tmp_path / "policy", tokenizer=tok)
    spec = ModelSpec.from_section("policy", {"path": str(tmp_path / "policy")})
    loaded = model_builder.build_causal_lm(spec, tok, mesh, RULES)
    np.testing.assert_allclose(_forward(loaded, ids, mesh), _forward(policy, ids, mesh), atol=1e-5)
    up = loaded.backbone.layers[0].mlp.up_proj.kernel[...]
    assert up.sharding == NamedSharding(mesh, P("fsdp", "tensor"))


def test_build_reward_model_from_a_preset(tok, mesh, ids):
    spec = ModelSpec.from_section("orm", {"preset": "tiny", "overrides": ONE_LAYER})
    model = model_builder.build_reward_model(spec, tok, mesh, RULES)
    assert isinstance(model, RewardModel) and model.head.kind == "scalar"  # the default kind
    assert model.config.vocab_size == len(tok) and model.config.num_layers == 1
    scores = _forward(model, ids, mesh)
    assert scores.shape == (B, T) and scores.dtype == np.float32


def test_token_prob_reward_model_reads_its_two_tokens(tok, mesh, ids):
    spec = ModelSpec.from_section(
        "prm",
        {
            "preset": "tiny",
            "kind": "token_prob",
            "good_token": "+",
            "bad_token": "-",
            "overrides": ONE_LAYER,
        },
    )
    model = model_builder.build_reward_model(spec, tok, mesh, RULES)
    assert (model.head.good_token_id, model.head.bad_token_id) == (12, 13)
    scores = _forward(model, ids, mesh)
    assert scores.shape == (B, T) and np.all((scores > 0) & (scores < 1))


@pytest.mark.parametrize(
    "tokens, key",
    [
        ({"good_token": "++", "bad_token": "-"}, r"config\.prm\.good_token='\+\+'"),
        ({"good_token": "+", "bad_token": "minus"}, r"config\.prm\.bad_token='minus'"),
        ({"good_token": "+"}, r"config\.prm\.bad_token=''"),
    ],
)
def test_token_prob_needs_single_tokens_and_names_the_key(tok, mesh, tokens, key):
    spec = ModelSpec.from_section("prm", {"preset": "tiny", "kind": "token_prob", **tokens})
    with pytest.raises(ConfigError, match=key + r": not a single token of the tokenizer"):
        model_builder.build_reward_model(spec, tok, mesh, RULES)


def test_token_prob_with_the_qwen_tokenizer(mesh):
    qwen = AutoTokenizer.from_pretrained(QWEN_TOKENIZER)
    spec = ModelSpec.from_section(
        "prm", {"preset": "tiny", "kind": "token_prob", "good_token": "+", "bad_token": "ки"}
    )
    with pytest.raises(ConfigError, match=r"config\.prm\.bad_token='ки'"):
        model_builder.build_reward_model(spec, qwen, mesh, RULES)


def test_build_critic_copies_the_policy_backbone_with_a_zero_head(policy, mesh, ids):
    critic = model_builder.build_critic(policy, mesh, RULES)
    assert isinstance(critic, ValueModel)
    values = _forward(critic, ids, mesh)
    assert values.shape == (B, T) and not values.any()  # zero-initialised value head
    pairs = zip(
        jax.tree.leaves(nnx.state(critic.backbone)),
        jax.tree.leaves(nnx.state(policy.backbone)),
        strict=True,
    )
    for c, p in pairs:
        np.testing.assert_array_equal(c, p)
        assert c.sharding == p.sharding and c is not p
    head = critic.v_head.out.kernel[...]
    assert head.sharding.mesh == mesh


def test_frozen_copy_has_its_own_buffers(tok, mesh):
    spec = ModelSpec.from_section("policy", {"preset": "tiny", "overrides": ONE_LAYER})
    original = model_builder.build_causal_lm(spec, tok, mesh, RULES)
    before = [(np.asarray(x), x.sharding) for x in jax.tree.leaves(nnx.state(original))]
    copy = model_builder.frozen_copy(original)
    # The trained original's buffers are donated to the update step; deleting them stands in.
    for leaf in jax.tree.leaves(nnx.state(original)):
        leaf.delete()
    after = jax.tree.leaves(nnx.state(copy))
    assert len(after) == len(before)
    for x, (value, sharding) in zip(after, before, strict=True):
        np.testing.assert_array_equal(x, value)
        assert x.sharding == sharding


def test_a_bfloat16_frozen_copy_stores_rounded_weights_and_computes_in_float32(tok, mesh, ids):
    spec = ModelSpec.from_section("policy", {"preset": "tiny", "overrides": ONE_LAYER, "seed": 5})
    original = model_builder.build_causal_lm(spec, tok, mesh, RULES)
    copy = model_builder.frozen_copy(original, "bfloat16")
    pairs = zip(jax.tree.leaves(nnx.state(original)), jax.tree.leaves(nnx.state(copy)), strict=True)
    for o, c in pairs:
        assert c.dtype == jnp.bfloat16 and c.sharding == o.sharding
        np.testing.assert_array_equal(np.asarray(c), np.asarray(o.astype(jnp.bfloat16)))
    full, half = _forward(original, ids, mesh), _forward(copy, ids, mesh)
    assert half.dtype == np.float32  # the compute dtype is the model's, not the storage's
    # Rounded weights move the logits by about bf16's relative precision (2^-8), no more.
    scale = np.abs(full).max()
    assert 0 < np.abs(half - full).max() < 2**-6 * scale


def test_reference_param_dtype_is_the_policy_sections_only():
    assert ModelSpec.from_section("policy", {"reference_param_dtype": "bfloat16"})
    with pytest.raises(ConfigError, match=r"config.prm.reference_param_dtype='bfloat16': only"):
        ModelSpec.from_section("prm", {"reference_param_dtype": "bfloat16"})
    with pytest.raises(ConfigError, match=r"config.policy.reference_param_dtype='fp16': must be"):
        ModelSpec.from_section("policy", {"reference_param_dtype": "fp16"})
