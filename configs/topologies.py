"""Cloud TPU slices the paper configs plan for: chips, JAX devices, HBM per device, hosts, meshes.

    from configs import topologies
    topologies.get("v5e-64").devices          # 64
    topologies.mesh_shape("v4-32")            # (1, 16, 1): all devices on fsdp
    topologies.mesh_shape("v5e-64", fsdp=16)  # (4, 16, 1): FSDP groups of 16, data-parallel across

Facts, and where they come from (Cloud TPU documentation, cloud.google.com/tpu/docs):
  * Slice names count TensorCores on v4 and v5p and chips on v5e. "v4-128 specifies ... 128
    TensorCores" (TPU types and topologies); "v5p-32 specifies a v5p slice with 32 TensorCores (16
    chips)" (TPU v5p); v5e accelerator types are "v5litepod-$CHIP_COUNT", one TensorCore per chip
    (TPU v5e). So v4-32 = 16 chips, v5p-128 = 64 chips, v5e-64 = 64 chips.
  * JAX sees one device per chip on all three. v4 and v5p chips hold two TensorCores that run as
    one "megacore" device (jax.experimental.pallas.tpu.ChipVersion's table: v4 and v5p support
    megacore; jax-ml/jax discussion #36155: "On TPU v4, a JAX logical device is normally configured
    as a Megacore containing two physical TensorCores"); a v5e chip has a single TensorCore.
  * HBM per chip (= per JAX device): v4 32 GiB, v5e 16 GB (used here as 16 GiB, the figure the
    issue gives; the runtime reports a little less), v5p 95 GiB. Not all of it is usable: XLA:TPU
    counts 30.75 GiB of a v4 chip's 32 as available to a program, so plan with headroom.
  * Hosts: v4 and v5p have 4 chips per host (v5p 4x4x4 = 64 chips on 16 hosts); multi-host v5e
    slices have 8 chips per host (v5e 4x8 = 32 chips on 4 hosts, 8x8 = 64 chips on 8 hosts).

Meshes are ("data", "fsdp", "tensor") as in `configs/sharding.py`. The default puts every device on
`fsdp`: the smallest per-device footprint for parameters and optimizer state. Configs may choose
smaller FSDP groups with the rest data-parallel (`fsdp=`), which shortens the all-gathers.
"""

from __future__ import annotations

import dataclasses

GIB = 1024**3

# HBM per chip in GiB, and chips per host, by TPU generation.
_HBM_GIB = {"v4": 32, "v5e": 16, "v5p": 95}
_CHIPS_PER_HOST = {"v4": 4, "v5e": 8, "v5p": 4}
# TensorCores per chip counted by the slice name (v4, v5p: the name counts cores; v5e: chips).
_NAME_UNITS_PER_CHIP = {"v4": 2, "v5e": 1, "v5p": 2}
# Physical chip arrangement (the gcloud `--topology`), by generation and chip count.
_SHAPES = {
    "v4": {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4"},
    "v5p": {4: "2x2x1", 8: "2x2x2", 16: "2x2x4", 32: "2x4x4", 64: "4x4x4", 128: "4x4x8"},
    "v5e": {8: "2x4", 16: "4x4", 32: "4x8", 64: "8x8", 128: "8x16", 256: "16x16"},
}


@dataclasses.dataclass(frozen=True)
class Topology:
    """One TPU slice as JAX sees it."""

    name: str
    generation: str
    chips: int
    devices: int  # JAX devices (one per chip: megacore on v4/v5p, one core per chip on v5e)
    hbm_bytes: int  # per device
    hosts: int
    shape: str  # chips along each ICI dimension, e.g. "2x4x4"

    @property
    def hbm_gib(self) -> float:
        return self.hbm_bytes / GIB


def _slice(generation: str, size: int) -> Topology:
    chips = size // _NAME_UNITS_PER_CHIP[generation]
    return Topology(
        name=f"{generation}-{size}",
        generation=generation,
        chips=chips,
        devices=chips,
        hbm_bytes=_HBM_GIB[generation] * GIB,
        hosts=max(1, chips // _CHIPS_PER_HOST[generation]),
        shape=_SHAPES[generation][chips],
    )


TOPOLOGIES: dict[str, Topology] = {
    t.name: t
    for t in (
        _slice("v4", 8),
        _slice("v4", 16),
        _slice("v4", 32),
        _slice("v4", 64),
        _slice("v4", 128),
        _slice("v5e", 8),
        _slice("v5e", 16),
        _slice("v5e", 32),
        _slice("v5e", 64),
        _slice("v5e", 128),
        _slice("v5e", 256),
        _slice("v5p", 8),
        _slice("v5p", 16),
        _slice("v5p", 32),
        _slice("v5p", 64),
        _slice("v5p", 128),
        _slice("v5p", 256),
    )
}


def get(name: str) -> Topology:
    if name not in TOPOLOGIES:
        raise ValueError(f"unknown TPU topology {name!r}; known: {', '.join(TOPOLOGIES)}")
    return TOPOLOGIES[name]


def mesh_shape(name: str, *, fsdp: int | None = None, tensor: int = 1) -> tuple[int, int, int]:
    """(data, fsdp, tensor) over the slice's devices: FSDP groups of `fsdp` devices (default: all
    that `tensor` leaves), data parallel across groups."""
    devices = get(name).devices
    if devices % tensor:
        raise ValueError(f"{name}: tensor={tensor} does not divide {devices} devices")
    fsdp = devices // tensor if fsdp is None else min(fsdp, devices // tensor)
    if devices % (fsdp * tensor):
        raise ValueError(f"{name}: fsdp={fsdp} x tensor={tensor} does not divide {devices} devices")
    return devices // (fsdp * tensor), fsdp, tensor
