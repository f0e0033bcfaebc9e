"""The embedded default: the seed paper's reward-design comparison on the toy task, on a CPU.

    python -m rl.reproduce --workdir=/tmp/toy [--config=configs/toy.py[:smoke]] [--config.KEY=VALUE]

Runs the whole system through its own modules (see ``rl.experiments.toy_pipeline`` for the stages)
and writes ``DIR/results.json``, ``DIR/results.md`` and plots. Re-running the same command reuses
every finished stage and resumes an interrupted one.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from rl.experiments import toy_pipeline as pipeline

_CONFIG = config_flags.DEFINE_config_file(
    "config", "configs/toy.py", "Config file.", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Where every stage writes.", required=True)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        # Orbax and TFDS log every checkpoint and build at INFO; the progress lines are ours.
        logging.set_verbosity(logging.WARNING)
    pipeline.run(_CONFIG.value, _WORKDIR.value)


if __name__ == "__main__":
    app.run(main)
