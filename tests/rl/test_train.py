"""`python -m rl.train`, as a user runs it: config errors reported before anything compiles. (The
smoke run itself, killed, damaged and resumed to the same final state: tests/rl/test_faults.py.)"""

import pathlib
import subprocess

from tests.rl.train_cli import train_command as _cmd

ROOT = pathlib.Path(__file__).resolve().parents[2]


def test_config_error_is_reported_before_compiling(tmp_path, env):
    e, data_dir = env
    proc = subprocess.run(
        _cmd(tmp_path, data_dir, "--config.ppo.minibatches=3"),
        cwd=ROOT,
        env=e,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode != 0
    assert "config.ppo.minibatches=3" in proc.stderr
