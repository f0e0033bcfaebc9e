"""PPO training entry point.

    python -m rl.train --config=configs/smoke.py --workdir=/tmp/smoke
    python -m rl.train --config=configs/smoke.py --workdir=/tmp/smoke
    --config.reward.prm_transform=clip

Re-running the same command resumes from the workdir's last checkpoint (the newest that restores:
see rl.runtime.checkpoint). A fault the run cannot go past (no checkpoint restores, one cannot be
written, the verifier fails on every answer) exits 1 with a one-paragraph ``error:`` message.
"""

from absl import app, flags, logging
from ml_collections import config_flags

from rl.config import ConfigError, RLConfig
from rl.runtime.checkpoint import CheckpointError, CheckpointWriteError
from rl.runtime.distributed import maybe_initialize
from rl.runtime.verifier_watch import VerifierFailure
from rl.trainers.ppo_trainer import Trainer

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/NAME.py[:ARG]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string(
    "workdir", None, "Run directory (checkpoints, metrics).", required=True
)


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        # Orbax and TFDS log every checkpoint and build at INFO; the progress lines are ours.
        logging.set_verbosity(logging.WARNING)
    maybe_initialize()
    try:
        trainer = Trainer(RLConfig.from_config_dict(_CONFIG.value), _WORKDIR.value)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    try:
        trainer.run()
    except (CheckpointError, CheckpointWriteError, VerifierFailure) as e:
        # Faults the run cannot go past: their messages say what failed and what to do.
        raise SystemExit(f"error: {e}") from None
    finally:
        trainer.close()


if __name__ == "__main__":
    app.run(main)
