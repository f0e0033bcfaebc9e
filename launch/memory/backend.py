"""Which XLA compiles the check, set in the process environment before JAX is imported.

`cpu`: N fake CPU devices (XLA_FLAGS), as many as the slice has JAX devices; XLA:CPU partitions the
program. `tpu`: libtpu describes the slice and XLA:TPU compiles for it; no TPU is opened. JAX reads
JAX_PLATFORMS when it is imported, so both must run first; this module does not import JAX.
"""

from __future__ import annotations

import importlib.util
import os
import sys

from configs import topologies as topo


def pick_backend(flag: str) -> str:
    """`flag` unless it is "auto": then tpu where the libtpu package is installed, else cpu."""
    if flag != "auto":
        return flag
    return "tpu" if importlib.util.find_spec("libtpu") is not None else "cpu"


def set_fake_devices(n: int) -> None:
    """N fake CPU devices; must run before JAX is imported."""
    if "jax" in sys.modules:
        raise RuntimeError("launch.aot: JAX was imported before the device count was set")
    kept = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    os.environ["XLA_FLAGS"] = " ".join(kept + [f"--xla_force_host_platform_device_count={n}"])
    os.environ["JAX_PLATFORMS"] = "cpu"


def use_tpu_description(topology: topo.Topology) -> None:
    """JAX on CPU, libtpu only describing `topology`; its start-up asks for these variables."""
    os.environ["JAX_PLATFORMS"] = "cpu"
    os.environ.setdefault("TPU_ACCELERATOR_TYPE", topology.name)
    os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")


def prepare(backend: str, topology: topo.Topology) -> None:
    """The environment `backend` needs for `topology`; before JAX is imported."""
    if backend == "tpu":
        use_tpu_description(topology)
    else:
        set_fake_devices(topology.devices)
