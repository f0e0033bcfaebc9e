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

# The longest tests (each a minute or more on 2 cores: whole runs in subprocesses) start first, so
# that with two xdist workers stealing work (tests/run.sh: --dist worksteal) neither is left
# running one of them alone at the end.
SLOW_FIRST = (
    "tests/rl/test_reproduce.py",
    "tests/rl/runtime/test_multihost.py",
    "tests/rl/test_faults.py",
    "tests/rl/trainers/test_implicit_prm_online.py",
)


def pytest_collection_modifyitems(items):
    def rank(item):
        path = item.nodeid.split("::")[0]
        return SLOW_FIRST.index(path) if path in SLOW_FIRST else len(SLOW_FIRST)

    items.sort(key=rank)  # stable: the rest keep their order
