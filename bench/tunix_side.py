"""The peer's side of the benches: google-tunix 0.1.7 on the configurations of
bench/ppo_iteration.py and bench/sampler.py, written from tunix's public API and its tests
(tests/rl/ppo/ppo_learner_test.py, tunix/models/dummy_model_creator.py).

Run only by a tunix interpreter (``/tmp/tunixvenv/bin/python``, made as those benches' docstrings
say), as a subprocess of the bench that passes ``--tunix_python``; it never imports this project
(the project's venv has no tunix, the tunix venv has none of the project's code on its path):

    python bench/tunix_side.py ppo SPEC.json       # PPOLearner on an RLCluster; 9 steps
    python bench/tunix_side.py sampler SPEC.json   # tunix.generate.sampler.Sampler, greedy

SPEC.json is written by the calling bench (shapes, prompts, tokenizer or checkpoint directory).
Prints ONE JSON object on stdout.

``ppo``: a random Qwen2 (``tunix.models.qwen2``, created by ``dummy_model_creator`` as tunix's own
tooling does: normal(0, 0.02) weights) as actor, a second one of the same seed as reference, and
``tunix.rl.utils.create_critic_model`` (the actor's copy with a 1-wide head) as critic, on one
(fsdp=1, tp=1) mesh for every role; vanilla rollout with a KV cache of prompt + new tokens (the
least tunix accepts); ``PPOConfig(num_iterations=1)`` (one epoch), mini-batch = the whole 16-row
batch (one minibatch), GAE gamma 1 / lambda 0.95, KL "kl" (k1) into the reward at beta = the
project's kl_coef; the reward function is success only (the last ``\\boxed{}`` equals the answer).
Steady state: the wall clock is read when tunix pulls each batch from the dataset (it does so at
the start of every global step) and when ``train()`` returns; (t(9 steps) - t(3 steps)) / 6 is the
mean of steps 4-9 of that one run, so compilation (steps 1-3 hold all of it) drops out. With
``"lockstep": true`` in the spec, before each pull the actor's and critic's parameters are waited
for, ``{"waiting": k}`` is printed and a ``go`` line is read from stdin: the caller runs its own
work in that pause, which no step's time includes.

``sampler``: the bench's tied Qwen2 checkpoint loaded with ``tunix.models.qwen2.params.
create_model_from_safe_tensors`` (the same weights the project's sampler runs), the same prompt
ids through a pass-through tokenizer (ids as text; tunix's TokenizerAdapter takes any object with
encode/decode/bos_id/eos_id/pad_id), greedy (or the bench's temperature / top-k / top-p), no EOS,
``max_prompt_length`` = the prompt width, cache = prompt + new tokens; the median and best of
``repeats`` timed calls after one compiling call, and the generated ids so the caller can check
that both sides decoded the same tokens.
"""

import json
import re
import sys
import time
from importlib import metadata

import jax
import jax.numpy as jnp
import numpy as np
import optax
import transformers
from flax import nnx
from tunix.generate import sampler as sampler_lib
from tunix.models import dummy_model_creator
from tunix.models.qwen2 import model as qwen2
from tunix.models.qwen2 import params as qwen2_params
from tunix.rl import rl_cluster as rl_cluster_lib
from tunix.rl import utils as rl_utils
from tunix.rl.ppo import ppo_learner
from tunix.rl.rollout import base_rollout

BOXED = re.compile(r"\\boxed\{([^{}]*)\}")


def qwen2_config(m: dict) -> qwen2.ModelConfig:
    return qwen2.ModelConfig(
        num_layers=m["num_layers"],
        vocab_size=m["vocab_size"],
        embed_dim=m["hidden_size"],
        hidden_dim=m["intermediate_size"],
        num_heads=m["num_heads"],
        head_dim=m["head_dim"],
        num_kv_heads=m["num_kv_heads"],
        rope_theta=int(m["rope_theta"]),
        norm_eps=m["rms_norm_eps"],
        use_tied_embedding=m["tie_word_embeddings"],
    )


def mesh():
    """One device as an (fsdp, tp) mesh; a plain Mesh, whose axes are Auto (jax.make_mesh's are
    Explicit, which tunix's embedding gather does not support)."""
    return jax.sharding.Mesh(np.array(jax.devices()[:1]).reshape(1, 1), ("fsdp", "tp"))


def success(prompts, completions, answer, **kwargs):
    """1.0 where the completion's last \\boxed{} holds the reference answer, else 0.0."""
    del prompts, kwargs
    out = []
    for text, ref in zip(completions, answer):
        found = BOXED.findall(text)
        out.append(1.0 if found and found[-1].strip() == str(ref).strip() else 0.0)
    return out


def optimizer(spec: dict):
    return optax.chain(
        optax.clip_by_global_norm(spec["max_grad_norm"]),
        optax.adamw(spec["learning_rate"], b1=0.9, b2=0.95, weight_decay=0.0),
    )


def run_ppo(spec: dict) -> dict:
    tokenizer = transformers.AutoTokenizer.from_pretrained(spec["tokenizer"])
    config = qwen2_config(spec["model"])
    m = mesh()
    actor = dummy_model_creator.create_dummy_model(qwen2.Qwen2, config, m, random_seed=0)
    reference = dummy_model_creator.create_dummy_model(qwen2.Qwen2, config, m, random_seed=0)
    critic = rl_utils.create_critic_model(actor)
    roles = rl_cluster_lib.Role
    steps, warm, rows = spec["steps"], spec["warm_steps"], spec["rows"]
    cluster_config = rl_cluster_lib.ClusterConfig(
        role_to_mesh={r: m for r in roles},
        rollout_engine="vanilla",
        offload_to_cpu=False,
        training_config=rl_cluster_lib.RLTrainingConfig(
            actor_optimizer=optimizer(spec),
            critic_optimizer=optimizer(spec),
            eval_every_n_steps=10 * steps,
            max_steps=steps,
            mini_batch_size=rows,
            gradient_accumulation_steps=None,
        ),
        rollout_config=base_rollout.RolloutConfig(
            max_tokens_to_generate=spec["new_tokens"],
            max_prompt_length=spec["prompt_len"],
            kv_cache_size=spec["prompt_len"] + spec["new_tokens"],
            temperature=1.0,
            top_p=1.0,
            top_k=None,
            eos_tokens=spec["eos_tokens"],
        ),
    )
    cluster = rl_cluster_lib.RLCluster(
        actor=actor,
        critic=critic,
        reference=reference,
        tokenizer=tokenizer,
        cluster_config=cluster_config,
    )
    learner = ppo_learner.PPOLearner(
        rl_cluster=cluster,
        ppo_config=ppo_learner.PPOConfig(
            num_iterations=1,
            gamma=1.0,
            gae_lambda=0.95,
            beta=spec["kl_coef"],
            kl_method="kl",
            epsilon=0.2,
            clip_range_value=0.2,
        ),
        reward_fns=[success],
    )
    pulled, finished = [], []

    def dataset():
        for k, batch in enumerate(spec["batches"][:steps], 1):
            if len(batch) != rows:
                raise ValueError(f"spec batches: {len(batch)} rows, expected rows={rows}")
            if spec.get("lockstep"):
                # The previous step's updates done, then wait for the caller's "go".
                jax.block_until_ready(
                    (
                        nnx.state(cluster.actor_trainer.model),
                        nnx.state(cluster.critic_trainer.model),
                    )
                )
                finished.append(time.perf_counter())
                print(json.dumps({"waiting": k}), flush=True)
                if sys.stdin.readline().strip() != "go":
                    raise RuntimeError("lockstep: expected 'go' on stdin")
            pulled.append(time.perf_counter())
            yield {
                "prompts": np.array([b["prompt"] for b in batch]),
                "answer": np.array([b["answer"] for b in batch]),
            }

    t0 = time.perf_counter()
    learner.train(dataset())
    jax.block_until_ready(
        (nnx.state(cluster.actor_trainer.model), nnx.state(cluster.critic_trainer.model))
    )
    end = time.perf_counter()
    if len(pulled) != steps or learner._iter_steps != steps:
        raise RuntimeError(f"ran {learner._iter_steps} steps on {len(pulled)} batches, not {steps}")
    # Step k runs from its batch's pull to the next step's start (lockstep: to the moment it
    # finished, before the wait) or to the end of train().
    ends = [*(finished[1:] if spec.get("lockstep") else pulled[1:]), end]
    step_s = [b - a for a, b in zip(pulled, ends)]
    return {
        "version": metadata.version("google-tunix"),
        "jax_version": jax.__version__,
        "steps": steps,
        "steady_step_s": sum(step_s[warm:]) / (steps - warm),
        "step_s": step_s,
        "train_s": end - t0,
        "steady_over": f"(t({steps} steps) - t({warm} steps)) / {steps - warm}",
    }


class IdsTokenizer:
    """Token ids written as text, so tunix's sampler runs on exactly the caller's prompt ids."""

    def __init__(self, pad_id: int):
        self._pad = pad_id

    def encode(self, text: str, **kwargs) -> list[int]:
        return [int(t) for t in text.split()]

    def decode(self, ids, **kwargs) -> str:
        return " ".join(str(int(i)) for i in ids)

    def bos_id(self):
        return None  # no BOS prepended: the prompts are complete

    def eos_id(self) -> int:
        return -1  # never sampled: every row runs to the end

    def pad_id(self) -> int:
        return self._pad


def run_sampler(spec: dict) -> dict:
    config = qwen2_config(spec["model"])
    model = qwen2_params.create_model_from_safe_tensors(
        spec["checkpoint"], config, mesh=mesh(), dtype=jnp.float32
    )
    width, new = spec["prompt_len"], spec["new_tokens"]
    sampler = sampler_lib.Sampler(
        model,
        IdsTokenizer(spec["pad_id"]),
        sampler_lib.CacheConfig(
            cache_size=width + new,
            num_layers=config.num_layers,
            num_kv_heads=config.num_kv_heads,
            head_dim=config.head_dim,
        ),
    )
    texts = [" ".join(str(i) for i in row) for row in spec["prompts"]]

    # tunix samples (its "top_p" mode) when given a top_p, else it is greedy.
    sampling = spec["temperature"] > 0
    top_k = spec["top_k"] or None

    def call():
        return sampler(
            texts,
            max_generation_steps=new,
            max_prompt_length=width,
            eos_tokens=[-1],
            temperature=spec["temperature"],
            top_p=spec["top_p"] if sampling else None,
            top_k=top_k if sampling else None,
            seed=0,
        )

    t0 = time.perf_counter()
    out = call()
    first = time.perf_counter() - t0
    times = []
    for _ in range(spec["repeats"]):
        t0 = time.perf_counter()
        out = call()
        times.append(time.perf_counter() - t0)
    times.sort()
    tokens = [np.asarray(t).tolist() for t in out.tokens]
    if any(len(t) != new for t in tokens):
        raise RuntimeError(f"tunix returned {sorted({len(t) for t in tokens})} tokens, not {new}")
    return {
        "version": metadata.version("google-tunix"),
        "jax_version": jax.__version__,
        "seconds": times[len(times) // 2],
        "all_seconds": times,
        "first_call_s": first,
        "tokens_per_s": len(texts) * new / times[len(times) // 2],
        "best_tokens_per_s": len(texts) * new / times[0],
        "tokens": tokens,
    }


def main():
    if len(sys.argv) != 3 or sys.argv[1] not in ("ppo", "sampler"):
        raise SystemExit("usage: tunix_side.py ppo|sampler SPEC.json")
    with open(sys.argv[2]) as f:
        spec = json.load(f)
    result = run_ppo(spec) if sys.argv[1] == "ppo" else run_sampler(spec)
    print(json.dumps(result))


if __name__ == "__main__":
    main()
