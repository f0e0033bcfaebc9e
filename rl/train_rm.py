"""Reward-model training entry point: ORM, PRM or implicit PRM from labelled solutions.

    python -m rl.train_rm --config=configs/rm_smoke.py --workdir=/tmp/rm_smoke
    python -m rl.train_rm --config=configs/rm_toy.py:prm --workdir=runs/prm \\
        --config.data.source=auto --config.policy.path=runs/sft/policy

Writes to the workdir: ``labels.jsonl`` (the labelled solutions used), ``metrics.jsonl``
(training metrics), ``eval.json`` (held-out and training metrics) and ``model/`` (a Hugging Face
checkpoint with the tokenizer and ``reward_model.json``; ``models.reward_io.load_reward_model``
reads it back). Re-running overwrites them. The config is ``rl.reward_models.run_config``; the run
is ``rl.reward_models.run.run``.
"""

from __future__ import annotations

import json
import pathlib

from absl import app, flags
from ml_collections import config_flags

from rl.config import ConfigError
from rl.reward_models.run import run
from rl.reward_models.run_config import RMRunConfig

_CONFIG = config_flags.DEFINE_config_file(
    "config", None, "Config file (configs/NAME.py[:ARG]).", lock_config=True
)
_WORKDIR = flags.DEFINE_string("workdir", None, "Output directory.", required=True)


def main(argv):
    del argv
    try:
        cfg = RMRunConfig.from_config_dict(_CONFIG.value)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    result = run(cfg, pathlib.Path(_WORKDIR.value))
    print(json.dumps(result["eval"], indent=2, sort_keys=True))


if __name__ == "__main__":
    app.run(main)
