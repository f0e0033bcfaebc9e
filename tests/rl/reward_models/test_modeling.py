"""The models a reward-model run trains: the logit under the saved probability, the backbone copied
from the policy with its own buffers (or deepened above it), and the constructor's argument
errors."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from models.decoder import CausalLM
from models.reward_io import load_reward_model, save_reward_model
from rl.reward_models import modeling


@pytest.mark.parametrize("head", ["scalar", "two_class"])
def test_trained_logit_is_what_the_model_squashes(model_config, head):
    model = modeling.new_reward_model(model_config, head=head, seed=3)
    out = model.score.out
    out.kernel[...] = jax.random.normal(jax.random.key(0), out.kernel.shape)
    ids = jax.random.randint(jax.random.key(1), (2, 9), 2, model_config.vocab_size)
    mask = jnp.ones((2, 9), bool)
    graphdef = nnx.graphdef(model)

    @jax.jit
    def both(state):
        m = nnx.merge(graphdef, state)
        return m(ids, mask), jax.nn.sigmoid(modeling.head_logits(m, ids, mask))

    scores, squashed_logits = both(nnx.state(model))
    np.testing.assert_allclose(scores, squashed_logits, atol=1e-6)
    assert model.head.sigmoid == (head == "scalar")


def test_reward_model_starts_from_a_copy_of_the_policy_backbone(model_config):
    policy = CausalLM(model_config, rngs=nnx.Rngs(5))
    prm = modeling.new_reward_model(policy=policy, head="scalar")
    ours, theirs = nnx.state(prm.backbone), nnx.state(policy.backbone)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b  # own buffers: the train step donates them
    assert not np.any(prm.score.out.kernel[...]) and prm.head.sigmoid


def test_implicit_prm_is_a_copy_of_the_reference(model_config):
    reference = CausalLM(model_config, rngs=nnx.Rngs(6))
    pi = modeling.new_implicit_prm(reference)
    assert isinstance(pi, CausalLM) and pi is not reference
    ours, theirs = nnx.state(pi), nnx.state(reference)
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(theirs), strict=True):
        np.testing.assert_array_equal(a, b)
        assert a is not b


def test_constructor_errors_are_named(model_config):
    with pytest.raises(ValueError, match=r"head='token_prob': must be one of \('scalar'"):
        modeling.new_reward_model(model_config, head="token_prob")
    with pytest.raises(ValueError, match="exactly one of config= or policy="):
        modeling.new_reward_model()
    policy = CausalLM(model_config, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="exactly one of config= or policy="):
        modeling.new_reward_model(model_config, policy=policy)


def test_deeper_reward_model_starts_computing_the_policys_hidden_states(
    model_config, tok, tmp_path
):
    policy = CausalLM(model_config, rngs=nnx.Rngs(7))
    prm = modeling.new_reward_model(policy=policy, extra_layers=2, seed=1)
    assert prm.config.num_layers == model_config.num_layers + 2
    assert len(prm.backbone.layers) == model_config.num_layers + 2
    ids = jax.random.randint(jax.random.key(2), (2, 11), 2, model_config.vocab_size)
    mask = jnp.ones((2, 11), bool).at[0, :3].set(False)
    # The added layers are residual identities: the same final hidden states as the policy's.
    np.testing.assert_array_equal(prm.backbone(ids, mask), policy.backbone(ids, mask))
    for a, b in zip(
        jax.tree.leaves(nnx.state(prm.backbone.layers[0])),
        jax.tree.leaves(nnx.state(policy.backbone.layers[0])),
        strict=True,
    ):
        assert a is not b  # own buffers
    # Once trained (here: perturbed), the added layers change the scores, and the deeper model
    # saves and loads like any reward model.
    top = prm.backbone.layers[-1].mlp.down_proj
    top.kernel[...] = jax.random.normal(jax.random.key(3), top.kernel.shape) * 0.1
    prm.score.out.kernel[...] = jax.random.normal(jax.random.key(4), prm.score.out.kernel.shape)
    assert not np.allclose(prm.backbone(ids, mask), policy.backbone(ids, mask))
    save_reward_model(prm, tmp_path / "prm", kind="prm", tokenizer=tok)
    loaded = load_reward_model(tmp_path / "prm")[0]
    np.testing.assert_allclose(loaded(ids, mask), prm(ids, mask), atol=1e-6)


def test_extra_layers_errors_are_named(model_config):
    policy = CausalLM(model_config, rngs=nnx.Rngs(0))
    with pytest.raises(ValueError, match="extra_layers=-1: must be an int >= 0"):
        modeling.new_reward_model(policy=policy, extra_layers=-1)
    with pytest.raises(ValueError, match="extra_layers=2: needs policy="):
        modeling.new_reward_model(model_config, extra_layers=2)
