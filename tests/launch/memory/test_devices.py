"""launch.memory.devices: the slice's devices, as many as configs/topologies.py says it has."""

import jax

from configs import topologies
from launch.memory.devices import devices_for


def test_cpu_backend_takes_the_slices_count_of_fake_devices():
    # tests/conftest.py makes 8 CPU devices: v4-16 has 8 chips, v4-8 has 4.
    assert devices_for(topologies.get("v4-16"), "cpu") == jax.devices()
    assert devices_for(topologies.get("v4-8"), "cpu") == jax.devices()[:4]
