"""Multi-host start-up: ``jax.distributed.initialize()`` where the environment asks for it.

On Cloud TPU VMs JAX discovers the slice from the TPU metadata; elsewhere (a CPU test with two
local processes) the coordinator is given through the standard environment variables
``JAX_COORDINATOR_ADDRESS``, ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``. Single-process runs do
nothing here. Every process then runs the same program; only process 0 writes metrics and logs.
"""

import os

import jax


def maybe_initialize() -> None:
    if os.environ.get("JAX_COORDINATOR_ADDRESS"):
        jax.distributed.initialize(
            coordinator_address=os.environ["JAX_COORDINATOR_ADDRESS"],
            num_processes=int(os.environ["JAX_NUM_PROCESSES"]),
            process_id=int(os.environ["JAX_PROCESS_ID"]))
    elif os.environ.get("TPU_WORKER_HOSTNAMES") or os.environ.get("CLOUD_TPU_TASK_ID"):
        jax.distributed.initialize()
