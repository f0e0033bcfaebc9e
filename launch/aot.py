"""Ahead-of-time memory check: compile a config's PPO programs for a TPU slice, without TPUs.

    python -m launch.aot --config=configs/qwen2_1p5b.py --topology=v4-64
    python -m launch.aot --config=configs/qwen2p5_math_7b.py --json=/tmp/aot_7b.json
    python -m launch.aot --config=configs/qwen2_1p5b.py --programs=update --hbm_gib=2 \\
        --config.policy.path= --config.policy.preset=qwen2_like:256,2

Without TPUs and without weights:
1. the config is resolved for the slice (`--topology`, else the config's own `topology`; a config
   file with a `topologies` list is rebuilt with `get_config(topology)` plus the command line's
   overrides), and the slice's devices are made: N fake CPU devices (XLA_FLAGS, set before JAX is
   imported), or with `--backend=tpu` libtpu's description of the TPU topology;
2. every model is built abstractly (`nnx.eval_shape`: shapes and dtypes, nothing allocated) with its
   shardings from the rule table. Shapes come from the checkpoint's config.json when its directory
   exists, else from the model's `preset` or the config's `aot_presets`;
3. the programs of a PPO iteration are lowered with those shardings and compiled: `update` (the PPO
   step of rl/algo/update.py on one minibatch; TrainState with the AdamW states, donated), `sample`
   (the rollout of rl/rollout/sampler.py: prefill + decode of prompts_per_batch x samples_per_prompt
   rows) and `score` (rl/algo/scoring.py: policy, critic, reference and PRM over the whole rollout);
4. per-device bytes are printed (and written with `--json`): `compiled.memory_analysis()` beside an
   analytic count (parameters and Adam moments from each array's shard shape under the rules, KV
   caches, an activation estimate), and each program's peak with the rest of the run's state
   resident (models and optimizer states stay in HBM between programs);
5. the largest peak is compared with the slice's HBM per device: exit status 1, naming config,
   slice, needed and available bytes, when it does not fit. A "fits on" line gives the analytic
   verdict for every slice the config supports (only the chosen one is compiled).

Backends. `cpu` (the default without libtpu): XLA:CPU compiles the SPMD-partitioned program.
Argument and output sizes follow from the shardings and hold for a TPU; its temporaries do not (it
does not schedule remat's recomputation late, so all layers' activations can be live at once), so
the analytic count gives the verdict. `tpu` (`pip install "libtpu==0.0.42.*"`, the version
jax[tpu] 0.10.2 pins; no TPU needed): XLA:TPU compiles for the slice from libtpu's description of
it, and its own buffer assignment gives the verdict. It takes several times longer.

This module holds the command line; launch/memory/ does the work, one step per module. Only the
modules that run before JAX is imported (launch.memory.resolve, launch.memory.backend) are imported
at the top: JAX reads JAX_PLATFORMS when first imported, set_fake_devices refuses to run after that,
and the device count is known only once the config is resolved for the slice.
"""

from __future__ import annotations

import json
import time

from absl import app, flags
from ml_collections import config_flags

from configs import topologies as topo
from launch.memory import PROGRAMS
from launch.memory.backend import pick_backend, prepare
from launch.memory.resolve import config_for

# Flags are defined when run as a program, not on import: tests import this module beside others
# (rl.train_rm) that define a --config flag of their own in absl's one global registry.
_CONFIG = _TOPOLOGY = _PROGRAMS = _HBM_GIB = _JSON = _BACKEND = None


def define_flags() -> None:
    global _CONFIG, _TOPOLOGY, _PROGRAMS, _HBM_GIB, _JSON, _BACKEND
    _CONFIG = config_flags.DEFINE_config_file(
        "config", None, "Config file (configs/NAME.py[:ARG]).", lock_config=True
    )
    _TOPOLOGY = flags.DEFINE_string(
        "topology", None, "TPU slice (configs/topologies.py); default: the config's `topology`."
    )
    _PROGRAMS = flags.DEFINE_list(
        "programs",
        list(PROGRAMS),
        "Programs to compile (the analytic count covers all three).",
    )
    _HBM_GIB = flags.DEFINE_float(
        "hbm_gib", None, "HBM per device to check against, GiB (default: the slice's)."
    )
    _JSON = flags.DEFINE_string("json", None, "Also write the report as JSON to this file.")
    _BACKEND = flags.DEFINE_enum(
        "backend",
        "auto",
        ["auto", "cpu", "tpu"],
        "cpu: fake CPU devices and XLA:CPU; tpu: XLA:TPU for the slice's topology (needs the "
        "libtpu package, not a TPU); auto: tpu when libtpu is installed, else cpu.",
    )


GIB = topo.GIB


def main(argv):
    del argv
    cfg = _CONFIG.value
    config_path = config_flags.get_config_filename(flags.FLAGS["config"])
    overrides = config_flags.get_override_values(flags.FLAGS["config"])
    name = _TOPOLOGY.value or cfg.get("topology")
    if not name:
        raise SystemExit(
            f"error: {config_path} names no topology; give --topology= (one of "
            f"{', '.join(topo.TOPOLOGIES)})"
        )
    unknown = sorted(set(_PROGRAMS.value) - set(PROGRAMS))
    if unknown:
        raise SystemExit(
            f"error: --programs={','.join(_PROGRAMS.value)}: unknown {unknown}; "
            f"choose from {PROGRAMS}"
        )
    try:
        topology = topo.get(name)
        cfg = config_for(name, cfg, config_path, overrides)
    except ValueError as e:
        raise SystemExit(f"error: {e}") from None
    backend = pick_backend(_BACKEND.value)
    prepare(backend, topology)

    # These import JAX, which reads JAX_PLATFORMS when imported (measured: set after `import jax`,
    # jax.config.jax_platforms stays None), so they come after prepare() has set the environment.
    from launch.memory.abstract import abstract_models  # noqa: PLC0415
    from launch.memory.assess import assess, fits_summary  # noqa: PLC0415
    from launch.memory.report import render  # noqa: PLC0415
    from rl.config import ConfigError, RLConfig  # noqa: PLC0415

    t0 = time.perf_counter()
    try:
        rl = RLConfig.from_config_dict(cfg)
        models = abstract_models(rl, cfg.get("aot_presets"))
        summary = fits_summary(cfg, models, config_path, overrides)
        hbm = int(_HBM_GIB.value * GIB) if _HBM_GIB.value is not None else topology.hbm_bytes
        result = assess(rl, models, topology, backend, _PROGRAMS.value, hbm, config_path, summary)
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None
    result["wall_s"] = round(time.perf_counter() - t0, 1)
    print("\n".join(render(result)), flush=True)
    if _JSON.value:
        with open(_JSON.value, "w") as f:
            json.dump(result, f, indent=2, default=str)
    if not result["fits"]:
        raise SystemExit(
            f"error: {config_path} does not fit on {topology.name}: needs "
            f"{result['needed_bytes']} bytes ({result['needed_bytes'] / GIB:.2f} GiB) "
            f"per device, {hbm} bytes ({hbm / GIB:.2f} GiB) available"
        )


if __name__ == "__main__":
    define_flags()
    app.run(main)
