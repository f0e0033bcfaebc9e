"""launch.memory.programs: a compiled program's arguments are the bytes of its sharded inputs, and
XLA:TPU's refusal is read for the temporaries it names."""

import jax

from launch.memory import programs
from launch.memory.abstract import abstract_models
from models.sharding import make_mesh
from rl.config import RLConfig
from tests.launch.memory.tiny import CRITIC_BYTES, POLICY_BYTES, tiny_config


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


def test_a_published_prm_is_compiled_on_its_own_input_bucket(tmp_path):
    """A Qwen2.5-Math-PRM-format PRM (two-class Linear-ReLU-Linear head) is not run on the policy's
    sequences: the score program takes its parameters and its own bucket of 4 rows x 16 tokens
    (ids int32 + mask) and 3 read positions (int32) per row."""
    cfg = tiny_config()
    cfg.prm.path = str(tmp_path / "absent")  # no checkpoint: shapes from aot_presets
    cfg.prm.format = "qwen_math_prm"
    cfg.prm.overrides = {"vocab_size": 256}
    cfg.prm.max_input_len, cfg.prm.max_steps = 16, 3
    rl = RLConfig.from_config_dict(cfg)
    models = abstract_models(rl, {"prm": "qwen2_like:64,2"})
    head = models["prm"].state["score"]
    # Linear(64, 64) + bias, ReLU, Linear(64, 2) + bias: the published head's shapes.
    assert jax.tree.map(lambda v: v.shape, jax.tree.leaves(head)) == [
        (64,),
        (64, 64),
        (2,),
        (64, 2),
    ]
    prm_bytes = sum(x.size * x.dtype.itemsize for x in jax.tree.leaves(models["prm"].state))
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    got = programs.compile_programs(models, rl, mesh, ["score"])["score"]
    policy_space = 2 * POLICY_BYTES + CRITIC_BYTES + 4 * (12 * 4 + 12)
    assert got["argument"] == policy_space + prm_bytes + 4 * (16 * 4 + 16 + 3 * 4)
