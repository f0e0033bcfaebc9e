"""The verdict: the analytic count and the compiled programs for the chosen slice, each program's
peak with the rest of the run's state resident, and whether the largest fits the HBM per device.

With the tpu backend XLA:TPU's own buffer assignment decides; with cpu the analytic count does
(XLA:CPU's temporaries are not a TPU's). A program XLA:TPU refuses does not fit whatever the HBM
figure given. `fits_summary` gives the analytic verdict for every slice the config lists.
"""

from __future__ import annotations

import dataclasses
import math
from typing import Any

import jax

from configs import topologies as topo
from launch.memory import PROGRAMS
from launch.memory.abstract import Abstract
from launch.memory.analytic import analytic
from launch.memory.devices import devices_for
from launch.memory.programs import compile_programs
from launch.memory.resolve import config_for
from models.sharding import make_mesh
from rl.config import ConfigError, RLConfig


def _count(state) -> int:
    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))


def check_batch(rl) -> None:
    """What the batch sharding over (data, fsdp) needs (that the rows divide into minibatches and
    microbatches, RLConfig has checked: rl.config_batch)."""
    rows = rl.data.prompts_per_batch * rl.data.samples_per_prompt
    per_update, (data, fsdp, _) = rows // rl.ppo.minibatches, rl.mesh.shape
    for name, n in (("the rollout's rows", rows), ("the rows of one update", per_update)):
        if n % (data * fsdp):
            raise ConfigError(
                f"config.mesh.shape={rl.mesh.shape}: {name} = {n} does not split "
                f"over data x fsdp = {data * fsdp} devices"
            )


def peaks_and_verdict(est: dict[str, Any], compiled: dict[str, dict], backend: str):
    """Each program's peak (analytic; compiled where it was), the basis of the verdict, the worst
    program, the bytes it needs, and the programs XLA:TPU refused."""
    peaks = {}
    for name in PROGRAMS:
        prog, got = est["programs"][name], compiled.get(name)
        peak = None
        if got and got["argument"] is not None:
            peak = (
                got["argument"]
                + got["output"]
                - got["alias"]
                + got["temp"]
                + got["generated_code"]
                + prog["others"]
            )
        elif got and got["temp"] is not None:  # refused: its temporaries, the rest analytic
            peak = prog["args"] + got["temp"] + prog["others"]
        peaks[name] = dict(
            analytic=prog["peak"], compiled=peak, refused=bool(got) and "refused" in got
        )
    # XLA:TPU's own buffer assignment decides when it is there. XLA:CPU's temporaries are not a
    # TPU's (its scheduler does not keep remat's recomputation late, so every layer's activations
    # can be live at once: 50 GiB against XLA:TPU's 5-11 for the 1.5B update), so with the CPU
    # backend the analytic count decides.
    basis = "compiled" if backend == "tpu" and compiled else "analytic"
    worst = max((k for k in peaks if peaks[k][basis] is not None), key=lambda k: peaks[k][basis])
    needed = peaks[worst][basis]
    refused = [k for k, v in peaks.items() if v["refused"]]
    if refused:  # XLA:TPU's verdict, whatever the HBM figure given
        worst = refused[0]
        needed = peaks[worst]["compiled"] or peaks[worst]["analytic"]
    return peaks, basis, worst, needed, refused


def assess(
    rl: RLConfig,
    models: dict[str, Abstract],
    topology: topo.Topology,
    backend: str,
    programs,
    hbm_bytes: int,
    config_name: str,
    summary: dict[str, dict],
) -> dict[str, Any]:
    """Analytic count and compiled programs for `topology`, each program's peak, the verdict."""
    check_batch(rl)
    mesh = make_mesh(rl.mesh.shape, devices=devices_for(topology, backend))
    est = analytic(models, rl, dict(mesh.shape))
    compiled = compile_programs(models, rl, mesh, programs)
    peaks, basis, worst, needed, refused = peaks_and_verdict(est, compiled, backend)
    return dict(
        config=config_name,
        topology=dataclasses.asdict(topology),
        backend=backend,
        mesh=dict(mesh.shape),
        hbm_bytes=hbm_bytes,
        models={
            n: dict(
                params=_count(m.state),
                source=m.source,
                dtype=str(m.config.dtype),
                param_dtype=str(m.config.param_dtype),
                remat=m.config.remat,
            )
            for n, m in models.items()
        },
        analytic=est,
        compiled=compiled,
        peaks=peaks,
        basis=basis,
        worst=worst,
        needed_bytes=needed,
        fits=needed <= hbm_bytes and not refused,
        fits_on=summary,
    )


def fits_summary(cfg, models, config_path, overrides) -> dict[str, dict]:
    """Analytic peak for every slice the config lists (no compiling; shard arithmetic only).
    Model shapes do not depend on the slice: `models` serve every one."""
    out = {}
    for name in cfg.get("topologies", ()):
        t = topo.get(name)
        rl = RLConfig.from_config_dict(config_for(name, cfg, config_path, overrides))
        sizes = dict(zip(("data", "fsdp", "tensor"), rl.mesh.shape, strict=True))
        est = analytic(models, rl, sizes)
        peak = max(v["peak"] for v in est["programs"].values())
        out[name] = dict(
            peak=peak, hbm=t.hbm_bytes, fits=peak <= t.hbm_bytes, mesh=tuple(rl.mesh.shape)
        )
    return out
