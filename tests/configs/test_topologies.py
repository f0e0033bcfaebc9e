"""configs/topologies.py: the slice table's facts (chips, devices, HBM, hosts) and its meshes."""

import math

import pytest

from configs import topologies


@pytest.mark.parametrize(
    "name, chips, devices, hbm_gib, hosts",
    [
        ("v4-32", 16, 16, 32, 4),
        ("v4-64", 32, 32, 32, 8),
        ("v5e-32", 32, 32, 16, 4),
        ("v5e-64", 64, 64, 16, 8),
        ("v5p-128", 64, 64, 95, 16),
    ],
)
def test_slice_table(name, chips, devices, hbm_gib, hosts):
    t = topologies.get(name)
    assert (t.chips, t.devices, t.hbm_gib, t.hosts) == (chips, devices, hbm_gib, hosts)
    assert math.prod(topologies.mesh_shape(name)) == devices
    assert topologies.mesh_shape(name, fsdp=16) == (devices // 16, 16, 1)
