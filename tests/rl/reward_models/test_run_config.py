"""The reward-model run's config: bad keys are named, and a run that needs a policy says so."""

import pytest

from configs import rm_smoke
from rl.config import ConfigError
from rl.reward_models.run_config import RMRunConfig


def test_config_errors_name_the_key():
    cfg = rm_smoke.get_config()
    cfg.data.source = "nope"
    with pytest.raises(ConfigError, match=r"config.data.source='nope'"):
        RMRunConfig.from_config_dict(cfg)
    cfg = rm_smoke.get_config("implicit_prm")
    cfg.policy.preset = ""
    with pytest.raises(ConfigError, match=r"config.policy.path"):
        RMRunConfig.from_config_dict(cfg)
    cfg = rm_smoke.get_config("value")
    with pytest.raises(ConfigError, match=r"config.kind='value'"):
        RMRunConfig.from_config_dict(cfg)


def test_smoke_config_sections_and_mesh_rules():
    run = RMRunConfig.from_config_dict(rm_smoke.get_config())
    assert run.train.kind == "prm" and run.data.source == "synthetic" and not run.needs_policy
    assert run.mesh.rules and all(isinstance(rule, tuple) for rule in run.mesh.rules)
    assert RMRunConfig.from_config_dict(rm_smoke.get_config("implicit_prm")).needs_policy
    cfg = rm_smoke.get_config()
    cfg.train.kind = "orm"
    with pytest.raises(
        ConfigError, match=r"config.train.kind='orm': set the top-level config.kind"
    ):
        RMRunConfig.from_config_dict(cfg)
