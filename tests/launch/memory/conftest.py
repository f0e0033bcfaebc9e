"""The tiny run of tests/launch/memory/tiny.py, validated and built abstractly once per session."""

import pytest

from launch.memory.abstract import abstract_models
from rl.config import RLConfig
from tests.launch.memory.tiny import tiny_config


@pytest.fixture(scope="session")
def tiny_rl():
    return RLConfig.from_config_dict(tiny_config())


@pytest.fixture(scope="session")
def tiny_models(tiny_rl):
    return abstract_models(tiny_rl)
