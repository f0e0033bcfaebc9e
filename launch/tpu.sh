#!/usr/bin/env bash
# Cloud TPU VM launcher: create a slice, install this repo on every worker, run training detached
# on all workers, read the logs, stop, delete. Every step is a few `gcloud` commands.
#
# usage: bash launch/tpu.sh SUBCOMMAND --name=NAME --zone=ZONE [--project=PROJECT] [OPTIONS] [--dry-run]
#
#   create --type=TYPE [--version=RUNTIME] [--spot] [--queued]
#       Create the TPU VM NAME (gcloud compute tpus tpu-vm create), or with --queued a queued
#       resource NAME whose node is also NAME (gcloud compute tpus queued-resources create
#       NAME --node-id=NAME), granted when capacity frees up. --spot: a spot (preemptible) slice.
#       TYPE: v4-N, v5e-N or v5litepod-N, v5p-N, v6e-N, v2-N, v3-N (N = TensorCores or chips
#       as Cloud TPU counts them: v4-32, v5e-64, v5p-128).
#       RUNTIME default by generation: v2, v3, v4: tpu-ubuntu2204-base; v5e: v2-alpha-tpuv5-lite;
#       v5p: v2-alpha-tpuv5; v6e: v2-alpha-tpuv6e.
#   setup [--python=python3.11]
#       Pack the working tree (without .git, .venv, runs/, workdirs/, caches), copy it to every
#       worker and unpack it into ~/rlreward/code (replacing the previous copy); create
#       ~/rlreward/venv with PYTHON (installed with apt when missing) and install requirements.txt,
#       then jax[tpu] at requirements.txt's jax pin and launch/requirements-tpu.txt (gs:// support).
#       Re-run after changing the code.
#   run --config=CONFIG[:ARG] --workdir=DIR [--module=rl.train] [--run=RUN] [--config.KEY=VALUE ...] [-- ARGS ...]
#       On every worker, detached from the ssh session (setsid nohup):
#           ~/rlreward/venv/bin/python -m MODULE --config=CONFIG --workdir=DIR [--config.KEY=VALUE ...] [ARGS ...]
#       from ~/rlreward/code; each worker appends to its own ~/rlreward/logs/RUN.log and writes
#       the pid to ~/rlreward/logs/RUN.pid. RUN defaults to the config's name
#       (configs/toy.py:smoke -> toy-smoke). DIR is passed unchanged; use gs://BUCKET/PATH so all
#       workers share one checkpoint directory. Every override and ARG reaches python as one
#       argument, unchanged. Refuses to start RUN where it is still running.
#       --config and --workdir are required for rl.train and rl.train_rm, optional otherwise.
#   logs [--worker=N|all] [--run=RUN] [--lines=100] [--follow]
#       Tail a worker's log (default worker 0; default RUN: the newest log there).
#   stop [--run=RUN] [--grace=300]
#       On every worker: SIGTERM to the run's python (training saves a checkpoint, then exits);
#       once it has exited, or after GRACE seconds, SIGKILL to what is left of its process group.
#       Default RUN: every run started by this script.
#   delete [--queued]
#       Delete the TPU VM, or with --queued the queued resource and its node (--force); no prompt.
#
#   --dry-run   print every command, one per line and shell-quoted, instead of running it.
#   --help      print this text.
#
# example:
#   bash launch/tpu.sh create --name=rl-v4 --zone=us-central2-b --type=v4-32 --spot
#   bash launch/tpu.sh setup  --name=rl-v4 --zone=us-central2-b
#   bash launch/tpu.sh run    --name=rl-v4 --zone=us-central2-b --config=configs/qwen2_1p5b.py \
#       --workdir=gs://my-bucket/rl/clip --config.reward.prm_transform=clip
#   bash launch/tpu.sh logs   --name=rl-v4 --zone=us-central2-b --follow
#   bash launch/tpu.sh stop   --name=rl-v4 --zone=us-central2-b
#   bash launch/tpu.sh delete --name=rl-v4 --zone=us-central2-b
set -euo pipefail

ROOT="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
LIBTPU_URL="https://storage.googleapis.com/jax-releases/libtpu_releases.html"
# Remote layout under the login user's home on every worker; "$HOME" expands there.
R='$HOME/rlreward'
R_TARBALL='rlreward-code.tar.gz'  # scp destination, relative to the remote home

usage() { sed -n '2,/^set -euo/{/^set -euo/d;s/^# \{0,1\}//;p}' "${BASH_SOURCE[0]}"; }
die() { echo "launch/tpu.sh: error: $*" >&2; exit 2; }

# Quote one argument for a POSIX shell (what Python's shlex.split undoes): words of safe characters
# stay bare, anything else goes in single quotes with each ' written as '\''. In --flag=VALUE only
# VALUE is quoted, which reads better and parses the same.
q() {
  local LC_ALL=C s="$1" sq="'" esc="'\\''"  # C locale: the character ranges below are ASCII only
  if [[ "$s" =~ ^[A-Za-z0-9_./:=,@%+-]+$ ]]; then
    printf '%s' "$s"
  elif [[ "$s" =~ ^(--[A-Za-z0-9_.-]+=)(.+)$ ]]; then
    printf '%s' "${BASH_REMATCH[1]}"
    q "${BASH_REMATCH[2]}"
  else
    printf "'%s'" "${s//$sq/$esc}"
  fi
}
qall() {
  local out="" a
  for a in "$@"; do out+="${out:+ }$(q "$a")"; done
  printf '%s' "$out"
}

# Run one command, or with --dry-run print it; real runs echo it to stderr first.
cmd() {
  if ((DRY_RUN)); then
    printf '%s\n' "$(qall "$@")"
  else
    printf '+ %s\n' "$(qall "$@")" >&2
    "$@"
  fi
}

# --- arguments -----------------------------------------------------------------------------
[[ $# -gt 0 ]] || { usage >&2; exit 2; }
case "$1" in
  -h | --help | help) usage; exit 0 ;;
  create | setup | run | logs | stop | delete) SUB="$1"; shift ;;
  -*) die "the first argument must be a subcommand (create, setup, run, logs, stop, delete), got '$1'" ;;
  *) die "unknown subcommand '$1' (expected create, setup, run, logs, stop, delete; see --help)" ;;
esac

NAME="" ZONE="" PROJECT="" TYPE="" VERSION="" SPOT=0 QUEUED=0 DRY_RUN=0 PYTHON="python3.11"
CONFIG="" WORKDIR="" MODULE="rl.train" RUN="" WORKER="0" LINES="100" FOLLOW=0 GRACE="300"
OVERRIDES=() EXTRA=()

common="--name --zone --project --dry-run"
case "$SUB" in
  create) allowed="$common --type --version --spot --queued" ;;
  setup) allowed="$common --python" ;;
  run) allowed="$common --config --workdir --module --run" ;;
  logs) allowed="$common --worker --run --lines --follow" ;;
  stop) allowed="$common --run --grace" ;;
  delete) allowed="$common --queued" ;;
esac

while [[ $# -gt 0 ]]; do
  arg="$1"
  shift
  case "$arg" in
    -h | --help) usage; exit 0 ;;
    --) [[ "$SUB" == run ]] || die "'--' (extra program arguments) is only for run"
      EXTRA=("$@"); break ;;
    --config.*) [[ "$SUB" == run ]] || die "$arg: config overrides are only for run"
      OVERRIDES+=("$arg"); continue ;;
    --*=*) key="${arg%%=*}" val="${arg#*=}" has_val=1 ;;
    --*) key="$arg" val="" has_val=0 ;;
    *) die "unexpected argument '$arg' (options are --KEY=VALUE; see --help)" ;;
  esac
  [[ " $allowed " == *" $key "* ]] || die "unknown option '$key' for $SUB (its options: $allowed)"
  case "$key" in
    --dry-run | --spot | --queued | --follow)
      ((!has_val)) || die "$key takes no value, got '$arg'"
      case "$key" in
        --dry-run) DRY_RUN=1 ;; --spot) SPOT=1 ;; --queued) QUEUED=1 ;; --follow) FOLLOW=1 ;;
      esac ;;
    *)
      ((has_val)) || die "$key needs a value: $key=VALUE"
      [[ -n "$val" ]] || die "$key: empty value"
      case "$key" in
        --name) NAME="$val" ;; --zone) ZONE="$val" ;; --project) PROJECT="$val" ;;
        --type) TYPE="$val" ;; --version) VERSION="$val" ;; --python) PYTHON="$val" ;;
        --config) CONFIG="$val" ;; --workdir) WORKDIR="$val" ;; --module) MODULE="$val" ;;
        --run) RUN="$val" ;; --worker) WORKER="$val" ;; --lines) LINES="$val" ;;
        --grace) GRACE="$val" ;;
      esac ;;
  esac
done

# --- validation ----------------------------------------------------------------------------
[[ -n "$NAME" ]] || die "missing --name=NAME (the TPU VM's name)"
[[ -n "$ZONE" ]] || die "missing --zone=ZONE (e.g. --zone=us-central2-b)"
[[ "$NAME" =~ ^[a-z]([-a-z0-9]{0,61}[a-z0-9])?$ ]] ||
  die "--name='$NAME': must be 1-63 lowercase letters, digits or '-', starting with a letter and not ending with '-'"
[[ "$ZONE" =~ ^[a-z]+-[a-z]+[0-9]+-[a-z]$ ]] ||
  die "--zone='$ZONE': not a zone name like us-central2-b or europe-west4-a"
[[ -z "$PROJECT" || "$PROJECT" =~ ^([a-z][-a-z0-9.]*:)?[a-z][-a-z0-9]{4,28}[a-z0-9]$ ]] ||
  die "--project='$PROJECT': not a project id (6-30 lowercase letters, digits or '-')"

LOC=(--zone="$ZONE")
[[ -z "$PROJECT" ]] || LOC+=(--project="$PROJECT")
SSH=(gcloud compute tpus tpu-vm ssh "$NAME" "${LOC[@]}")

# --- subcommands ---------------------------------------------------------------------------
do_create() {
  [[ -n "$TYPE" ]] || die "create needs --type=TYPE (e.g. --type=v4-32, --type=v5e-64, --type=v5p-128)"
  local gen n accel default_version
  [[ "$TYPE" =~ ^(v2|v3|v4|v5e|v5litepod|v5p|v6e)-([1-9][0-9]*)$ ]] ||
    die "--type='$TYPE': expected GENERATION-SIZE with GENERATION one of v2, v3, v4, v5e, v5litepod, v5p, v6e (e.g. v4-32, v5e-64, v5p-128)"
  gen="${BASH_REMATCH[1]}" n="${BASH_REMATCH[2]}"
  case "$gen" in
    v2 | v3 | v4) accel="$gen-$n" default_version="tpu-ubuntu2204-base" ;;
    v5e | v5litepod) accel="v5litepod-$n" default_version="v2-alpha-tpuv5-lite" ;;
    v5p) accel="v5p-$n" default_version="v2-alpha-tpuv5" ;;
    v6e) accel="v6e-$n" default_version="v2-alpha-tpuv6e" ;;
  esac
  local version="${VERSION:-$default_version}"
  [[ "$version" =~ ^[a-z0-9][-a-z0-9.]*$ ]] || die "--version='$version': not a runtime version name"
  local spot=()
  ((!SPOT)) || spot=(--spot)
  if ((QUEUED)); then
    cmd gcloud compute tpus queued-resources create "$NAME" --node-id="$NAME" "${LOC[@]}" \
      --accelerator-type="$accel" --runtime-version="$version" "${spot[@]}"
    echo "the slice is ready when 'gcloud compute tpus queued-resources describe $NAME --zone=$ZONE' says ACTIVE" >&2
  else
    cmd gcloud compute tpus tpu-vm create "$NAME" "${LOC[@]}" \
      --accelerator-type="$accel" --version="$version" "${spot[@]}"
  fi
}

do_setup() {
  [[ "$PYTHON" =~ ^python3(\.[0-9]+)?$ ]] || die "--python='$PYTHON': expected python3 or python3.N"
  local req="$ROOT/requirements.txt" jax_version
  [[ -f "$req" ]] || die "$req not found"
  jax_version="$(sed -n 's/^[[:space:]]*jax[[:space:]]*==[[:space:]]*\([^[:space:];#]*\).*$/\1/p' "$req" | head -n 1)"
  [[ -n "$jax_version" ]] || die "$req has no 'jax==VERSION' pin to match jax[tpu] to"
  TARBALL="${TMPDIR:-/tmp}/rlreward-code-$NAME.tar.gz"
  ((DRY_RUN)) || trap 'rm -f "$TARBALL"' EXIT
  cmd tar -czf "$TARBALL" --exclude=./.git --exclude=./.venv --exclude=./runs --exclude=./workdirs \
    --exclude=__pycache__ --exclude='*.pyc' --exclude=.pytest_cache --exclude=.hypothesis \
    --exclude='*.egg-info' -C "$ROOT" .
  cmd gcloud compute tpus tpu-vm scp "$TARBALL" "$NAME:$R_TARBALL" "${LOC[@]}" --worker=all
  local py apt pip="\"$R/venv/bin/python\" -m pip install --quiet"
  py="$(q "$PYTHON")"
  apt="sudo DEBIAN_FRONTEND=noninteractive apt-get -o DPkg::Lock::Timeout=600"
  local remote="set -e"
  remote+="; command -v $py >/dev/null || { $apt update -q && $apt install -y -q $py $(q "$PYTHON-venv"); }"
  remote+="; rm -rf \"$R/code\"; mkdir -p \"$R/code\" \"$R/logs\""
  remote+="; tar -xzf $R_TARBALL -C \"$R/code\"; rm -f $R_TARBALL"
  remote+="; [ -x \"$R/venv/bin/python\" ] || $py -m venv \"$R/venv\""
  remote+="; $pip --upgrade pip"
  remote+="; $pip -r \"$R/code/requirements.txt\""
  remote+="; $pip $(q "jax[tpu]==$jax_version") -f $(q "$LIBTPU_URL")"
  remote+="; $pip -r \"$R/code/launch/requirements-tpu.txt\""
  remote+="; echo \"\$(hostname): installed ~/rlreward/code, jax[tpu]==$jax_version\""
  cmd "${SSH[@]}" --worker=all --command="$remote"
}

run_name() {  # configs/toy.py:smoke -> toy-smoke; no config: the module's last part
  local base
  if [[ -n "$CONFIG" ]]; then
    base="${CONFIG%%:*}"
    base="${base##*/}"
    base="${base%.py}"
    [[ "$CONFIG" != *:* ]] || base+="-${CONFIG#*:}"
  else
    base="${MODULE##*.}"
  fi
  printf '%s' "${base//[^A-Za-z0-9._-]/-}"
}

check_run() {
  [[ "$RUN" =~ ^[A-Za-z0-9][A-Za-z0-9._-]*$ ]] ||
    die "--run='$RUN': use letters, digits, '.', '_' and '-' (it names the log file)"
}

do_run() {
  [[ "$MODULE" =~ ^[A-Za-z_][A-Za-z0-9_]*(\.[A-Za-z_][A-Za-z0-9_]*)*$ ]] ||
    die "--module='$MODULE': not a Python module name (e.g. rl.train)"
  if [[ "$MODULE" == rl.train || "$MODULE" == rl.train_rm ]]; then
    [[ -n "$CONFIG" ]] || die "run needs --config=CONFIG for $MODULE (e.g. --config=configs/qwen2_1p5b.py)"
    [[ -n "$WORKDIR" ]] || die "run needs --workdir=DIR for $MODULE (e.g. --workdir=gs://BUCKET/PATH)"
  fi
  [[ ${#OVERRIDES[@]} -eq 0 || -n "$CONFIG" ]] || die "--config.KEY=VALUE overrides need --config=CONFIG"
  if [[ -n "$CONFIG" ]]; then
    [[ -f "$ROOT/${CONFIG%%:*}" ]] ||
      die "--config='$CONFIG': ${CONFIG%%:*} is not a file of this repo (paths are relative to its root, which setup copies)"
  fi
  if [[ -n "$WORKDIR" && "$WORKDIR" != gs://* ]]; then
    echo "warning: --workdir='$WORKDIR' is not gs://...: every worker writes its own local copy" >&2
  fi
  RUN="${RUN:-$(run_name)}"
  check_run
  # Each argument is quoted for the remote shell, which hands python exactly these strings; only
  # the interpreter's path is left for that shell to expand ($HOME).
  local py_cmd="\"$R/venv/bin/python\" -m $(q "$MODULE")" a
  [[ -z "$CONFIG" ]] || py_cmd+=" $(q "--config=$CONFIG")"
  [[ -z "$WORKDIR" ]] || py_cmd+=" $(q "--workdir=$WORKDIR")"
  for a in "${OVERRIDES[@]}" "${EXTRA[@]}"; do py_cmd+=" $(q "$a")"; done
  local log="\"$R/logs/$RUN.log\"" pid="\"$R/logs/$RUN.pid\""
  local remote="set -e; mkdir -p \"$R/logs\"; cd \"$R/code\""
  remote+="; if [ -f $pid ] && kill -0 \"\$(cat $pid)\" 2>/dev/null; then"
  remote+=" echo \"\$(hostname): $RUN is still running (pid \$(cat $pid)); stop it first\" >&2; exit 1; fi"
  remote+="; echo \"== \$(date -u +%FT%TZ) start $RUN\" >> $log"
  # RLREWARD_DISTRIBUTED=1: rl.runtime.distributed calls jax.distributed.initialize() (slice from TPU metadata).
  remote+="; PYTHONUNBUFFERED=1 RLREWARD_DISTRIBUTED=1 setsid nohup $py_cmd >> $log 2>&1 < /dev/null &"
  remote+=" echo \$! > $pid; echo \"\$(hostname): started $RUN (pid \$!), log ~/rlreward/logs/$RUN.log\""
  cmd "${SSH[@]}" --worker=all --command="$remote"
  echo "each worker: pid file ~/rlreward/logs/$RUN.pid, log ~/rlreward/logs/$RUN.log" >&2
  echo "follow: bash launch/tpu.sh logs --name=$NAME --zone=$ZONE --run=$RUN --follow" >&2
}

do_logs() {
  [[ "$WORKER" =~ ^(all|[0-9]+)$ ]] || die "--worker='$WORKER': expected a worker index (0, 1, ...) or all"
  [[ "$LINES" =~ ^[0-9]+$ ]] || die "--lines='$LINES': expected a number"
  local tail_cmd="tail -n $LINES"
  ((!FOLLOW)) || tail_cmd+=" -F"
  local remote
  if [[ -n "$RUN" ]]; then
    check_run
    remote="$tail_cmd \"$R/logs/$RUN.log\""
  else
    remote="f=\"\$(ls -t \"$R/logs\"/*.log 2>/dev/null | head -n 1)\""
    remote+="; [ -n \"\$f\" ] || { echo \"\$(hostname): no logs in ~/rlreward/logs\" >&2; exit 1; }"
    remote+="; echo \"== \$(hostname) \$f\"; $tail_cmd \"\$f\""
  fi
  cmd "${SSH[@]}" --worker="$WORKER" --command="$remote"
}

do_stop() {
  [[ "$GRACE" =~ ^[0-9]+$ ]] || die "--grace='$GRACE': expected seconds"
  local files="\"$R/logs\"/*.pid"
  if [[ -n "$RUN" ]]; then
    check_run
    files="\"$R/logs/$RUN.pid\""
  fi
  # SIGTERM to python only: it finishes the iteration, saves and exits, ending its own children.
  # Then SIGKILL to the process group (setsid made python its leader): whatever is left, or all
  # of it when python outlived GRACE seconds.
  local remote="found=0; for f in $files; do [ -f \"\$f\" ] || continue; pid=\"\$(cat \"\$f\")\""
  remote+="; if kill -0 \"\$pid\" 2>/dev/null; then found=1"
  remote+="; echo \"\$(hostname): SIGTERM to pid \$pid (\$f)\"; kill -TERM \"\$pid\" || true; i=0"
  remote+="; while kill -0 \"\$pid\" 2>/dev/null && [ \$i -lt $GRACE ]; do sleep 1; i=\$((i + 1)); done"
  remote+="; if kill -0 \"\$pid\" 2>/dev/null; then echo \"\$(hostname): alive after ${GRACE}s, SIGKILL\"; fi"
  remote+="; kill -KILL -- \"-\$pid\" 2>/dev/null || true; fi; rm -f \"\$f\"; done"
  remote+="; [ \$found = 1 ] || echo \"\$(hostname): nothing running\""
  cmd "${SSH[@]}" --worker=all --command="$remote"
}

do_delete() {
  if ((QUEUED)); then
    cmd gcloud compute tpus queued-resources delete "$NAME" "${LOC[@]}" --force --quiet
  else
    cmd gcloud compute tpus tpu-vm delete "$NAME" "${LOC[@]}" --quiet
  fi
}

"do_$SUB"
