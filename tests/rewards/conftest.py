"""Fixtures of tests/rewards: one warm verifier pool per test module."""

import pytest

from rewards.verify import Verifier
from tests.rewards.verify_cases import POOL_TIMEOUT_S


@pytest.fixture(scope="module")
def verifier():
    with Verifier(num_workers=2, timeout_s=POOL_TIMEOUT_S) as pool:
        yield pool
