"""Training reward models on labelled solutions: ORM, PRM and implicit PRM.

    prm = new_reward_model(policy=policy)                     # backbone copied, fresh sigmoid head
    prm, history = train_reward_model(prm, train_arrays, RMTrainConfig(kind="prm", steps=300))
    evaluate_prm(prm, heldout_arrays)                         # {"accuracy", "auc", "n", ...}
    save_reward_model(prm, "runs/prm", kind="prm", tokenizer=tokenizer)

(``new_reward_model``: ``rl.reward_models.modeling``; ``evaluate_prm``:
``rl.reward_models.evaluation``; ``save_reward_model``: ``models.reward_io``.) What each kind is and
its loss: ``rl.reward_models.modeling`` and ``rl.reward_models.losses``, on
``rl.reward_models.data.RewardArrays`` (prompt left-padded to P, response right-padded).

The train step is one pure function ``(state, batch) -> (state, metrics)``, jitted, the state
donated, on the mesh when one is given. Each batch is cut to the columns its rows use (the longest
prompt and the longest response, each rounded up to ``COLUMN_MULTIPLE``): exact, since positions
come from the attention mask and every loss is masked, and a few compiled widths instead of one;
the toy default's ORM/PRM steps take 0.34 s instead of 0.43 (136 columns, of which its batches use
about 112). Losses are (sum, count) pairs
(``rl.algo.losses.Masked``); the step's loss is their ratio over the batch.
"""

from __future__ import annotations

import dataclasses
import time
from collections.abc import Callable

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from models.decoder import CausalLM
from models.heads import RewardModel
from models.reward_io import KINDS
from models.sharding import array_sharding, state_shardings, use_mesh
from rl import config as config_lib
from rl.algo.update import make_optimizer
from rl.config import ConfigError, OptimConfig
from rl.reward_models.data import RewardArrays
from rl.reward_models.inference import token_logps
from rl.reward_models.losses import make_loss_fn


@dataclasses.dataclass(frozen=True)
class RMTrainConfig:
    """How to train one reward model. beta: the implicit PRM's scale (PRIME uses 0.05)."""

    kind: str = "prm"
    steps: int = 200
    batch_size: int = 32
    learning_rate: float = 1e-3
    schedule: str = "constant"
    warmup_steps: int = 0
    weight_decay: float = 0.0
    max_grad_norm: float = 1.0
    beta: float = 0.05
    seed: int = 0
    log_every: int = 50

    def validate(self, prefix: str = "train") -> RMTrainConfig:
        if self.kind not in KINDS:  # config.kind is top-level in config files
            raise ConfigError(f"config.kind={self.kind!r}: must be one of {KINDS}")
        for name in ("steps", "batch_size", "log_every"):
            config_lib._int_at_least(f"{prefix}.{name}", getattr(self, name), 1)
        for name in ("learning_rate", "beta", "max_grad_norm"):
            config_lib._positive(f"{prefix}.{name}", getattr(self, name))
        self.optim_config()  # validates schedule, warmup_steps, weight_decay
        return self

    def optim_config(self) -> OptimConfig:
        return OptimConfig(
            learning_rate=self.learning_rate,
            schedule=self.schedule,
            warmup_steps=self.warmup_steps,
            max_grad_norm=self.max_grad_norm,
            weight_decay=self.weight_decay,
        ).validate("train")


@flax.struct.dataclass
class RMState:
    step: jax.Array
    params: nnx.State
    opt_state: optax.OptState


def make_train_step(loss_fn: Callable, tx: optax.GradientTransformation):
    """``train_step(state, batch) -> (state, metrics)`` (not jitted)."""

    def train_step(state: RMState, batch: dict[str, jax.Array]):
        (_, (loss, correct)), grads = jax.value_and_grad(loss_fn, has_aux=True)(state.params, batch)
        updates, opt_state = tx.update(grads, state.opt_state, state.params)
        new = RMState(
            step=state.step + 1,
            params=optax.apply_updates(state.params, updates),
            opt_state=opt_state,
        )
        metrics = {
            "loss": loss.mean,
            "accuracy": correct.mean,
            "labels": loss.count,
            "grad_norm": optax.global_norm(grads),
        }
        return new, metrics

    return train_step


COLUMN_MULTIPLE = 16


def used_columns(attention_mask_BxS: np.ndarray, prompt_len: int) -> tuple[int, int]:
    """[lo, hi): the columns of a batch that hold some row's real tokens (prompts left-padded to
    ``prompt_len``, responses right-padded after it), the prompt part and the response part each
    rounded up to ``COLUMN_MULTIPLE`` columns and kept inside the array."""
    used = np.asarray(attention_mask_BxS, bool).any(axis=0)
    cols = np.flatnonzero(used)
    if cols.size == 0:
        return 0, attention_mask_BxS.shape[1]
    up = lambda n: COLUMN_MULTIPLE * -(-n // COLUMN_MULTIPLE)  # noqa: E731
    lo = max(0, prompt_len - up(prompt_len - int(cols[0])))
    hi = min(attention_mask_BxS.shape[1], prompt_len + up(int(cols[-1]) + 1 - prompt_len))
    return lo, hi


def _batch_logical_axes(x: np.ndarray) -> tuple:
    return ("batch",) + (None,) * (x.ndim - 1)


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Row indices of each step: seeded epochs of a permutation (rows repeat only across epochs)."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n) + 1)])
    for i in range(steps):
        yield order[i * batch_size : (i + 1) * batch_size]


def rm_state_shardings(tx, params, mesh, rules) -> RMState:
    """Shardings of an RMState: parameters and optimizer moments in the model's (FSDP/tensor)
    layout, the step count and optax's scalars replicated."""
    replicated = NamedSharding(mesh, PartitionSpec())
    params_sh = state_shardings(params, mesh, rules)
    opt_sh = optax.tree_map_params(
        tx,
        lambda _, s: s,
        jax.eval_shape(tx.init, params),
        params_sh,
        transform_non_params=lambda _: replicated,
    )
    return RMState(step=replicated, params=params_sh, opt_state=opt_sh)


def train_reward_model(
    model: nnx.Module,
    arrays: RewardArrays,
    cfg: RMTrainConfig,
    *,
    reference: CausalLM | None = None,
    mesh=None,
    rules=None,
    log_fn: Callable[[dict[str, float]], None] | None = None,
) -> tuple[nnx.Module, list[dict[str, float]]]:
    """Trains ``model`` (a RewardModel for orm/prm, the pi CausalLM for implicit_prm, which needs
    ``reference``) for ``cfg.steps`` steps of ``cfg.batch_size`` rows; returns it, updated in place,
    and the logged metrics (every ``log_every`` steps and the last one; fetched one step late so
    logging never stalls the device).

    The model's parameter buffers are donated to the step: a model sharing parameters with another
    (a policy's backbone passed as ``backbone=``) must be copied first, as ``new_reward_model`` and
    ``new_implicit_prm`` do. The reference is only read.
    """
    cfg.validate()
    if cfg.kind == "implicit_prm" and reference is None:
        raise ValueError("train_reward_model(kind='implicit_prm') needs reference= (pi_ref)")
    if cfg.kind != "implicit_prm" and not isinstance(model, RewardModel):
        raise TypeError(f"kind={cfg.kind!r} trains a RewardModel, got {type(model).__name__}")
    if len(arrays) == 0:
        raise ValueError("train_reward_model: no training rows")
    host = arrays.batch()
    if cfg.kind == "implicit_prm":
        host["ref_logp"] = token_logps(reference, arrays, batch_size=cfg.batch_size)
    if cfg.kind == "prm" and not host["label_mask"].any():
        raise ValueError("train_reward_model(kind='prm'): no labelled step in the data")
    if cfg.kind != "prm" and not host["outcome_mask"].any():
        raise ValueError(f"train_reward_model(kind={cfg.kind!r}): no outcome label in the data")

    graphdef, params, rest = nnx.split(model, nnx.Param, ...)
    tx = make_optimizer(cfg.optim_config(), cfg.learning_rate, cfg.steps)
    step_fn = make_train_step(make_loss_fn(cfg.kind, graphdef, rest, cfg.beta), tx)
    if mesh is None:
        state = RMState(
            step=jnp.zeros((), jnp.int32), params=params, opt_state=jax.jit(tx.init)(params)
        )
        jitted = jax.jit(step_fn, donate_argnums=(0,))
        batch_sh = {k: None for k in host}
    else:
        # Parameters and optimizer moments keep the model's (FSDP/tensor) layout; rows of the batch
        # are split over the batch axes; step count and metrics are replicated.
        replicated = NamedSharding(mesh, PartitionSpec())
        state_sh = rm_state_shardings(tx, params, mesh, rules)
        state = RMState(
            step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
            params=jax.device_put(params, state_sh.params),
            opt_state=jax.jit(tx.init, out_shardings=state_sh.opt_state)(params),
        )
        # The batch's layout depends only on its rank (rows over the batch axes), not its width.
        batch_sh = {
            k: array_sharding(_batch_logical_axes(v), (cfg.batch_size,) + v.shape[1:], mesh, rules)
            for k, v in host.items()
        }
        jitted = jax.jit(
            step_fn,
            in_shardings=(state_sh, batch_sh),
            out_shardings=(state_sh, replicated),
            donate_argnums=(0,),
        )
    width = arrays.tokens.shape[1]

    history: list[dict[str, float]] = []
    pending = None  # (step, device metrics) logged after the next step is dispatched
    t0 = time.perf_counter()

    def flush(item):
        step, metrics = item
        record = {
            "step": step,
            **{k: float(v) for k, v in jax.device_get(metrics).items()},
            "time": time.perf_counter() - t0,
        }
        history.append(record)
        if log_fn is not None:
            log_fn(record)

    for i, rows in enumerate(_batches(len(arrays), cfg.batch_size, cfg.steps, cfg.seed), 1):
        lo, hi = used_columns(host["attention_mask"][rows], arrays.prompt_len)
        batch = {
            k: jax.device_put(
                v[rows, lo:hi] if v.ndim == 2 and v.shape[1] == width else v[rows], batch_sh[k]
            )
            for k, v in host.items()
        }
        if mesh is None:
            state, metrics = jitted(state, batch)
        else:
            with use_mesh(mesh, rules):
                state, metrics = jitted(state, batch)
        if pending is not None:
            flush(pending)
            pending = None
        if i % cfg.log_every == 0 or i == cfg.steps:
            pending = (i, metrics)
    if pending is not None:
        flush(pending)
    nnx.update(model, state.params)
    return model, history
