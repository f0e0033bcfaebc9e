"""The programs of one PPO iteration, lowered with the run's shardings and compiled for the slice.

`update` is the PPO step of rl/algo/update.py on one minibatch (TrainState with the AdamW states,
donated), `sample` the rollout of rl/rollout/sampler.py (prefill + decode of prompts_per_batch x
samples_per_prompt rows), `score` rl/algo/scoring.py's pass of policy, critic, reference and PRM
over the whole rollout. Every argument is a ShapeDtypeStruct with its sharding, so nothing is
allocated; each compiled program reports its per-device bytes through memory_analysis(). A program
XLA:TPU refuses for want of HBM is recorded with the temporaries its message names.
"""

from __future__ import annotations

import re
import sys
import time
from typing import Any

import jax
import jax.numpy as jnp
from jax.sharding import NamedSharding, PartitionSpec

from launch.memory.abstract import Abstract
from models.prm import make_score_fn as make_prm_score_fn
from models.sharding import array_sharding, state_shardings, use_mesh
from rl.algo import update as upd
from rl.algo.prm_scorer import derived_bucket
from rl.algo.row_chunks import row_chunked
from rl.algo.scoring import make_score_fn
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig


def _refused_temp_bytes(message: str) -> int | None:
    """The temporaries XLA:TPU says a refused program needs ("... HLO temporaries (39.95G) ...")."""
    found = re.search(r"temporaries \(([\d.]+)([KMGT])\)", message)
    if not found:
        return None
    return int(float(found.group(1)) * 1024 ** " KMGT".index(found.group(2)))


def _with_shardings(abstract, shardings):
    return jax.tree.map(
        lambda a, s: jax.ShapeDtypeStruct(a.shape, a.dtype, sharding=s), abstract, shardings
    )


def compile_programs(models: dict[str, Abstract], rl, mesh, programs) -> dict[str, Any]:
    """Lower and compile each requested program with the run's shardings (`rl`, an RLConfig: its
    mesh.rules on `mesh`); memory_analysis() each."""
    d, ppo, rules = rl.data, rl.ppo, rl.mesh.rules
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
        pst = models["policy"].state
        has_critic = "critic" in models  # GAE only
        ctx = upd.make_optimizer(rl.optim, rl.optim.critic_learning_rate, total)
        cst = models["critic"].state if has_critic else None
        abstract = upd.TrainState(
            step=jax.ShapeDtypeStruct((), jnp.int32),
            policy=pst,
            critic=cst,
            policy_opt=jax.eval_shape(ptx.init, pst),
            critic_opt=jax.eval_shape(ctx.init, cst) if has_critic else None,
        )
        sharding = upd.state_shardings(
            abstract,
            (
                state_shardings(pst, mesh, rules),
                state_shardings(cst, mesh, rules) if has_critic else None,
            ),
            ptx,
            ctx,
            replicated,
        )
        fn = upd.make_update_fn(
            upd.Models(
                models["policy"].graphdef, models["critic"].graphdef if has_critic else None
            ),
            ppo,
            rl.reward,
            ptx,
            ctx if has_critic else None,
            p,
        )
        n = rows // ppo.minibatches
        batch = {
            k: sds(
                (n, p + r) if k in ("tokens", "attention_mask") else (n, r),
                jnp.int32 if k == "tokens" else jnp.bool_ if k.endswith("mask") else jnp.float32,
            )
            for k in upd.BATCH_KEYS
            if has_critic or k not in ("old_values", "returns")
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
        published = "prm" in models and rl.prm.published_format
        in_graph = {n: m.graphdef for n, m in models.items() if not (published and n == "prm")}
        # Block by block under rollout.score_rows, as the trainer runs it.
        policy_pass = row_chunked(make_score_fn(in_graph, p), rl.rollout.score_rows, (1, 2, 3))
        args = (
            {n: v for n, v in params.items() if n in in_graph},
            sds((rows, p + r), jnp.int32),
            sds((rows, p + r), jnp.bool_),
            sds((rows, r), jnp.bool_),
        )
        if not published:
            return jax.jit(policy_pass), args
        # A published PRM scores its own bucket in a second program; compiled here in one program
        # with the policy-space pass, whose peak bounds the two run one after the other.
        length, steps = derived_bucket(rl.prm, p, r)
        prm_pass = make_prm_score_fn(models["prm"].graphdef, sigmoid=False)

        def both(scored, seq, mask, last, prm_params, ids, prm_mask, positions):
            return policy_pass(scored, seq, mask, last), prm_pass(
                prm_params, ids, prm_mask, positions
            )

        return jax.jit(both), (
            *args,
            params["prm"],
            sds((rows, length), jnp.int32),
            sds((rows, length), jnp.bool_),
            sds((rows, steps), jnp.int32),
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
