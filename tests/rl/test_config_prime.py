"""PRIME's keys at the config edge: a prompt-filter band that can keep no prompt, the online
implicit PRM's values, and an online PRM with no implicit PRM or rows its minibatches cannot split,
each a ConfigError naming the key and value; the keys reach the config from the command line."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from configs import prime_smoke
from rl import config_prime
from rl.config import ConfigError, DataConfig, RewardConfig, RLConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
SHAPE = r"must be \(\) \(no filter\) or \(low, high\) with 0 <= low <= high <= 1"


@pytest.mark.parametrize(
    "band, why",
    [
        ((0.8, 0.2), SHAPE),
        ((-0.1, 0.5), SHAPE),
        ((0.2, 1.5), SHAPE),
        ((0.5,), SHAPE),
        (("0.2", "0.8"), SHAPE),
        # 4 samples: a prompt's accuracy is 0, 0.25, 0.5, 0.75 or 1, none of them in the band.
        ((0.3, 0.45), r"keeps no prompt: with data.samples_per_prompt=4 .*0.25, 0.5"),
    ],
)
def test_a_band_that_keeps_no_prompt_is_a_config_error(band, why):
    with pytest.raises(
        ConfigError, match=rf"config\.data\.accuracy_band={re.escape(repr(band))}: {why}"
    ):
        DataConfig(samples_per_prompt=4, accuracy_band=band).validate()


def test_bands_that_keep_some_prompt_are_valid():
    config_prime.check_band("data.accuracy_band", (0.25, 0.75), 4)
    config_prime.check_band("data.accuracy_band", (0.0, 0.0), 1)  # all-wrong prompts only
    config_prime.check_band("data.accuracy_band", (0.2, 0.2), 5)  # exactly 1 of 5: 1/5 == 0.2
    config_prime.check_band("data.accuracy_band", (), 3)  # no filter
    with pytest.raises(ConfigError, match=r"config.data.filter_rounds=0: must be an integer >= 1"):
        DataConfig(accuracy_band=(0.25, 0.75), filter_rounds=0).validate()


@pytest.mark.parametrize(
    "field, value, message",
    [
        ("implicit_prm_online", 1, r"config.reward.implicit_prm_online=1: must be True or False"),
        ("implicit_prm_lr", 0.0, r"config.reward.implicit_prm_lr=0.0: must be a finite number > 0"),
        ("implicit_prm_grad_clip", -1.0, r"config.reward.implicit_prm_grad_clip=-1.0: must be"),
        ("implicit_prm_minibatches", 0, r"config.reward.implicit_prm_minibatches=0: must be an"),
        ("implicit_prm_microbatches", 1.5, r"config.reward.implicit_prm_microbatches=1.5: must"),
    ],
)
def test_the_online_prm_values_are_validated(field, value, message):
    with pytest.raises(ConfigError, match=message):
        RewardConfig(**{field: value}).validate()


@pytest.mark.parametrize(
    "overrides, message",
    [
        # No implicit PRM to update: no model, or a reward that does not use it.
        (
            {"implicit_prm.preset": ""},
            r"config.reward.implicit_prm_online=True: updates an implicit PRM, and none is "
            r"configured .*implicit_prm.preset=''",
        ),
        (
            {"reward.implicit_prm_weight": 0.0},
            r"config.reward.implicit_prm_online=True: .*reward.implicit_prm_weight=0.0",
        ),
        (
            {"reward.implicit_prm_minibatches": 3},
            r"config.reward.implicit_prm_minibatches=3: .* the 16 rollout rows",
        ),
        (
            {"reward.implicit_prm_minibatches": 2, "reward.implicit_prm_microbatches": 3},
            r"config.reward.implicit_prm_minibatches=2: with reward.implicit_prm_microbatches=3",
        ),
    ],
)
def test_an_online_prm_it_cannot_train_is_a_config_error(overrides, message):
    c = prime_smoke.get_config()
    for key, value in overrides.items():
        section, name = key.split(".")
        c[section][name] = value
    with pytest.raises(ConfigError, match=message):
        RLConfig.from_config_dict(c)


def test_the_keys_reach_the_config_from_the_command_line():
    flags = ["--config.data.accuracy_band=(0.25, 0.75)", "--config.reward.implicit_prm_lr=3e-4"]
    proc = subprocess.run(
        [sys.executable, "-m", "rl.config", "--config=configs/prime_smoke.py", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["data"]["accuracy_band"] == [0.25, 0.75]
    assert resolved["reward"]["implicit_prm_lr"] == 3e-4
    assert resolved["reward"]["implicit_prm_online"] is True
