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
   step of rl/update.py on one minibatch; TrainState with the AdamW states, donated), `sample` (the
   rollout of rl/sampler.py: prefill + decode of prompts_per_batch x samples_per_prompt rows) and
   `score` (rl/scoring.py: policy, critic, reference and PRM over the whole rollout);
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
jax[tpu] 0.10.2 pins; no TPU needed): XLA:TPU compiles for the slice, as MaxText's train_compile
does, and its own buffer assignment gives the verdict. It takes several times longer.

JAX is imported inside the functions below, not at the top: the fake device count must be in
XLA_FLAGS before the first import, and it is known only once the config is resolved.
"""

from __future__ import annotations

import dataclasses
import importlib.util
import json
import math
import os
import re
import sys
import time
from typing import Any

from absl import app, flags
from ml_collections import config_flags

from configs import topologies as topo

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
        ["update", "sample", "score"],
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


PROGRAMS = ("update", "sample", "score")
GIB = topo.GIB


# --- Config and devices ---------------------------------------------------------------------------


def _config_module(path: str):
    spec = importlib.util.spec_from_file_location("_aot_config", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def config_for(topology: str, cfg, config_path: str, overrides: dict[str, Any]):
    """The config for `topology`: rebuilt by the config file when it lists topologies (mesh and
    microbatches depend on the slice), else `cfg` with the slice's default mesh."""
    if topology == cfg.get("topology"):
        return cfg
    if "topologies" in cfg:
        new = _config_module(config_path).get_config(topology)
        new.update_from_flattened_dict(dict(overrides))
        return new
    new = cfg.copy_and_resolve_references()
    new.unlock()
    new.mesh.shape = topo.mesh_shape(topology)
    new.topology = topology
    return new


def set_fake_devices(n: int) -> None:
    """N fake CPU devices; must run before JAX is imported."""
    if "jax" in sys.modules:
        raise RuntimeError("launch.aot: JAX was imported before the device count was set")
    kept = [
        f
        for f in os.environ.get("XLA_FLAGS", "").split()
        if not f.startswith("--xla_force_host_platform_device_count")
    ]
    os.environ["XLA_FLAGS"] = " ".join(kept + [f"--xla_force_host_platform_device_count={n}"])
    os.environ["JAX_PLATFORMS"] = "cpu"


def pick_backend(flag: str) -> str:
    if flag != "auto":
        return flag
    return "tpu" if importlib.util.find_spec("libtpu") is not None else "cpu"


def devices_for(topology: topo.Topology, backend: str) -> list:
    """The slice's devices: fake CPU ones, or libtpu's description of the TPU topology (compiling
    for it needs no TPU: jax.experimental.topologies, as MaxText's train_compile does)."""
    import jax

    if backend == "cpu":
        return jax.devices()[: topology.devices]
    from jax.experimental import topologies as jax_topologies

    megacore = topology.generation in ("v4", "v5p")
    desc = jax_topologies.get_topology_desc(
        platform="tpu",
        topology_name=f"{topology.generation}:{topology.shape}",
        chip_config_name="megacore" if megacore else "default",
        chips_per_host_bounds=(2, 2, 1) if megacore or topology.chips < 8 else (2, 4, 1),
        num_slices=1,
    )
    if len(desc.devices) != topology.devices:
        raise RuntimeError(
            f"libtpu describes {topology.name} with {len(desc.devices)} devices, "
            f"configs/topologies.py says {topology.devices}"
        )
    return list(desc.devices)


# --- Models, abstractly ---------------------------------------------------------------------------


@dataclasses.dataclass
class Abstract:
    """One model: config, where its shapes came from, graphdef and abstract state."""

    config: Any
    source: str
    graphdef: Any
    state: Any


def model_config(name: str, spec, cfg):
    """A model section's ModelConfig without reading weights: preset, config.json or aot_presets."""
    from models import hf_io, presets
    from models.config import ModelConfig
    from rl.config import ConfigError

    numerics = dict(dtype=spec.dtype, param_dtype=spec.param_dtype, remat=spec.remat)

    def from_preset(preset):
        values = presets.get_config(preset).to_dict()
        values.update(numerics, **dict(spec.overrides))
        return ModelConfig.from_dict(values)

    if spec.preset:
        return from_preset(spec.preset), f"preset {spec.preset}"
    if spec.path and os.path.exists(os.path.join(spec.path, "config.json")):
        return (
            hf_io.load_config(spec.path, **numerics, **dict(spec.overrides)),
            os.path.join(spec.path, "config.json"),
        )
    fallback = (cfg.get("aot_presets") or {}).get(name, "")
    if not fallback:
        raise ConfigError(
            f"config.{name}.path={spec.path!r}: no config.json there, and no "
            f"aot_presets.{name} to take shapes from"
        )
    return from_preset(fallback), f"preset {fallback} (no checkpoint at {spec.path})"


def abstract_models(cfg, rl) -> dict[str, Abstract]:
    """policy, critic, and the frozen models the trainer would load (ref always; prm when
    configured; orm / implicit when their reward weight is > 0)."""
    from flax import nnx

    from models.decoder import CausalLM
    from models.heads import RewardModel, ValueModel
    from rl.runtime.model_builder import ModelSpec

    specs = {
        n: ModelSpec.from_section(n, cfg.get(n)) for n in ("policy", "prm", "orm", "implicit_prm")
    }

    def build(make, config, source):
        graphdef, state = nnx.split(nnx.eval_shape(make))
        return Abstract(config, source, graphdef, state)

    pcfg, psrc = model_config("policy", specs["policy"], cfg)
    out = {
        "policy": build(lambda: CausalLM(pcfg, rngs=nnx.Rngs(0)), pcfg, psrc),
        "critic": build(lambda: ValueModel(pcfg, rngs=nnx.Rngs(0)), pcfg, psrc),
    }
    # The trainer's reference is a copy of the policy (same dtypes): rl/models_setup.frozen_copy.
    out["ref"] = out["policy"]
    for name, key, used in (
        ("prm", "prm", specs["prm"].configured),
        ("orm", "orm", rl.reward.uses_orm),
        ("implicit", "implicit_prm", rl.reward.uses_implicit_prm),
    ):
        if not used:
            continue
        spec = specs[key]
        mcfg, src = model_config(key, spec, cfg)
        if name == "implicit":
            out[name] = build(lambda c=mcfg: CausalLM(c, rngs=nnx.Rngs(0)), mcfg, src)
        else:
            # Token ids only matter for shapes here: any two ids of the vocabulary.
            ids = dict(good_token_id=0, bad_token_id=1) if spec.kind == "token_prob" else {}
            out[name] = build(
                lambda c=mcfg, k=spec.kind, i=ids: RewardModel(c, k, rngs=nnx.Rngs(0), **i),
                mcfg,
                src,
            )
    return out


# --- Analytic count -------------------------------------------------------------------------------


def shard_factor(logical_axes, shape, sizes, rules) -> int:
    """How many ways the rules split an array of `shape` on a mesh of `sizes` (what
    models.sharding.state_shardings would give it)."""
    from models.sharding import logical_to_spec

    spec = logical_to_spec(logical_axes, rules, sizes, shape)
    factor = 1
    for entry in spec:
        for axis in () if entry is None else (entry,) if isinstance(entry, str) else entry:
            factor *= sizes[axis]
    return factor


def state_bytes(state, sizes, rules) -> int:
    """Per-device bytes of an abstract nnx state: each array's bytes over its shard factor."""
    import jax
    from flax import nnx

    total = 0
    for var in jax.tree.leaves(state, is_leaf=lambda x: isinstance(x, nnx.Variable)):
        value = var.get_value()
        axes = var.get_metadata().get("out_sharding")
        factor = shard_factor(axes, value.shape, sizes, rules) if axes else 1
        total += math.prod(value.shape) * value.dtype.itemsize // factor
    return total


def _dim_factor(name: str, n: int, sizes, rules) -> int:
    return shard_factor((name,), (n,), sizes, rules)


def analytic(models: dict[str, Abstract], rl, sizes: dict[str, int], rules) -> dict[str, Any]:
    """Per-device bytes of state and an estimate of each program's transient memory.

    The activation terms are estimates (what the model code materializes, one layer at a time under
    remat); the state terms are exact up to replicated scalars.
    """
    import numpy as np

    from models.config import matmul_params

    d, ppo = rl.data, rl.ppo
    pc = models["policy"].config
    p, r = d.max_prompt_len, rl.rollout.max_new_tokens
    s = p + r
    prompts, rows = d.prompts_per_batch, d.prompts_per_batch * d.samples_per_prompt
    rows_u = rows // ppo.minibatches
    c = np.dtype(pc.dtype).itemsize
    params = {n: state_bytes(m.state, sizes, rules) for n, m in models.items()}
    trained = params["policy"] + params["critic"]
    adam = 2 * trained  # mu and nu in the parameters' dtype (optax.adamw's default)

    def per_device(n_rows):
        return max(1, math.ceil(n_rows / _dim_factor("batch", n_rows, sizes, rules)))

    def layer_act(mc, n_rows, length, backward):
        """One decoder layer's activations for n_rows x length tokens (x2 with its gradients)."""
        t = lambda name, n: n // _dim_factor(name, n, sizes, rules)  # noqa: E731
        h, k, dh = t("act_heads", mc.num_heads), t("act_kv_heads", mc.num_kv_heads), mc.head_dim
        f = t("act_mlp", mc.intermediate_size)
        cb = np.dtype(mc.dtype).itemsize
        per_token = (
            (h + 2 * k) * dh * cb + 3 * f * cb + 4 * mc.hidden_size * cb + h * length * (4 + cb)
        )  # q k v, SwiGLU, residuals, fp32 scores, probs
        return n_rows * length * per_token * (2 if backward else 1)

    def vocab_shard(mc):
        return mc.vocab_size // _dim_factor("act_vocab", mc.vocab_size, sizes, rules)

    def gathered_embedding(mc):
        return vocab_shard(mc) * mc.hidden_size * np.dtype(mc.param_dtype).itemsize

    # update: one minibatch, microbatch by microbatch.
    b = per_device(rows_u // ppo.microbatches)
    if pc.remat:  # each layer's input, for policy and critic
        saved = 2 * pc.num_layers * b * s * pc.hidden_size * c
    else:  # every layer's activations
        saved = 2 * pc.num_layers * layer_act(pc, b, s, backward=False)
    # XLA:TPU computes each layer's weight gradient at full (unsharded) size and reduce-scatters it
    # later; measured, it holds about one model's worth at once (7B on v5e-64: 28 GiB of
    # temporaries where the other terms give 8).
    layer_weights = matmul_params(pc) - pc.vocab_size * pc.hidden_size  # all layers, no head
    pending_grads = (
        layer_weights
        * np.dtype(pc.param_dtype).itemsize
        // _dim_factor("mlp", pc.intermediate_size, sizes, rules)
    )
    update_act = {
        "unsharded layer weight gradients (pre reduce-scatter)": pending_grads,
        "layer activations kept for backward": saved,
        "one layer recomputed + its gradients": layer_act(pc, b, s, backward=True),
        "logits and their gradient (fp32)": 2 * b * s * vocab_shard(pc) * 4,
        "gradient accumulators + microbatch gradients": 2 * trained,
        "optimizer update tree": trained,
        "all-gathered embedding / LM head": gathered_embedding(pc),
    }
    minibatch = per_device(rows_u) * (s * (4 + 1) + r * (1 + 5 * 4))  # tokens,mask | resp,5 fp32
    # The iteration's rollout stays on device through the updates: sequences and masks, then per
    # response token 3 masks and 7 fp32 arrays (log-probs, values, PRM scores, rewards, GAE).
    rollout_buffers = per_device(rows) * (s * (4 + 1) + r * (3 + 7 * 4))

    # sample: prefill of `prompts` rows, decode of `rows` rows.
    kh = pc.num_kv_heads // _dim_factor("kv_heads", pc.num_kv_heads, sizes, rules)
    bp, bn = per_device(prompts), per_device(rows)
    kv_prefix = 2 * pc.num_layers * bp * p * kh * pc.head_dim * c * 2  # cache + decode layout
    kv_decode = 2 * pc.num_layers * bn * kh * pc.head_dim * max(r - 1, 1) * c
    sample_act = {
        "KV cache: prompts' prefix (prefill + decode layout)": kv_prefix,
        "KV cache: per-sample decode slots": kv_decode,
        "prefill: one layer's activations": layer_act(pc, bp, p, backward=False),
        "decode: logits and sampling (fp32)": 2 * bn * vocab_shard(pc) * 4,
        "all-gathered embedding / LM head": gathered_embedding(pc),
        "outputs: tokens, log-probs, masks": bn * r * (4 + 4 + 4 + 1),
    }

    # score: every model over the whole rollout, one after the other.
    lm = [m.config for n, m in models.items() if n in ("policy", "ref", "implicit")]
    score_act = {
        "largest model: one layer's activations + hidden states": max(
            layer_act(m.config, bn, s, backward=False) + 2 * bn * s * m.config.hidden_size * c
            for m in models.values()
        ),
        # XLA:TPU sometimes keeps a second [rows, S, V] fp32 buffer (the log-softmax) and
        # sometimes fuses it away; counting both keeps the estimate on the safe side.
        "logits + log-softmax of one LM (fp32)": max(2 * bn * s * vocab_shard(m) * 4 for m in lm),
        "all-gathered embedding / LM head": max(
            gathered_embedding(m.config) for m in models.values()
        ),
        "outputs": bn * r * 4 * (3 + len(models)),
    }
    frozen = sum(v for n, v in params.items() if n not in ("policy", "critic"))
    resident = trained + adam + frozen
    programs = {
        "update": dict(
            args=trained + adam + minibatch, transient=update_act, others=frozen + rollout_buffers
        ),
        "sample": dict(
            args=params["policy"] + bp * p * (4 + 1),
            transient=sample_act,
            others=resident - params["policy"],
        ),
        "score": dict(args=trained + frozen + bn * (s * 5 + r), transient=score_act, others=adam),
    }
    for prog in programs.values():
        prog["peak"] = prog["args"] + sum(prog["transient"].values()) + prog["others"]
    return dict(
        params=params,
        adam=adam,
        resident=resident,
        minibatch=minibatch,
        rollout_buffers=rollout_buffers,
        kv_cache=kv_prefix + kv_decode,
        programs=programs,
    )


def _refused_temp_bytes(message: str) -> int | None:
    """The temporaries XLA:TPU says a refused program needs ("... HLO temporaries (39.95G) ...")."""
    found = re.search(r"temporaries \(([\d.]+)([KMGT])\)", message)
    if not found:
        return None
    return int(float(found.group(1)) * 1024 ** " KMGT".index(found.group(2)))


# --- Compiling ------------------------------------------------------------------------------------


def _with_shardings(abstract, shardings):
    import jax

    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def compile_programs(models: dict[str, Abstract], rl, mesh, rules, programs) -> dict[str, Any]:
    """Lower and compile each requested program with the run's shardings; memory_analysis() each."""
    import jax
    import jax.numpy as jnp
    from jax.sharding import NamedSharding, PartitionSpec

    from models.sharding import array_sharding, state_shardings, use_mesh
    from rl.algo import update as upd
    from rl.algo.scoring import make_score_fn
    from rl.rollout.sampler import Sampler
    from rl.rollout.sampler_config import SamplerConfig

    d, ppo = rl.data, rl.ppo
    p, r = d.max_prompt_len, rl.rollout.max_new_tokens
    prompts, rows = d.prompts_per_batch, d.prompts_per_batch * d.samples_per_prompt
    replicated = NamedSharding(mesh, PartitionSpec())
    batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    params = {
        n: _with_shardings(m.state, state_shardings(m.state, mesh, rules))
        for n, m in models.items()
    }

    def sds(shape, dtype, sharding=batch_sh):
        return jax.ShapeDtypeStruct(shape, dtype, sharding=sharding)

    def update():
        total = rl.train.iterations * ppo.epochs * ppo.minibatches
        ptx = upd.make_optimizer(rl.optim, rl.optim.learning_rate, total)
        ctx = upd.make_optimizer(rl.optim, rl.optim.critic_learning_rate, total)
        pst, cst = models["policy"].state, models["critic"].state
        abstract = upd.TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32),
            policy=pst,
            critic=cst,
            policy_opt=jax.eval_shape(ptx.init, pst),
            critic_opt=jax.eval_shape(ctx.init, cst),
        )
        sharding = upd.state_shardings(
            abstract,
            (state_shardings(pst, mesh, rules), state_shardings(cst, mesh, rules)),
            ptx,
            ctx,
            replicated,
        )
        fn = upd.make_update_fn(
            upd.Models(models["policy"].graphdef, models["critic"].graphdef),
            ppo,
            rl.reward,
            ptx,
            ctx,
            p,
        )
        n = rows // ppo.minibatches
        batch = {
            k: sds(
                (n, p + r) if k in ("tokens", "attention_mask") else (n, r),
                jnp.int32 if k == "tokens" else jnp.bool_ if k.endswith("mask") else jnp.float32,
            )
            for k in upd.BATCH_KEYS
        }
        return (
            upd.jit_update(fn, sharding, batch_sh, replicated),
            (_with_shardings(abstract, sharding), batch),
        )

    def sample():
        pc = models["policy"].config
        eos = pc.eos_token_id if isinstance(pc.eos_token_id, int) else 0
        stops = tuple(rl.rollout.stop_strings)
        sampler = Sampler(
            models["policy"].graphdef,
            SamplerConfig(
                max_new_tokens=r,
                temperature=rl.rollout.temperature,
                top_p=rl.rollout.top_p,
                top_k=rl.rollout.top_k,
                eos_ids=(eos,),
                stop_strings=stops,
                samples_per_prompt=d.samples_per_prompt,
            ),
            mesh=mesh,
            rules=rules,
            token_bytes=[b""] if stops else None,
        )
        prompt_sh = array_sharding(("batch", None), (prompts, p), mesh, rules)
        key = jax.eval_shape(lambda: jax.random.key(0))
        # The stop-string automaton's table: at most one state per byte, plus start and MATCH.
        table = (
            sds((sum(len(x.encode()) for x in stops) + 2, pc.vocab_size), jnp.int32, replicated)
            if stops
            else None
        )
        # The rollout program itself, as Sampler.__call__ runs it.
        return sampler._generate, (
            params["policy"],
            sds((prompts, p), jnp.int32, prompt_sh),
            sds((prompts, p), jnp.bool_, prompt_sh),
            sds(key.shape, key.dtype, replicated),
            table,
        )

    def score():
        fn = jax.jit(make_score_fn({n: m.graphdef for n, m in models.items()}, p))
        return fn, (
            params,
            sds((rows, p + r), jnp.int32),
            sds((rows, p + r), jnp.bool_),
            sds((rows, r), jnp.bool_),
        )

    builders = {"update": update, "sample": sample, "score": score}
    out = {}
    for name in programs:
        print(f"launch.aot: compiling {name} ...", file=sys.stderr, flush=True)
        t0 = time.perf_counter()
        fn, args = builders[name]()  # outside the mesh context: nothing here may run on it
        with use_mesh(mesh, rules):
            lowered = fn.lower(*args)
        t1 = time.perf_counter()
        try:
            compiled = lowered.compile()
        except jax.errors.JaxRuntimeError as e:
            # XLA:TPU refuses a program whose temporaries exceed the HBM it can use.
            if "RESOURCE_EXHAUSTED" not in str(e):
                raise
            out[name] = dict(
                refused=str(e).splitlines()[0],
                temp=_refused_temp_bytes(str(e)),
                argument=None,
                output=0,
                alias=0,
                generated_code=0,
                lower_s=round(t1 - t0, 1),
                compile_s=round(time.perf_counter() - t1, 1),
            )
            continue
        t2 = time.perf_counter()
        m = compiled.memory_analysis()
        out[name] = dict(
            argument=m.argument_size_in_bytes,
            output=m.output_size_in_bytes,
            alias=m.alias_size_in_bytes,
            temp=m.temp_size_in_bytes,
            generated_code=m.generated_code_size_in_bytes,
            lower_s=round(t1 - t0, 1),
            compile_s=round(t2 - t1, 1),
        )
    return out


# --- Report ---------------------------------------------------------------------------------------


def _count(state) -> int:
    import jax

    return sum(math.prod(x.shape) for x in jax.tree.leaves(state))


def check_batch(rl) -> None:
    """What the trainer checks, plus what the batch sharding over (data, fsdp) needs."""
    from rl.config import ConfigError

    rows = rl.data.prompts_per_batch * rl.data.samples_per_prompt
    per_update, (data, fsdp, _) = rows // rl.ppo.minibatches, rl.mesh.shape
    if rows % rl.ppo.minibatches or per_update % rl.ppo.microbatches:
        raise ConfigError(
            f"config.ppo.minibatches={rl.ppo.minibatches}, microbatches="
            f"{rl.ppo.microbatches}: must divide the {rows} rollout rows evenly"
        )
    for name, n in (("the rollout's rows", rows), ("the rows of one update", per_update)):
        if n % (data * fsdp):
            raise ConfigError(
                f"config.mesh.shape={rl.mesh.shape}: {name} = {n} does not split "
                f"over data x fsdp = {data * fsdp} devices"
            )


def assess(
    cfg,
    models: dict[str, Abstract],
    topology: topo.Topology,
    backend: str,
    programs,
    hbm_bytes: int,
    config_name: str,
    summary: dict[str, dict],
) -> dict[str, Any]:
    """Analytic count and compiled programs for `topology`, each program's peak, the verdict."""
    from configs.sharding import RULES
    from models.sharding import make_mesh
    from rl.config import RLConfig

    rl = RLConfig.from_config_dict(cfg)
    check_batch(rl)
    rules = tuple(cfg.get("sharding_rules", RULES))
    mesh = make_mesh(rl.mesh.shape, devices=devices_for(topology, backend))
    est = analytic(models, rl, dict(mesh.shape), rules)
    compiled = compile_programs(models, rl, mesh, rules, programs)
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


_ARGS = {
    "update": "arguments: policy+critic params, Adam, minibatch",
    "sample": "arguments: policy params, prompts",
    "score": "arguments: every model's params, the rollout",
}


def render(r: dict[str, Any]) -> list[str]:
    """The report as text: per-device GiB, analytic beside compiled."""

    def row(label, a=None, c=None, indent=2):
        num = lambda x: "" if x is None else f"{x / GIB:.3f}"  # noqa: E731
        return f"{' ' * indent}{label:<{58 - indent}}{num(a):>9}{num(c):>10}".rstrip()

    t, est = r["topology"], r["analytic"]
    lines = [
        f"launch.aot: {r['config']} on {t['name']} ({t['chips']} chips = {t['devices']} JAX "
        f"devices, {t['hosts']} hosts), mesh (data, fsdp, tensor) = "
        f"{tuple(r['mesh'].values())}, "
        + (f"compiled by XLA:{r['backend'].upper()}" if r["compiled"] else "nothing compiled")
    ]
    for name, m in r["models"].items():
        if name != "ref":
            lines.append(
                f"  {name:9s}{m['params'] / 1e9:6.2f}B params, {m['param_dtype']} params, "
                f"{m['dtype']} compute, remat={m['remat']}; shapes: {m['source']}"
            )
    lines += [
        "  ref      a copy of the policy (as rl/models_setup.frozen_copy makes it)",
        "",
        f"{'per device, GiB':<58}{'analytic':>9}{'compiled':>10}",
    ]
    lines += [row(f"{name} parameters", v) for name, v in est["params"].items()]
    lines.append(row("Adam mu + nu (policy + critic)", est["adam"]))
    lines.append(row("KV caches of one rollout (in sample's temporaries)", est["kv_cache"]))
    for name in PROGRAMS:
        prog, got = est["programs"][name], r["compiled"].get(name)
        lines.append(
            f" {name}"
            + (
                f" (lowered {got['lower_s']} s, compiled {got['compile_s']} s)"
                if got
                else " (not compiled)"
            )
        )
        if got and "refused" in got:
            lines.append(f"  XLA:TPU refused it: {got['refused']}")
        lines.append(row(_ARGS[name], prog["args"], got and got["argument"]))
        if got and got["argument"] is not None:
            lines.append(f"{'    compiled / analytic':58s}{got['argument'] / prog['args']:>19.3f}")
        lines += [row(item, v, indent=4) for item, v in prog["transient"].items()]
        lines.append(
            row(
                "temporaries (analytic: the sum above)",
                sum(prog["transient"].values()),
                got and got["temp"],
            )
        )
        if got and got["argument"] is not None:
            lines.append(
                row(
                    "outputs not aliased to arguments, generated code",
                    None,
                    got["output"] - got["alias"] + got["generated_code"],
                )
            )
        lines.append(row("resident meanwhile (other models, Adam, rollout)", prog["others"]))
        peak = r["peaks"][name]
        lines.append(row(f"PEAK {name}", peak["analytic"], peak["compiled"]))
    lines += [
        "",
        f"needed per device: {r['needed_bytes'] / GIB:.3f} GiB ({r['worst']}, "
        f"{r['basis']}); available {r['hbm_bytes'] / GIB:.2f} GiB: "
        f"{'fits' if r['fits'] else 'DOES NOT FIT'}",
    ]
    if r["backend"] == "cpu" and r["compiled"]:
        lines.append(
            "  (the analytic count decides: XLA:CPU's temporaries overstate a TPU's; "
            "--backend=tpu compiles with XLA:TPU where libtpu is installed)"
        )
    verdict = lambda ok: [
        f"{n} ({v['peak'] / GIB:.1f}/{v['hbm'] / GIB:.0f})"  # noqa: E731
        for n, v in r["fits_on"].items()
        if v["fits"] == ok
    ]
    if r["fits_on"]:
        lines.append(f"fits on (analytic peak/HBM GiB): {', '.join(verdict(True)) or 'none'}")
        if verdict(False):
            lines.append(f"does not fit on: {', '.join(verdict(False))}")
    return lines


def fits_summary(cfg, models, config_path, overrides) -> dict[str, dict]:
    """Analytic peak for every slice the config lists (no compiling; shard arithmetic only).
    Model shapes do not depend on the slice: `models` serve every one."""
    from configs.sharding import RULES
    from rl.config import RLConfig

    out = {}
    for name in cfg.get("topologies", ()):
        t = topo.get(name)
        c = config_for(name, cfg, config_path, overrides)
        rl = RLConfig.from_config_dict(c)
        sizes = dict(zip(("data", "fsdp", "tensor"), rl.mesh.shape))
        est = analytic(models, rl, sizes, tuple(c.get("sharding_rules", RULES)))
        peak = max(v["peak"] for v in est["programs"].values())
        out[name] = dict(
            peak=peak, hbm=t.hbm_bytes, fits=peak <= t.hbm_bytes, mesh=tuple(rl.mesh.shape)
        )
    return out


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
    if backend == "tpu":
        # libtpu only describes the slice; no TPU is opened. Its start-up asks for these.
        os.environ["JAX_PLATFORMS"] = "cpu"
        os.environ.setdefault("TPU_ACCELERATOR_TYPE", topology.name)
        os.environ.setdefault("TPU_WORKER_HOSTNAMES", "localhost")
    else:
        set_fake_devices(topology.devices)

    from rl.config import ConfigError, RLConfig

    t0 = time.perf_counter()
    try:
        models = abstract_models(cfg, RLConfig.from_config_dict(cfg))
        summary = fits_summary(cfg, models, config_path, overrides)
        hbm = int(_HBM_GIB.value * GIB) if _HBM_GIB.value is not None else topology.hbm_bytes
        result = assess(cfg, models, topology, backend, _PROGRAMS.value, hbm, config_path, summary)
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
