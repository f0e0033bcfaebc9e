"""launch.memory.programs: a compiled program's arguments are the bytes of its sharded inputs, and
XLA:TPU's refusal is read for the temporaries it names."""

import jax

from launch.memory import programs
from models.sharding import make_mesh
from tests.launch.memory.tiny import CRITIC_BYTES, POLICY_BYTES


def test_score_compiles_with_arguments_the_bytes_of_its_inputs(tiny_models, tiny_rl):
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    out = programs.compile_programs(tiny_models, tiny_rl, mesh, ["score"])
    assert list(out) == ["score"]
    got = out["score"]
    # policy, critic and reference parameters, then the 4 rollout rows: 12 int32 tokens and 12
    # bool attention mask entries each. The last-token mask is read only by an ORM, which this run
    # lacks, so jit drops it (the analytic count keeps it: 4 x 4 bytes on the safe side).
    assert got["argument"] == 2 * POLICY_BYTES + CRITIC_BYTES + 4 * (12 * 4 + 12)
    assert got["temp"] > 0 and got["output"] > 0 and "refused" not in got
    assert got["lower_s"] >= 0 and got["compile_s"] >= 0


def test_nothing_requested_nothing_compiled(tiny_models, tiny_rl):
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    assert programs.compile_programs(tiny_models, tiny_rl, mesh, []) == {}


def test_xla_tpu_refusal_is_read_for_its_temporaries():
    message = (
        "RESOURCE_EXHAUSTED: Ran out of memory on HBM, the total memory required for HLO "
        "temporaries (39.95G) exceeds available HBM (30.75G)."
    )
    assert programs._refused_temp_bytes(message) == int(39.95 * 2**30)
    assert programs._refused_temp_bytes("RESOURCE_EXHAUSTED: something else") is None
