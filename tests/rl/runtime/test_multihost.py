"""Multi-host PPO: two JAX processes on localhost (CPU, gloo) train as one process does.

The smoke config runs (a) as ONE process with 4 fake CPU devices and (b) as TWO processes with 2
fake devices each, joined by ``jax.distributed.initialize`` through the ``JAX_COORDINATOR_ADDRESS``
variables that ``rl.runtime.distributed.maybe_initialize`` reads. The mesh shape is (1, -1, 1) in
both, so the global mesh is the same 4 devices and the batch is sharded the same way; only the
process boundary differs. The two-process checkpoint is then restored and compared with one
process's.

Why 4 devices and not 8: the smoke batch is 8 rollout rows in 2 minibatches of 4, and a minibatch
is sharded over every device of the fsdp axis; 8 devices would need a twice larger batch, and the
test already costs ~90 CPU-seconds (XLA compiles every program once in each of three processes).
"""

import json
import os
import pathlib
import socket
import subprocess
import sys
import time

import jax
import numpy as np
import orbax.checkpoint as ocp

ROOT = pathlib.Path(__file__).resolve().parents[3]
ITERATIONS = 2
# Outcomes of discrete choices (sampled tokens, verifier verdicts): must be equal.
EXACT = (
    "reward/success",
    "reward/orm",
    "rollout/batch_accuracy",
    "rollout/finished_by_eos",
    "rollout/repeated_step_fraction",
    "rollout/response_length",
    "rollout/steps_per_response",
    "rollout/verifier_timeouts",
    "update/skipped",
    "update/bad_in_a_row",
)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("localhost", 0))
        return s.getsockname()[1]


def _env(devices: int, cache: pathlib.Path, **extra) -> dict[str, str]:
    e = {
        k: v
        for k, v in os.environ.items()
        if k not in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID")
    }
    # LLVM without optimisation passes: compiling is most of these runs' time and this cuts it by
    # a third; every run compared uses the same flags, and results come out the same.
    e.update(
        JAX_PLATFORMS="cpu",
        JAX_COMPILATION_CACHE_DIR=str(cache),
        XLA_FLAGS=(
            f"--xla_force_host_platform_device_count={devices} --xla_backend_optimization_level=0"
        ),
        **extra,
    )
    return e


def _cmd(workdir, data_dir, iterations: int):
    return [
        sys.executable,
        "-m",
        "rl.train",
        "--config=configs/smoke.py",
        f"--workdir={workdir}",
        f"--config.data_dir={data_dir}",
        f"--config.train.iterations={iterations}",
        "--config.mesh.shape=(1,-1,1)",
    ]


def _metrics(workdir):
    path = pathlib.Path(workdir) / "metrics.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines() if line.strip()]


def _launch(name, tmp_path, cmd, env):
    """A process whose stdout/stderr go to files (pipes could fill up while another is awaited)."""
    out, err = (open(tmp_path / f"{name}.{s}", "w") for s in ("out", "err"))
    with out, err:
        return subprocess.Popen(cmd, cwd=ROOT, env=env, stdout=out, stderr=err), tmp_path / name


def _wait(launched, deadline):
    """(returncode, stdout, stderr) of each; all are killed if any is past the deadline."""
    try:
        for p, _ in launched:
            p.wait(timeout=max(deadline - time.monotonic(), 1))
    finally:
        for p, _ in launched:
            if p.poll() is None:
                p.kill()
                p.wait()
    return [
        (
            p.returncode,
            pathlib.Path(f"{log}.out").read_text(),
            pathlib.Path(f"{log}.err").read_text(),
        )
        for p, log in launched
    ]


def _assert_same(record, reference):
    """Discrete outcomes equal; floats to rtol 1e-5, atol 1e-5 (see the test's docstring)."""
    assert record["step"] == reference["step"]
    keys = sorted(k for k in reference if not k.startswith("time/") and k != "step")
    assert keys == sorted(k for k in record if not k.startswith("time/") and k != "step")
    for key in keys:
        if key in EXACT:
            assert record[key] == reference[key], (record["step"], key)
        else:
            np.testing.assert_allclose(
                record[key],
                reference[key],
                rtol=1e-5,
                atol=1e-5,
                err_msg=f"step {record['step']} {key}",
            )


def _checkpoint(workdir, step):
    """The (state, loop) of one saved iteration, as numpy and JSON, restored in this process."""
    directory = pathlib.Path(workdir) / "checkpoints"
    # The target names this process's devices: the saved shardings name the saving processes'.
    checkpointer = ocp.StandardCheckpointer()
    saved = checkpointer.metadata(directory / str(step) / "state").item_metadata
    device = jax.sharding.SingleDeviceSharding(jax.devices()[0])
    target = jax.tree.map(lambda m: jax.ShapeDtypeStruct(m.shape, m.dtype, sharding=device), saved)
    state = checkpointer.restore(directory / str(step) / "state", target)
    manager = ocp.CheckpointManager(directory, item_names=("state", "loop"))
    loop = manager.restore(step, args=ocp.args.Composite(loop=ocp.args.JsonRestore()))["loop"]
    manager.close()
    return jax.tree.map(np.asarray, state), loop


def test_two_processes_train_like_one(tmp_path):
    """Metrics of every iteration match to rtol 1e-5 and atol 1e-5, not bit for bit: cross-device
    sums (gradients, sharded contractions, metric means) are reduced by gloo across processes but
    by XLA's in-process collectives in one process, in different orders, so float32 results differ
    in the last bits. Relative to their size, losses, norms and rewards differ by <= ~3e-6. The
    KL terms are differences of nearly equal log-probs (policy vs reference, ~0.002 out of ~3), so
    they carry the log-probs' absolute rounding error, not a relative one: ~1e-6 observed, up to
    5e-4 of the KL itself; hence the absolute tolerance, about 10x that. Sampled tokens, verdicts
    and step counts come out identical and are compared exactly; parameters in the checkpoints
    differ by ~1e-7."""
    t0 = time.monotonic()
    single, pair = tmp_path / "single", tmp_path / "pair"
    # (a) and (b) run side by side; each builds the toy dataset into its own data_dir (the two
    # processes of (b) share theirs: process 0 builds it, the other waits, then reads it).
    procs = [
        _launch(
            "single",
            tmp_path,
            _cmd(single, tmp_path / "tfds_single", ITERATIONS),
            _env(4, tmp_path / "jax_cache"),
        )
    ]
    port = _free_port()
    for pid in range(2):
        # One workdir for both processes, as a pod shares one gs:// path.
        procs.append(
            _launch(
                f"pair{pid}",
                tmp_path,
                _cmd(pair, tmp_path / "tfds_pair", ITERATIONS),
                _env(
                    2,
                    tmp_path / f"jax_cache_{pid}",
                    JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                    JAX_NUM_PROCESSES="2",
                    JAX_PROCESS_ID=str(pid),
                ),
            )
        )
    results = _wait(procs, t0 + 300)
    for rc, _, stderr in results:
        assert rc == 0, stderr[-3000:]

    # Only process 0 logged progress and wrote metrics: each iteration is in the file once.
    (_, out0, _), (_, out1, _) = results[1:]
    assert f"[iter {ITERATIONS}]" in out0 and "[iter" not in out1
    ref, got = _metrics(single), _metrics(pair)
    assert [r["step"] for r in ref] == [r["step"] for r in got] == list(range(1, ITERATIONS + 1))
    for record, reference in zip(got, ref, strict=True):
        _assert_same(record, reference)
    assert (pair / "config.json").exists() and (pair / "tensorboard").is_dir()
    assert (pair / "policy" / "model.safetensors").exists()  # gathered from both processes

    # The two-process checkpoint holds the whole state (each process wrote its own shards) and
    # restores, here in a third process, to what one process saved.
    state, loop = _checkpoint(pair, ITERATIONS)
    ref_state, ref_loop = _checkpoint(single, ITERATIONS)
    assert loop == ref_loop and loop["iteration"] == ITERATIONS
    paths = jax.tree_util.tree_flatten_with_path(state)[0]
    for (path, a), b in zip(paths, jax.tree.leaves(ref_state), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-5, atol=1e-6, err_msg=jax.tree_util.keystr(path))
    print(f"two-process test: {time.monotonic() - t0:.0f} s")


HELPERS_SCRIPT = """
import json, time
import jax, numpy as np
from jax.sharding import NamedSharding, PartitionSpec as P
from rl.runtime import distributed
distributed.maybe_initialize()
pid = jax.process_index()
mesh = jax.make_mesh((4,), ("fsdp",))
host = np.arange(24, dtype=np.float32).reshape(8, 3)
x = distributed.to_global(host, NamedSharding(mesh, P("fsdp")))
assert not x.is_fully_addressable and len(x.addressable_shards) == 2
y = jax.jit(lambda a: a * 2, out_shardings=NamedSharding(mesh, P("fsdp")))(x)
back = distributed.to_host({"y": y, "sum": y.sum()})
order = []
with distributed.main_process_first("test"):
    order.append(time.monotonic())
print(json.dumps({"pid": pid, "y": back["y"].tolist(), "sum": float(back["sum"]),
                  "stop": distributed.any_process(pid == 1), "keep": distributed.any_process(False),
                  "entered": order[0]}))
"""


def test_helpers_across_two_processes(tmp_path):
    """to_global / to_host round-trip a sharded array; any_process agrees on every process;
    main_process_first lets process 0 through first."""
    port = _free_port()
    procs = [
        _launch(
            f"h{pid}",
            tmp_path,
            [sys.executable, "-c", HELPERS_SCRIPT],
            _env(
                2,
                tmp_path / f"cache{pid}",
                JAX_COORDINATOR_ADDRESS=f"localhost:{port}",
                JAX_NUM_PROCESSES="2",
                JAX_PROCESS_ID=str(pid),
                PYTHONPATH=str(ROOT),
            ),
        )
        for pid in range(2)
    ]
    results = _wait(procs, time.monotonic() + 120)
    outs = []
    for rc, stdout, stderr in results:
        assert rc == 0, stderr[-3000:]
        outs.append(json.loads(stdout.strip().splitlines()[-1]))
    want = (np.arange(24, dtype=np.float32).reshape(8, 3) * 2).tolist()
    for pid, out in enumerate(outs):
        assert out["pid"] == pid and out["y"] == want and out["sum"] == float(np.sum(want))
        assert out["stop"] is True and out["keep"] is False
    assert outs[0]["entered"] <= outs[1]["entered"]
