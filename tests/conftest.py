"""Test-session setup: 8 fake CPU devices, set before JAX is imported anywhere.

Every test session sees the same (2, 4)-capable device set, so mesh and sharding code runs in
ordinary unit tests on a laptop or CI machine without accelerators.
"""

import os

os.environ["XLA_FLAGS"] = (
    os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
).strip()
os.environ.setdefault("JAX_PLATFORMS", "cpu")
# Tests must never reach a model hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("TRANSFORMERS_OFFLINE", "1")
os.environ.setdefault("TOKENIZERS_PARALLELISM", "false")

import jax  # noqa: E402

assert jax.device_count() == 8, (
    f"tests/conftest.py must run before anything imports jax; got {jax.device_count()} devices"
)

# The longest tests (0.5-2.5 min each on one core) are collected first, so xdist hands them out
# at the start (round robin over its workers) instead of one worker ending the suite alone on
# them: the slowest, the end-to-end smoke of the embedded default, used to start in the suite's
# last minutes. Every other test keeps its order.
_FIRST = (
    "tests/rl/test_reproduce.py",
    "tests/rl/runtime/test_multihost.py",
    "tests/rl/test_faults.py",
    "tests/rl/trainers/test_implicit_prm_online.py",
    "tests/rl/test_seam.py",
)


def pytest_collection_modifyitems(config, items):
    rank = {path: i for i, path in enumerate(_FIRST)}
    items.sort(key=lambda item: rank.get(item.nodeid.split("::")[0], len(_FIRST)))
