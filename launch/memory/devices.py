"""The slice's devices, for the mesh the programs are compiled on.

With the cpu backend they are the fake CPU devices launch.memory.backend asked for; with tpu,
libtpu's description of the slice through jax.experimental.topologies: compiling for it needs no
TPU, only the libtpu package.
"""

from __future__ import annotations

import jax
from jax.experimental import topologies as jax_topologies

from configs import topologies as topo


def devices_for(topology: topo.Topology, backend: str) -> list:
    """The slice's devices: fake CPU ones, or libtpu's description of the TPU topology."""
    if backend == "cpu":
        return jax.devices()[: topology.devices]
    megacore = topology.generation in ("v4", "v5p")
    desc = jax_topologies.get_topology_desc(
        platform="tpu",
        topology_name=f"{topology.generation}:{topology.shape}",
        chip_config_name="megacore" if megacore else "default",
        chips_per_host_bounds=(2, 2, 1) if megacore or topology.chips < 8 else (2, 4, 1),
        num_slices=1,
    )
    if len(desc.devices) != topology.devices:
        raise RuntimeError(
            f"libtpu describes {topology.name} with {len(desc.devices)} devices, "
            f"configs/topologies.py says {topology.devices}"
        )
    return list(desc.devices)
