"""The mesh and the one logical-axis rule table.

    python -m rl.train --config=configs/NAME.py --config.mesh.shape="(1,-1,1)"

Mesh axes: `data` (pure data parallel: replicas of everything), `fsdp` (data parallel with
parameters, gradients and optimizer state sharded along it), `tensor` (Megatron-style split of heads
/ MLP width / vocab). Parameters and activations name their axes logically where they are defined;
RULES maps the names to mesh axes, first match wins. `models/sharding.py` applies them (skipping
mesh axes a dim does not divide, using each mesh axis once per array).
"""

import ml_collections

RULES = (
    # Activations.
    ("batch", ("data", "fsdp")),
    ("length", None),
    ("act_embed", None),
    ("act_heads", "tensor"),
    ("act_kv_heads", "tensor"),
    ("act_mlp", "tensor"),
    ("act_vocab", "tensor"),
    ("cache_length", None),
    ("layers", None),
    # Parameters: the model dim carries FSDP; the "wide" dims carry tensor parallelism.
    ("vocab", "tensor"),
    ("embed", "fsdp"),
    ("heads", "tensor"),
    ("kv_heads", "tensor"),
    ("head_dim", None),
    ("mlp", "tensor"),
    ("norm", None),
    ("classes", None),
)


def get_config(arg: str | None = None) -> ml_collections.ConfigDict:
    """Mesh shape and rules; `arg` is an optional mesh shape such as "2,4,1"."""
    config = ml_collections.ConfigDict()
    config.shape = tuple(int(s) for s in arg.split(",")) if arg else (1, -1, 1)
    config.axes = ("data", "fsdp", "tensor")
    config.rules = RULES
    return config
