"""Which models a PPO run builds: the critic only under GAE, the implicit PRM's reference and its
beta as saved with it."""

import jax
import pytest
from flax import nnx

from configs import smoke
from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.reward_io import save_reward_model
from models.sharding import make_mesh
from rl.config import ConfigError, RLConfig
from rl.rollout.tokenizer import load_tokenizer
from rl.trainers.ppo_models import build_ppo_models, check_implicit_beta, saved_implicit_beta


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
