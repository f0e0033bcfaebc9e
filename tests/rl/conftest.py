"""Fixtures shared by the tests of rl/."""

import pytest

from tests.rl.train_cli import subprocess_env


@pytest.fixture(scope="module")
def env(tmp_path_factory):
    """(environment, TFDS dir) for `python -m rl.train` subprocesses; see tests/rl/train_cli.py."""
    return subprocess_env(tmp_path_factory)
