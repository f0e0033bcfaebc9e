"""launch.memory.resolve: a config resolved for another slice keeps what the command line set."""

from configs import qwen2_1p5b, smoke, topologies
from launch.memory.resolve import config_for

PATH = "configs/qwen2_1p5b.py"


def test_the_configs_own_slice_is_the_config_itself():
    cfg = qwen2_1p5b.get_config()
    assert config_for(cfg.topology, cfg, PATH, {}) is cfg


def test_a_config_that_lists_slices_is_rebuilt_with_the_overrides():
    cfg = qwen2_1p5b.get_config()
    overrides = {"data.prompts_per_batch": 8, "policy.preset": "qwen2_like:64,2"}
    new = config_for("v4-64", cfg, PATH, overrides)
    expected = qwen2_1p5b.get_config("v4-64")
    assert new.topology == "v4-64" and tuple(new.mesh.shape) == tuple(expected.mesh.shape)
    assert new.data.prompts_per_batch == 8 and new.policy.preset == "qwen2_like:64,2"
    assert cfg.topology != "v4-64"  # the given config is left as it was


def test_any_other_config_takes_the_slices_default_mesh():
    cfg = smoke.get_config()
    new = config_for("v4-16", cfg, "configs/smoke.py", {})
    assert new.topology == "v4-16"
    assert tuple(new.mesh.shape) == topologies.mesh_shape("v4-16") == (1, 8, 1)
    assert tuple(cfg.mesh.shape) == (1, -1, 1) and "topology" not in cfg
    assert new.policy.preset == cfg.policy.preset
