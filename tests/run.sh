#!/usr/bin/env bash
# Runs the test suite on a fresh machine that has only python3 and pip.
# Creates ./.venv (or $VENV) on first use, installs the pinned requirements into it
# (again only when a requirements file changed), then runs pytest with any extra arguments:
#   bash tests/run.sh                      # whole suite
#   bash tests/run.sh tests/rewards -k delta
set -euo pipefail
cd "$(dirname "$0")/.."
source launch/venv.sh requirements.txt tests/requirements.txt
# Two workers match the 2-core machines this suite is sized for; override with PYTEST_WORKERS.
exec "$VENV/bin/python" -m pytest -n "${PYTEST_WORKERS:-2}" --dist worksteal "$@"
