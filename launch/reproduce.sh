#!/usr/bin/env bash
# The embedded default on a fresh machine (python3 + pip, CPU): installs the pinned requirements
# into ./.venv, then reproduces the reward-design table on the toy task.
#   bash launch/reproduce.sh                         # writes runs/toy/results.md
#   WORKDIR=/tmp/toy bash launch/reproduce.sh --config=configs/toy.py:smoke
# Re-running the same command reuses finished stages and resumes an interrupted one.
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh requirements.txt
exec "$VENV/bin/python" -m rl.reproduce --workdir="${WORKDIR:-runs/toy}" "$@"
