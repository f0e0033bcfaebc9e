"""The rollout's rows split into minibatches, microbatches and scoring blocks: ppo.microbatch_rows
derives the number of microbatches, and every count that does not divide is a ConfigError naming
the key and its value, raised by RLConfig before any device is touched (the mesh checks once the
mesh is known)."""

import dataclasses
import json

import pytest

from configs import brorl, smoke
from rl.config import ConfigError, RLConfig
from rl.config_batch import check_mesh_split, split_batch


def test_microbatch_rows_derive_the_number_of_microbatches():
    """The BroRL config: 2 prompts x 256 samples = 512 rows, 2 minibatches of 256, 64 rows per
    microbatch: 4 microbatches; at 512 samples the microbatch keeps its 64 rows (8 of them)."""
    run = RLConfig.from_config_dict(brorl.get_config())
    assert (run.data.prompts_per_batch, run.data.samples_per_prompt) == (2, 256)
    assert (run.ppo.microbatch_rows, run.ppo.microbatches) == (64, 4)
    assert dataclasses.astuple(split_batch(run.data, run.ppo)) == (512, 256, 4, 64)
    wide = RLConfig.from_config_dict(brorl.get_config("512"))
    assert (wide.ppo.microbatches, split_batch(wide.data, wide.ppo).micro_rows) == (8, 64)
    small = RLConfig.from_config_dict(brorl.get_config("8"))  # 8 rows per minibatch
    assert (small.ppo.microbatch_rows, small.ppo.microbatches) == (8, 1)


def test_a_resolved_config_read_back_is_accepted():
    """config.json holds the derived microbatches next to microbatch_rows: consistent, so valid."""
    run = RLConfig.from_config_dict(brorl.get_config())
    saved = json.loads(run.to_json())
    cfg = brorl.get_config()
    cfg.ppo.microbatches = saved["ppo"]["microbatches"]
    assert RLConfig.from_config_dict(cfg).ppo == run.ppo


def test_without_microbatch_rows_the_microbatches_are_as_given():
    cfg = smoke.get_config()  # 4 prompts x 2 samples, 2 minibatches
    cfg.ppo.microbatches = 2
    run = RLConfig.from_config_dict(cfg)
    assert run.ppo.microbatches == 2
    assert dataclasses.astuple(split_batch(run.data, run.ppo)) == (8, 4, 2, 2)


@pytest.mark.parametrize(
    "values, message",
    [
        (
            {"ppo.minibatches": 3},
            "config.ppo.minibatches=3: must divide the 8 rollout rows "
            "(data.prompts_per_batch=4 x data.samples_per_prompt=2)",
        ),
        (
            {"ppo.microbatches": 3},
            "config.ppo.microbatches=3: must divide the 4 rows of a minibatch "
            "(data.prompts_per_batch=4 x data.samples_per_prompt=2 / ppo.minibatches=2)",
        ),
        (
            {"data.samples_per_prompt": 3, "ppo.microbatch_rows": 4},  # minibatches of 6 rows
            "config.ppo.microbatch_rows=4: must divide the 6 rows of a minibatch "
            "(data.prompts_per_batch=4 x data.samples_per_prompt=3 / ppo.minibatches=2)",
        ),
        (
            {"ppo.microbatch_rows": 2, "ppo.microbatches": 4},  # 2-row microbatches: 2 of them
            "config.ppo.microbatches=4: set with ppo.microbatch_rows=2, which makes 2 "
            "microbatches of the 4 rows of a minibatch",
        ),
        ({"ppo.microbatch_rows": -1}, "config.ppo.microbatch_rows=-1: must be an integer >= 0"),
        ({"rollout.score_rows": -8}, "config.rollout.score_rows=-8: must be an integer >= 0"),
    ],
    ids=["minibatches", "microbatches", "microbatch_rows", "both", "negative", "score_rows"],
)
def test_rows_that_do_not_divide_name_the_key_and_value(values, message):
    cfg = smoke.get_config()  # 4 prompts x 2 samples, 2 minibatches
    for key, value in values.items():
        section, name = key.split(".")
        cfg[section][name] = value
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(cfg)
    assert message in str(err.value)


def test_the_mesh_must_split_a_microbatch_and_a_scoring_block():
    run = RLConfig.from_config_dict(brorl.get_config())
    split = split_batch(run.data, run.ppo)
    check_mesh_split(split, 128, (1, -1, 1), 8)  # 64-row microbatches, 128-row blocks: fine
    with pytest.raises(
        ConfigError, match=r"config.mesh.shape=\(1, -1, 1\).* 128 devices.* 64 rows"
    ):
        check_mesh_split(split, 128, (1, -1, 1), 128)
    with pytest.raises(ConfigError, match=r"config.rollout.score_rows=100: .* 8 devices"):
        check_mesh_split(split, 100, (1, 8, 1), 8)
