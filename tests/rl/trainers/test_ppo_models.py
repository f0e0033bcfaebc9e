"""Which models a PPO run builds: the critic only under GAE, the implicit PRM's reference and its
beta as saved with it."""

import jax
import pytest
from flax import nnx

from configs import smoke
from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel
from models.likelihood_prm import LikelihoodPRM
from models.reward_io import save_reward_model
from models.sharding import make_mesh
from rl.config import ConfigError, RLConfig
from rl.rollout.tokenizer import load_tokenizer
from rl.trainers.ppo_models import (
    build_ppo_models,
    check_implicit_beta,
    same_parameters,
    saved_implicit_beta,
)


@pytest.fixture(scope="module")
def implicit_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("implicit")
    config = ModelConfig.from_dict(presets.tiny(num_layers=1).to_dict())
    save_reward_model(CausalLM(config, rngs=nnx.Rngs(0)), path, kind="implicit_prm", beta=0.1)
    return path


def _config(**reward):
    cfg = smoke.get_config()
    for key, value in reward.items():
        cfg.reward[key] = value
    return cfg


def test_the_saved_beta_is_read_and_a_different_configured_beta_is_an_error(implicit_dir):
    cfg = _config(implicit_prm_weight=1.0, implicit_prm_beta=0.05)
    cfg.implicit_prm.path = str(implicit_dir)
    run = RLConfig.from_config_dict(cfg)
    assert saved_implicit_beta(run.implicit_prm) == 0.1
    with pytest.raises(ConfigError) as err:
        check_implicit_beta(run)
    assert "config.reward.implicit_prm_beta=0.05: the implicit PRM at" in str(err.value)
    assert "trained with beta=0.1" in str(err.value)
    cfg.reward.implicit_prm_beta = 0.1
    check_implicit_beta(RLConfig.from_config_dict(cfg))  # agrees: no error
    cfg.implicit_prm.path, cfg.implicit_prm.preset = "", "tiny"  # nothing recorded: no check
    run = RLConfig.from_config_dict(cfg)
    assert saved_implicit_beta(run.implicit_prm) is None
    check_implicit_beta(run)


@pytest.mark.parametrize("estimator, has_critic", [("gae", True), ("rloo", False)])
def test_a_critic_is_built_under_gae_only(estimator, has_critic):
    cfg = smoke.get_config()
    cfg.ppo.advantage = estimator
    cfg.reward.kl_in = "loss"
    run = RLConfig.from_config_dict(cfg)
    tokenizer = load_tokenizer(run.tokenizer, run.policy.path, dataset=run.data.dataset)
    built = build_ppo_models(run, tokenizer, make_mesh(run.mesh.shape), run.mesh.rules)
    assert (built.state.critic is not None) == has_critic
    assert (built.critic_tx is not None) == has_critic
    assert (built.models.critic is not None) == has_critic
    assert set(built.frozen_defs) == {"ref", "prm"}  # smoke: a PRM, no ORM / implicit PRM
    same = jax.tree.map(
        lambda a, b: bool((a == b).all()), built.state.policy, built.frozen_params["ref"]
    )
    assert all(jax.tree.leaves(same))  # the reference starts as the policy


def test_same_parameters_compares_every_array_by_path():
    config = ModelConfig.from_dict(presets.tiny(num_layers=1).to_dict())
    a = nnx.state(CausalLM(config, rngs=nnx.Rngs(0)))
    assert same_parameters(a, jax.tree.map(lambda x: x.copy(), a))
    assert not same_parameters(a, nnx.state(CausalLM(config, rngs=nnx.Rngs(1))))
    one_changed = jax.tree.map(lambda x: x.copy(), a)
    leaf = one_changed["backbone"]["norm"]["scale"]
    leaf[...] = leaf[...].at[0].add(1e-6)
    assert not same_parameters(a, one_changed)
    assert not same_parameters(a, jax.tree.map(lambda x: x.astype("bfloat16"), a))
    deeper = ModelConfig.from_dict(presets.tiny(num_layers=2).to_dict())
    assert not same_parameters(a, nnx.state(CausalLM(deeper, rngs=nnx.Rngs(0))))


@pytest.mark.parametrize("lm_is_policy", [True, False])
def test_a_likelihood_prm_reading_the_reference_is_marked_for_reuse(tmp_path, lm_is_policy):
    """The default's PRM reads the SFT policy, which is PPO's reference: build_ppo_models marks
    it so that scoring takes the reference's log-probs instead of a second pass; an LM with other
    parameters is scored on its own."""
    cfg = smoke.get_config()
    run = RLConfig.from_config_dict(cfg)
    tokenizer = load_tokenizer(run.tokenizer, run.policy.path, dataset=run.data.dataset)
    mesh = make_mesh(run.mesh.shape)
    first = build_ppo_models(run, tokenizer, mesh, run.mesh.rules)
    policy = nnx.merge(first.frozen_defs["ref"], first.frozen_params["ref"])
    config = policy.config
    lm = CausalLM(config, rngs=nnx.Rngs(7))
    if lm_is_policy:
        nnx.update(lm, jax.tree.map(lambda x: x.copy(), nnx.state(policy)))
    head = RewardModel(config, "scalar", rngs=nnx.Rngs(3), sigmoid=True, head_bias=True)
    save_reward_model(LikelihoodPRM(head, lm, (0.5, 1.0, 0.0)), tmp_path / "prm", kind="prm")
    cfg.prm.preset, cfg.prm.path = "", str(tmp_path / "prm")
    run = RLConfig.from_config_dict(cfg)
    built = build_ppo_models(run, tokenizer, mesh, run.mesh.rules)
    assert built.prm_lm_is_ref == lm_is_policy
