"""launch/tpu.sh: the gcloud commands it prints under --dry-run, what reaches the remote python
through two rounds of shell parsing, the remote scripts themselves (run here under a temporary
$HOME with a stand-in python), and its argument errors.

Nothing here reaches Google Cloud: a fake `gcloud` that fails loudly comes first on PATH, and
every test checks afterwards that it was never called. The one test that runs commands for real
does so against a recording fake.
"""

import json
import os
import pathlib
import shlex
import shutil
import signal
import subprocess
import sys
import time

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

REPO = pathlib.Path(__file__).resolve().parents[2]
SCRIPT = REPO / "launch" / "tpu.sh"
NAME, ZONE = "rl-test", "us-central2-b"
LOC = [f"--name={NAME}", f"--zone={ZONE}"]
PYTHON = "$HOME/rlreward/venv/bin/python"  # the remote interpreter, as the remote shell sees it
LIBTPU = "https://storage.googleapis.com/jax-releases/libtpu_releases.html"

# Override values that a naive `--command="python ... $*"` would break: spaces, commas, quotes,
# parentheses, $, ;, backticks, globs, a single quote, backslashes, runs of spaces.
TRICKY = [
    "--config.reward.prm_transform=clip",
    "--config.mesh.shape=(1,-1,4)",
    '--config.rollout.stop_strings=("a b","c,d")',
    "--config.policy.path=/data/it's here",
    "--config.data.name=$HOME;rm -rf /tmp/x",
    "--config.notes=`date` && echo $(whoami) | cat > /dev/null",
    "--config.glob=*.py [ab]? ~root",
    "--config.slashes=a\\b\\\\c\\'d",
    "--config.mixed=\"double\" and 'single'  two  spaces\ttab",
    "--config.empty=",
]


@pytest.fixture(scope="module")
def fake_bin(tmp_path_factory):
    """A PATH directory whose `gcloud` records that it ran and fails."""
    d = tmp_path_factory.mktemp("fakebin")
    (d / "gcloud").write_text(
        "#!/bin/sh\n"
        f"touch '{d}/called'\n"
        "echo 'FAKE GCLOUD CALLED: launch/tpu.sh ran a command it should only print' >&2\n"
        "exit 97\n"
    )
    (d / "gcloud").chmod(0o755)
    return d


@pytest.fixture(autouse=True)
def gcloud_never_called(fake_bin):
    yield
    assert not (fake_bin / "called").exists(), "launch/tpu.sh called gcloud under --dry-run"


@pytest.fixture(scope="module")
def tpu(fake_bin):
    """Runs `bash launch/tpu.sh ARGS` (another copy with script=) with the fake gcloud first."""

    def run(*args, script=SCRIPT, env=None):
        full_env = {
            **os.environ,
            "PATH": f"{fake_bin}{os.pathsep}{os.environ['PATH']}",
            **(env or {}),
        }
        return subprocess.run(
            ["bash", str(script), *args], capture_output=True, text=True, env=full_env, timeout=60
        )

    return run


def dry(tpu, *args, **kw):
    """The commands printed by a successful --dry-run, each as its argv."""
    p = tpu(args[0], *LOC, "--dry-run", *args[1:], **kw)  # before any `--`
    assert p.returncode == 0, p.stderr
    # split on "\n" only: str.splitlines() also breaks at \x1c-\x1e, \x85, \u2028 inside values
    return [shlex.split(line) for line in p.stdout.rstrip("\n").split("\n")]


def only_gcloud(commands):
    return [c for c in commands if c[0] == "gcloud"]


def remote_command(argv):
    """The --command=STRING of a gcloud ssh argv, split as the remote shell would split it."""
    (command,) = [a.removeprefix("--command=") for a in argv if a.startswith("--command=")]
    return command, shlex.split(command)


def python_argv(words):
    """The remote python's argv: from the interpreter up to the log redirection."""
    start = words.index(PYTHON)
    return words[start + 1 : words.index(">>", start)]


def jax_pin(requirements):
    (line,) = [x for x in requirements.read_text().splitlines() if x.startswith("jax==")]
    return line.split("==")[1].strip()


# --- usage ---------------------------------------------------------------------------------


def test_help_documents_every_subcommand_and_option(tpu):
    p = tpu("--help")
    assert p.returncode == 0
    for word in [
        "create",
        "setup",
        "run",
        "logs",
        "stop",
        "delete",
        "--dry-run",
        "--type",
        "--version",
        "--spot",
        "--queued",
        "--config",
        "--workdir",
        "--module",
        "--worker",
        "--follow",
        "v2-alpha-tpuv5",
        "tpu-ubuntu2204-base",
    ]:
        assert word in p.stdout, word
    assert not p.stdout.startswith("#!")
    assert tpu("create", "--help").stdout == p.stdout


def test_no_arguments_is_an_error_with_usage(tpu):
    p = tpu()
    assert p.returncode != 0 and "usage:" in p.stderr and p.stdout == ""


# --- create --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "given_type, accelerator, runtime",
    [
        ("v4-32", "v4-32", "tpu-ubuntu2204-base"),
        ("v5e-64", "v5litepod-64", "v2-alpha-tpuv5-lite"),
        ("v5litepod-16", "v5litepod-16", "v2-alpha-tpuv5-lite"),
        ("v5p-128", "v5p-128", "v2-alpha-tpuv5"),
        ("v6e-8", "v6e-8", "v2-alpha-tpuv6e"),
        ("v3-8", "v3-8", "tpu-ubuntu2204-base"),
    ],
)
def test_create_maps_type_and_default_runtime(tpu, given_type, accelerator, runtime):
    assert dry(tpu, "create", f"--type={given_type}") == [
        [
            "gcloud",
            "compute",
            "tpus",
            "tpu-vm",
            "create",
            NAME,
            f"--zone={ZONE}",
            f"--accelerator-type={accelerator}",
            f"--version={runtime}",
        ]
    ]


def test_create_spot_project_and_explicit_runtime(tpu):
    (argv,) = dry(
        tpu, "create", "--type=v4-32", "--spot", "--project=my-project-1", "--version=tpu-vm-base"
    )
    assert argv[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "create", NAME]
    assert sorted(argv[6:]) == sorted(
        [
            f"--zone={ZONE}",
            "--project=my-project-1",
            "--accelerator-type=v4-32",
            "--version=tpu-vm-base",
            "--spot",
        ]
    )


@pytest.mark.parametrize("spot", [False, True])
def test_create_queued_uses_queued_resources(tpu, spot):
    (argv,) = dry(tpu, "create", "--type=v5p-128", "--queued", *(["--spot"] if spot else []))
    assert argv[:6] == ["gcloud", "compute", "tpus", "queued-resources", "create", NAME]
    expected = [
        f"--node-id={NAME}",
        f"--zone={ZONE}",
        "--accelerator-type=v5p-128",
        "--runtime-version=v2-alpha-tpuv5",
    ] + (["--spot"] if spot else [])
    assert sorted(argv[6:]) == sorted(expected)


# --- setup ---------------------------------------------------------------------------------


def test_setup_copies_to_and_installs_on_every_worker(tpu):
    commands = dry(tpu, "setup")
    assert commands[0][:2] == ["tar", "-czf"]  # the local tarball, printed, not made
    tarball = commands[0][2]
    scp, ssh = only_gcloud(commands)
    assert scp == [
        "gcloud",
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        tarball,
        f"{NAME}:rlreward-code.tar.gz",
        f"--zone={ZONE}",
        "--worker=all",
    ]
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", NAME]
    assert f"--zone={ZONE}" in ssh and "--worker=all" in ssh
    words = [w.removesuffix(";") for w in remote_command(ssh)[1]]  # `a; b`: ";" ends a word
    pip = [PYTHON, "-m", "pip", "install", "--quiet"]
    assert "python3.11 -m venv $HOME/rlreward/venv" in " ".join(words)
    i = words.index("$HOME/rlreward/code/requirements.txt")
    assert words[i - 6 : i] == [*pip, "-r"]
    pin = jax_pin(REPO / "requirements.txt")
    i = words.index(f"jax[tpu]=={pin}")
    assert words[i - 5 : i] == pip and words[i + 1 : i + 3] == ["-f", LIBTPU]
    j = words.index("$HOME/rlreward/code/launch/requirements-tpu.txt")
    assert j > i and words[j - 6 : j] == [*pip, "-r"]
    assert not pathlib.Path(tarball).exists()


def make_repo_copy(root, requirements):
    """A minimal repo: launch/tpu.sh, requirements.txt, code, and the things setup leaves out."""
    (root / "launch").mkdir(parents=True)
    shutil.copy(SCRIPT, root / "launch" / "tpu.sh")
    (root / "requirements.txt").write_text(requirements)
    for rel in [
        "rl/train.py",
        "configs/smoke.py",
        ".venv/bin/python",
        ".git/HEAD",
        "runs/x/log",
        "workdirs/y",
        "rl/__pycache__/train.cpython-311.pyc",
        ".pytest_cache/v",
        ".hypothesis/db",
        "rlreward.egg-info/PKG-INFO",
    ]:
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(rel)
    return root / "launch" / "tpu.sh"


def test_setup_reads_the_jax_pin_when_it_runs(tpu, tmp_path):
    script = make_repo_copy(tmp_path / "repo", "numpy==2.0\njax==9.8.7  # pinned\njaxlib==9.8.7\n")
    ssh = only_gcloud(dry(tpu, "setup", script=script))[-1]
    _, words = remote_command(ssh)
    assert "jax[tpu]==9.8.7" in words
    assert not any("0.10" in w for w in words if w.startswith("jax["))


def test_setup_without_a_jax_pin_is_an_error(tpu, tmp_path):
    script = make_repo_copy(tmp_path / "repo", "numpy==2.0\njaxlib==9.8.7\n")
    p = tpu("setup", *LOC, "--dry-run", script=script)
    assert p.returncode != 0 and "jax==VERSION" in p.stderr and p.stdout == ""


def test_setup_tarball_holds_the_code_without_venv_git_runs_caches(tpu, tmp_path):
    script = make_repo_copy(tmp_path / "repo", "jax==1.2.3\n")
    tar = dry(tpu, "setup", script=script, env={"TMPDIR": str(tmp_path)})[0]
    subprocess.run(tar, check=True, timeout=60)  # the printed local command, run as printed
    listing = subprocess.run(
        ["tar", "-tzf", tar[2]], capture_output=True, text=True, check=True
    ).stdout.split()
    files = {f.removeprefix("./") for f in listing if not f.endswith("/")}
    assert files == {"rl/train.py", "configs/smoke.py", "requirements.txt", "launch/tpu.sh"}


# --- run -----------------------------------------------------------------------------------


def test_run_starts_the_module_detached_on_every_worker(tpu):
    (ssh,) = dry(tpu, "run", "--config=configs/smoke.py", "--workdir=gs://bucket/runs/a")
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", NAME]
    assert f"--zone={ZONE}" in ssh and "--worker=all" in ssh
    _, words = remote_command(ssh)
    assert python_argv(words) == [
        "-m",
        "rl.train",
        "--config=configs/smoke.py",
        "--workdir=gs://bucket/runs/a",
    ]
    i = words.index(PYTHON)
    assert words[i - 4 : i] == ["PYTHONUNBUFFERED=1", "RLREWARD_DISTRIBUTED=1", "setsid", "nohup"]
    log = "$HOME/rlreward/logs/smoke.log"
    assert words[words.index(">>", i) + 1] == log
    assert words[words.index(">>", i) + 2 : words.index(">>", i) + 6] == [
        "2>&1",
        "<",
        "/dev/null",
        "&",
    ]
    assert "$HOME/rlreward/logs/smoke.pid" in words


def test_run_module_run_name_and_config_argument(tpu):
    (ssh,) = dry(
        tpu,
        "run",
        "--module=rl.train_rm",
        "--config=configs/rm_smoke.py:tiny",
        "--workdir=gs://b/rm",
        "--run=rm-a",
    )
    _, words = remote_command(ssh)
    assert python_argv(words) == [
        "-m",
        "rl.train_rm",
        "--config=configs/rm_smoke.py:tiny",
        "--workdir=gs://b/rm",
    ]
    assert "$HOME/rlreward/logs/rm-a.log" in words
    (ssh,) = dry(tpu, "run", "--config=configs/toy.py:smoke", "--workdir=gs://b/t")
    assert "$HOME/rlreward/logs/toy-smoke.log" in remote_command(ssh)[1]


def test_run_overrides_reach_python_as_one_argument_each(tpu):
    (ssh,) = dry(
        tpu,
        "run",
        "--config=configs/smoke.py",
        "--workdir=gs://b/p q",
        *TRICKY,
        "--",
        "--extra=1",
        "two words",
        "'",
    )
    _, words = remote_command(ssh)
    assert python_argv(words) == [
        "-m",
        "rl.train",
        "--config=configs/smoke.py",
        "--workdir=gs://b/p q",
        *TRICKY,
        "--extra=1",
        "two words",
        "'",
    ]


@settings(max_examples=20, deadline=None)
@given(
    st.lists(
        st.text(
            st.characters(blacklist_characters="\x00\n\r", blacklist_categories=("Cs",)),
            max_size=12,
        ),
        min_size=1,
        max_size=6,
    )
)
def test_run_any_override_value_survives_both_shells(tpu, values):
    overrides = [f"--config.k{i}={v}" for i, v in enumerate(values)]
    (ssh,) = dry(tpu, "run", "--config=configs/smoke.py", "--workdir=gs://b/p", *overrides)
    assert python_argv(remote_command(ssh)[1])[4:] == overrides


def test_run_remote_script_under_a_real_shell(tpu, tmp_path):
    """The printed run/logs/stop scripts, executed by bash with $HOME in a temporary directory
    and a stand-in venv python: python gets exactly the overrides, the run is detached and
    recorded, a second start is refused, logs shows it, stop ends it with SIGTERM."""
    assert shutil.which("setsid"), "util-linux's setsid runs the remote script"
    home = tmp_path / "home"
    (home / "rlreward" / "code").mkdir(parents=True)
    venv_python = home / "rlreward" / "venv" / "bin" / "python"
    venv_python.parent.mkdir(parents=True)
    venv_python.write_text(
        f"#!{sys.executable}\n"
        "import json, os, signal, sys, time\n"
        "def stop(*_):\n"
        "    print('SIGTERM: saved, exiting', flush=True)\n"
        "    sys.exit(0)\n"
        "signal.signal(signal.SIGTERM, stop)\n"
        "open(os.path.join(os.environ['HOME'], 'argv.json'), 'w').write(json.dumps(\n"
        "    {'argv': sys.argv[1:], 'cwd': os.getcwd(), 'sid': os.getsid(0) == os.getpid()}))\n"
        "print('training started', flush=True)\n"
        "time.sleep(60)\n"
    )
    venv_python.chmod(0o755)
    env = {**os.environ, "HOME": str(home)}
    pid_file = home / "rlreward" / "logs" / "smoke.pid"

    def remote(*args):
        (ssh,) = dry(tpu, *args)
        command, _ = remote_command(ssh)
        return subprocess.run(
            ["bash", "-c", command], capture_output=True, text=True, env=env, timeout=60
        )

    p = remote("run", "--config=configs/smoke.py", "--workdir=gs://b/p", *TRICKY, "--", "x y")
    pid = None
    try:
        assert p.returncode == 0, p.stderr
        assert "started smoke" in p.stdout
        for _ in range(200):
            if (home / "argv.json").exists() and "started" in (
                home / "rlreward" / "logs" / "smoke.log"
            ).read_text():
                break
            time.sleep(0.05)
        seen = json.loads((home / "argv.json").read_text())
        assert seen["argv"] == [
            "-m",
            "rl.train",
            "--config=configs/smoke.py",
            "--workdir=gs://b/p",
            *TRICKY,
            "x y",
        ]
        assert seen["cwd"] == str(home / "rlreward" / "code")
        assert seen["sid"], "python should lead its own session (setsid)"
        pid = int(pid_file.read_text())
        os.kill(pid, 0)  # alive after the launching shell has exited

        again = remote("run", "--config=configs/smoke.py", "--workdir=gs://b/p")
        assert again.returncode != 0 and "still running" in again.stderr

        logs = remote("logs")
        assert logs.returncode == 0 and "training started" in logs.stdout

        stop = remote("stop", "--grace=20")
        assert stop.returncode == 0, stop.stderr
        assert f"SIGTERM to pid {pid}" in stop.stdout
        assert not pid_file.exists()
        with pytest.raises(ProcessLookupError):
            os.kill(pid, 0)
        pid = None
        assert "SIGTERM: saved, exiting" in (home / "rlreward" / "logs" / "smoke.log").read_text()
        assert "nothing running" in remote("stop").stdout
    finally:
        if pid is not None:
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass


def test_stop_kills_the_process_group_after_the_grace_period(tpu, tmp_path):
    assert shutil.which("setsid"), "util-linux's setsid runs the remote script"
    home = tmp_path / "home"
    logs = home / "rlreward" / "logs"
    logs.mkdir(parents=True)
    # A run that ignores SIGTERM and has a child in its process group.
    proc = subprocess.Popen(
        ["setsid", "bash", "-c", "trap '' TERM; sleep 60 & echo $! > child; wait"],
        cwd=tmp_path,
        start_new_session=False,
    )
    try:
        for _ in range(200):
            if (tmp_path / "child").exists() and (tmp_path / "child").read_text().strip():
                break
            time.sleep(0.05)
        child = int((tmp_path / "child").read_text())
        (logs / "stuck.pid").write_text(f"{proc.pid}\n")
        (ssh,) = dry(tpu, "stop", "--run=stuck", "--grace=1")
        command, _ = remote_command(ssh)
        p = subprocess.run(
            ["bash", "-c", command],
            capture_output=True,
            text=True,
            env={**os.environ, "HOME": str(home)},
            timeout=60,
        )
        assert p.returncode == 0, p.stderr
        assert "alive after 1s, SIGKILL" in p.stdout
        assert proc.wait(timeout=10) == -signal.SIGKILL
        for _ in range(100):
            try:
                os.kill(child, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
        else:
            pytest.fail("the run's child outlived stop")
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


# --- logs, stop, delete --------------------------------------------------------------------


def test_logs_worker_run_follow(tpu):
    (ssh,) = dry(tpu, "logs")
    assert "--worker=0" in ssh and f"--zone={ZONE}" in ssh
    (ssh,) = dry(tpu, "logs", "--worker=3", "--run=smoke", "--follow", "--lines=20")
    assert "--worker=3" in ssh
    assert remote_command(ssh)[1] == ["tail", "-n", "20", "-F", "$HOME/rlreward/logs/smoke.log"]


def test_stop_signals_every_worker(tpu):
    (ssh,) = dry(tpu, "stop", "--grace=30")
    assert ssh[:6] == ["gcloud", "compute", "tpus", "tpu-vm", "ssh", NAME]
    assert "--worker=all" in ssh and f"--zone={ZONE}" in ssh
    command, _ = remote_command(ssh)
    assert "kill -TERM" in command and "-lt 30" in command


@pytest.mark.parametrize(
    "queued, expected",
    [
        (
            False,
            ["gcloud", "compute", "tpus", "tpu-vm", "delete", NAME, f"--zone={ZONE}", "--quiet"],
        ),
        (
            True,
            [
                "gcloud",
                "compute",
                "tpus",
                "queued-resources",
                "delete",
                NAME,
                f"--zone={ZONE}",
                "--force",
                "--quiet",
            ],
        ),
    ],
)
def test_delete(tpu, queued, expected):
    assert dry(tpu, "delete", *(["--queued"] if queued else [])) == [expected]


def test_project_reaches_every_gcloud_command(tpu):
    for args in [
        ("create", "--type=v4-8"),
        ("setup",),
        ("logs",),
        ("stop",),
        ("delete",),
        ("run", "--config=configs/smoke.py", "--workdir=gs://b/p"),
    ]:
        for argv in only_gcloud(dry(tpu, *args, "--project=my-project-1")):
            assert "--project=my-project-1" in argv, args


# --- errors --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    "args, message",
    [
        (["create", f"--zone={ZONE}", "--type=v4-8"], "--name"),
        (["create", f"--name={NAME}", "--type=v4-8"], "--zone"),
        (["create", "--name=Bad_Name", f"--zone={ZONE}", "--type=v4-8"], "--name='Bad_Name'"),
        (["create", "--name=-x", f"--zone={ZONE}", "--type=v4-8"], "--name='-x'"),
        (["create", f"--name={NAME}", "--zone=uscentral2b", "--type=v4-8"], "--zone='uscentral2b'"),
        (
            ["create", f"--name={NAME}", "--zone=us-central2-b;ls", "--type=v4-8"],
            "--zone='us-central2-b;ls'",
        ),
        (["create", f"--name={NAME}", "--zone=", "--type=v4-8"], "--zone: empty value"),
        (["create", "--name", NAME, f"--zone={ZONE}"], "--name needs a value"),
        (["launch", *LOC], "unknown subcommand 'launch'"),
        (["create", *LOC, "--type=v4-8", "--colour=red"], "unknown option '--colour'"),
        (
            ["create", *LOC, "--type=v4-8", "--config=configs/smoke.py"],
            "unknown option '--config' for create",
        ),
        (["setup", *LOC, "--spot"], "unknown option '--spot' for setup"),
        (["create", *LOC, "--spot=yes", "--type=v4-8"], "--spot takes no value"),
        (["create", *LOC], "--type"),
        (["create", *LOC, "--type=v9-8"], "--type='v9-8'"),
        (["create", *LOC, "--type=v4"], "--type='v4'"),
        (["create", *LOC, "--type=v4-8", "--project=X"], "--project='X'"),
        (["run", *LOC, "--workdir=gs://b/p"], "--config"),
        (["run", *LOC, "--config=configs/smoke.py"], "--workdir"),
        (
            ["run", *LOC, "--config=configs/nope.py", "--workdir=gs://b/p"],
            "--config='configs/nope.py'",
        ),
        (
            ["run", *LOC, "--config=configs/smoke.py", "--workdir=gs://b/p", "--module=rl;ls"],
            "--module='rl;ls'",
        ),
        (
            ["run", *LOC, "--config=configs/smoke.py", "--workdir=gs://b/p", "--run=a/b"],
            "--run='a/b'",
        ),
        (["run", *LOC, "--config=configs/smoke.py", "--workdir=gs://b/p", "stray"], "'stray'"),
        (["setup", *LOC, "--config.x=1"], "--config.x=1"),
        (["logs", *LOC, "--worker=first"], "--worker='first'"),
        (["stop", *LOC, "--grace=soon"], "--grace='soon'"),
    ],
)
def test_errors_name_the_flag_and_value(tpu, args, message):
    p = tpu(*args, "--dry-run")
    assert p.returncode != 0
    assert message in p.stderr, p.stderr
    assert p.stdout == ""  # no command was printed


# --- without --dry-run ---------------------------------------------------------------------


def test_without_dry_run_commands_run_and_the_first_failure_stops_the_script(tmp_path):
    """setup for real against a gcloud that fails: the tarball is made, scp is attempted, the
    install over ssh is never reached, the exit status is gcloud's and the tarball is removed."""
    script = make_repo_copy(tmp_path / "repo", "jax==1.2.3\n")
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(f"#!/bin/sh\necho \"$@\" >> '{tmp_path}/calls'\nexit 97\n")
    (bin_dir / "gcloud").chmod(0o755)
    env = {
        **os.environ,
        "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}",
        "TMPDIR": str(tmp_path),
    }
    p = subprocess.run(
        ["bash", str(script), "setup", *LOC], capture_output=True, text=True, env=env, timeout=60
    )
    assert p.returncode == 97
    tarball = tmp_path / f"rlreward-code-{NAME}.tar.gz"
    assert (tmp_path / "calls").read_text().split() == [
        "compute",
        "tpus",
        "tpu-vm",
        "scp",
        str(tarball),
        f"{NAME}:rlreward-code.tar.gz",
        f"--zone={ZONE}",
        "--worker=all",
    ]
    assert not tarball.exists()


def test_executed_argv_equals_the_printed_one(tpu, tmp_path):
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    (bin_dir / "gcloud").write_text(
        f"#!{sys.executable}\n"
        "import json, sys\n"
        f"open({str(tmp_path / 'argv.json')!r}, 'w').write(json.dumps(sys.argv[1:]))\n"
    )
    (bin_dir / "gcloud").chmod(0o755)
    args = ["run", *LOC, "--config=configs/smoke.py", "--workdir=gs://b/p", *TRICKY]
    p = subprocess.run(
        ["bash", str(SCRIPT), *args],
        capture_output=True,
        text=True,
        timeout=60,
        env={**os.environ, "PATH": f"{bin_dir}{os.pathsep}{os.environ['PATH']}"},
    )
    assert p.returncode == 0, p.stderr
    executed = json.loads((tmp_path / "argv.json").read_text())
    (printed,) = dry(tpu, "run", *args[3:])
    assert ["gcloud", *executed] == printed
    assert p.stderr.startswith("+ gcloud ")
