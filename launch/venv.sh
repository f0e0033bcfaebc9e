#!/usr/bin/env bash
# Sourced by the entry scripts: make sure ./.venv (or $VENV) exists and holds the pinned
# requirements of each file given, installing only what changed since the last run.
#   source launch/venv.sh requirements.txt [tests/requirements.txt]
VENV="${VENV:-.venv}"
if [ ! -x "$VENV/bin/python" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/python" -m pip install --quiet --upgrade pip
fi
for req in "$@"; do
  stamp="$VENV/.installed-$(echo "$req" | tr '/.' '__')"
  want="$(sha256sum "$req" | cut -d' ' -f1)"
  if [ "$(cat "$stamp" 2>/dev/null)" != "$want" ]; then
    echo "installing $req into $VENV ..." >&2
    "$VENV/bin/python" -m pip install --quiet -r "$req"
    echo "$want" > "$stamp"
  fi
done
