"""Training reward models on labelled solutions: ORM, PRM and implicit PRM; evaluating; saving.

    prm = new_reward_model(policy=policy)                     # backbone copied, fresh sigmoid head
    prm, history = train_reward_model(prm, train_arrays, RMTrainConfig(kind="prm", steps=300))
    evaluate_prm(prm, heldout_arrays)                         # {"accuracy", "auc", "n", ...}
    save_reward_model(prm, "runs/prm", kind="prm", tokenizer=tokenizer)

The three kinds, on ``rl.reward_models.data.RewardArrays`` (prompt left-padded to P, response
right-padded):

* **prm**: binary cross-entropy at every labelled step end, on the head's logit; soft labels are
  allowed (BCE against the fraction). The head is a scalar head with ``sigmoid=True`` (or a
  2-class head, whose logit is l1 - l0), so the saved model outputs P(step on track) in [0, 1] at
  each token: what ``rl.algo.scoring`` reads at the policy's step ends.
* **orm**: the same BCE on the outcome label, with the logit at the last response token
  (``models.heads.last_token_mask``; the EOS, where ``rl.algo.scoring`` reads the ORM).
* **implicit_prm** (Yuan et al. 2024): a ``CausalLM`` pi, initialised from the frozen reference
  pi_ref, with outcome reward r(y) = beta * sum over response tokens of (log pi - log pi_ref),
  trained with -[l log sigma(r) + (1 - l) log(1 - sigma(r))]. Its step rewards are beta times each
  step's summed log-ratio (``implicit_step_rewards``), which is ``rewards.shaping.implicit_prm``.
  pi_ref should be the PPO run's reference (the SFT policy): the PPO trainer pairs the implicit PRM
  with its own reference log-probs.

The train step is one pure function ``(state, batch) -> (state, metrics)``, jitted once (fixed batch
shape), the state donated, on the mesh when one is given. Losses are (sum, count) pairs
(``rl.ppo.Masked``); the step's loss is their ratio over the batch.

Letters: B batch rows, S sequence (prompt + response) tokens.
"""

from __future__ import annotations

import dataclasses
import functools
import json
import logging
import pathlib
import time
from collections.abc import Callable
from typing import Any

import flax
import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import nnx

from models import hf_io
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardHead, RewardModel, last_token_mask
from models.sharding import array_sharding, shard_model, state_shardings, use_mesh
from rl import config as config_lib
from rl.algo import losses as ppo
from rl.algo.update import make_optimizer
from rl.config import ConfigError, OptimConfig
from rl.reward_models.data import RewardArrays

log = logging.getLogger(__name__)

KINDS = ("orm", "prm", "implicit_prm")
HEADS = ("scalar", "two_class")
META_FILE = "reward_model.json"


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


# --- Models ---------------------------------------------------------------------------------------


def _copy(module):
    """A copy with its own buffers (train steps donate their parameters)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def new_reward_model(
    config: ModelConfig | None = None,
    *,
    head: str = "scalar",
    seed: int = 0,
    policy: CausalLM | None = None,
    mesh=None,
    rules=None,
) -> RewardModel:
    """An ORM/PRM to train: a scalar head squashed by a sigmoid (or a 2-class head), with a bias.

    With ``policy``, the backbone starts as a copy of the policy's (the usual initialisation: the
    reward model reads the policy's own text well); else a random one of ``config``. The head's
    output layer starts at zero, so every initial score is 0.5.
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r}: must be one of {HEADS}")
    if (config is None) == (policy is None):
        raise ValueError("new_reward_model: give exactly one of config= or policy=")
    backbone = _copy(policy.backbone) if policy is not None else None
    model = RewardModel(
        policy.config if policy is not None else config,
        head,
        rngs=nnx.Rngs(seed),
        sigmoid=head == "scalar",
        head_bias=True,
        backbone=backbone,
    )
    out = model.score.out
    out.kernel[...] = jnp.zeros_like(out.kernel[...])
    return shard_model(model, mesh, rules) if mesh is not None else model


def new_implicit_prm(reference: CausalLM) -> CausalLM:
    """pi for the implicit PRM: a copy of the (frozen) reference, so r(y) = 0 at the start."""
    return _copy(reference)


def head_logits(
    model: RewardModel, tokens_BxS: jax.Array, attention_mask_BxS: jax.Array
) -> jax.Array:
    """The logit whose sigmoid the model outputs: the scalar head's value, or l1 - l0 of the 2-class
    head (softmax(l)[1] = sigmoid(l1 - l0))."""
    if model.score is None:
        raise ValueError(f"head_logits needs a scalar or two_class head, not {model.head.kind!r}")
    out_BxSxC = model.score(model.backbone(tokens_BxS, attention_mask_BxS))
    if model.head.kind == "two_class":
        return out_BxSxC[..., 1] - out_BxSxC[..., 0]
    return out_BxSxC[..., 0]


def sequence_logp(
    model: CausalLM, tokens_BxS: jax.Array, attention_mask_BxS: jax.Array
) -> jax.Array:
    """log pi(tokens[t] | tokens[<t]) at every position t (0 at t = 0), aligned with the tokens."""
    logits = model(tokens_BxS, attention_mask_BxS)
    logp = ppo.token_logp(logits[:, :-1], tokens_BxS[:, 1:])
    return jnp.concatenate([jnp.zeros_like(logp[:, :1]), logp], axis=1)


# --- Losses ---------------------------------------------------------------------------------------


def bce(logits: jax.Array, labels: jax.Array, mask: jax.Array) -> tuple[ppo.Masked, ppo.Masked]:
    """(BCE with logits against soft labels, 0/1 accuracy at threshold 0.5) as masked sums."""
    loss = optax.sigmoid_binary_cross_entropy(logits, labels)
    correct = ((logits > 0) == (labels >= 0.5)).astype(jnp.float32)
    return ppo.masked(loss, mask), ppo.masked(correct, mask)


def prm_loss(logits_BxS: jax.Array, batch: dict[str, jax.Array]):
    return bce(logits_BxS, batch["step_labels"], batch["label_mask"])


def orm_logit(logits_BxS: jax.Array, attention_mask_BxS: jax.Array) -> jax.Array:
    return jnp.sum(jnp.where(last_token_mask(attention_mask_BxS), logits_BxS, 0.0), axis=-1)


def orm_loss(logits_BxS: jax.Array, batch: dict[str, jax.Array]):
    return bce(
        orm_logit(logits_BxS, batch["attention_mask"]), batch["outcome"], batch["outcome_mask"]
    )


def implicit_reward(
    logp_BxS: jax.Array, ref_logp_BxS: jax.Array, response_BxS: jax.Array, beta: float
) -> jax.Array:
    """r(y) = beta * sum over response tokens of log pi - log pi_ref: [B]."""
    return beta * jnp.sum(jnp.where(response_BxS, logp_BxS - ref_logp_BxS, 0.0), axis=-1)


def implicit_prm_loss(logp_BxS: jax.Array, batch: dict[str, jax.Array], beta: float):
    r_B = implicit_reward(logp_BxS, batch["ref_logp"], batch["response_mask"], beta)
    return bce(r_B, batch["outcome"], batch["outcome_mask"])


def implicit_step_rewards(
    logp_T: jax.Array,
    ref_logp_T: jax.Array,
    step_end_T: jax.Array,
    response_T: jax.Array,
    beta: float,
) -> jax.Array:
    """beta x the summed log-ratio of each step's tokens, on the step's last token; 0 elsewhere.

    One sequence ([T]; ``jax.vmap`` for a batch). A step's tokens run from after the previous step
    end to its own end; response tokens after the last step end belong to no step. Computed as
    per-step segment sums (not as differences of a running sum, as ``rewards.shaping.implicit_prm``
    does), so the two can check each other.
    """
    step_end_T = step_end_T.astype(jnp.bool_)
    ends = step_end_T.astype(jnp.int32)
    step_of_T = jnp.cumsum(ends) - ends  # index of the step each token belongs to
    ratio_T = jnp.where(response_T, logp_T - ref_logp_T, 0.0)
    t = ratio_T.shape[0]
    sums = jax.ops.segment_sum(ratio_T, step_of_T, num_segments=t + 1)
    return jnp.where(step_end_T, beta * sums[step_of_T], 0.0).astype(logp_T.dtype)


def make_loss_fn(kind: str, graphdef: Any, rest: Any, beta: float) -> Callable:
    """``loss(params, batch) -> (mean loss, (loss Masked, accuracy Masked))`` for one kind."""

    def model_of(params):
        return nnx.merge(graphdef, params, rest)

    if kind == "implicit_prm":

        def terms(params, batch):
            logp = sequence_logp(model_of(params), batch["tokens"], batch["attention_mask"])
            return implicit_prm_loss(logp, batch, beta)
    else:
        per_kind = prm_loss if kind == "prm" else orm_loss

        def terms(params, batch):
            logits = head_logits(model_of(params), batch["tokens"], batch["attention_mask"])
            return per_kind(logits, batch)

    def loss(params, batch):
        loss_sums, correct = terms(params, batch)
        return loss_sums.mean, (loss_sums, correct)

    return loss


# --- Training -------------------------------------------------------------------------------------


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


def _batch_logical_axes(x: np.ndarray) -> tuple:
    return ("batch",) + (None,) * (x.ndim - 1)


def _batches(n: int, batch_size: int, steps: int, seed: int):
    """Row indices of each step: seeded epochs of a permutation (rows repeat only across epochs)."""
    rng = np.random.default_rng(seed)
    order = np.concatenate([rng.permutation(n) for _ in range(-(-steps * batch_size // n) + 1)])
    for i in range(steps):
        yield order[i * batch_size : (i + 1) * batch_size]


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
        from jax.sharding import NamedSharding, PartitionSpec

        replicated = NamedSharding(mesh, PartitionSpec())
        params_sh = state_shardings(params, mesh, rules)
        opt_sh = optax.tree_map_params(
            tx,
            lambda _, s: s,
            jax.eval_shape(tx.init, params),
            params_sh,
            transform_non_params=lambda _: replicated,
        )
        state_sh = RMState(step=replicated, params=params_sh, opt_state=opt_sh)
        state = RMState(
            step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
            params=jax.device_put(params, params_sh),
            opt_state=jax.jit(tx.init, out_shardings=opt_sh)(params),
        )
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
        batch = {k: jax.device_put(v[rows], batch_sh[k]) for k, v in host.items()}
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


# --- Inference and evaluation ---------------------------------------------------------------------


def _map_batches(
    fn: Callable, arrays: RewardArrays, batch_size: int, *extra: np.ndarray
) -> np.ndarray:
    """``fn(tokens, mask, *extra rows)`` over fixed-size batches (the last padded by repeating
    row 0, so one compiled shape serves all), concatenated on the host."""
    n = len(arrays)
    outs = []
    for start in range(0, n, batch_size):
        rows = np.arange(start, min(start + batch_size, n))
        padded = np.concatenate([rows, np.zeros(batch_size - len(rows), rows.dtype)])
        args = [arrays.tokens[padded], arrays.attention_mask[padded]] + [x[padded] for x in extra]
        outs.append(np.asarray(fn(*args))[: len(rows)])
    return np.concatenate(outs) if outs else np.zeros((0,) + arrays.tokens.shape[1:], np.float32)


@functools.lru_cache(maxsize=32)
def _forward(graphdef: Any, what: str) -> Callable:
    """One jitted forward per model structure (graphdefs are hashable), reused across calls."""
    if what == "scores":
        return jax.jit(lambda state, t, m: nnx.merge(graphdef, state)(t, m))
    return jax.jit(lambda state, t, m: sequence_logp(nnx.merge(graphdef, state), t, m))


def token_scores(model: nnx.Module, arrays: RewardArrays, *, batch_size: int = 32) -> np.ndarray:
    """The reward model's output at every token, [N, S]: a probability for the heads trained
    here."""
    graphdef, state = nnx.split(model)
    fn = _forward(graphdef, "scores")
    return _map_batches(lambda t, m: fn(state, t, m), arrays, batch_size)


def token_logps(model: CausalLM, arrays: RewardArrays, *, batch_size: int = 32) -> np.ndarray:
    """``sequence_logp`` of every row: [N, S] fp32."""
    graphdef, state = nnx.split(model)
    fn = _forward(graphdef, "logp")
    return _map_batches(lambda t, m: fn(state, t, m), arrays, batch_size)


def binary_metrics(
    scores: np.ndarray, labels: np.ndarray, threshold: float = 0.5
) -> dict[str, float]:
    """Accuracy of ``scores >= threshold`` against ``labels >= 0.5`` and ROC AUC (ties count half;
    NaN when only one class is present)."""
    scores = np.asarray(scores, np.float64).ravel()
    positive = np.asarray(labels, np.float64).ravel() >= 0.5
    n = scores.size
    if n == 0:
        nan = float("nan")
        return {"n": 0, "accuracy": nan, "auc": nan, "positive_rate": nan}
    accuracy = float(np.mean((scores >= threshold) == positive))
    n_pos, n_neg = int(positive.sum()), int((~positive).sum())
    if n_pos and n_neg:
        order = np.argsort(scores, kind="mergesort")
        ranks = np.empty(n)
        sorted_scores = scores[order]
        i = 0
        while i < n:  # average ranks over ties
            j = i
            while j + 1 < n and sorted_scores[j + 1] == sorted_scores[i]:
                j += 1
            ranks[order[i : j + 1]] = (i + j) / 2 + 1
            i = j + 1
        auc = float((ranks[positive].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))
    else:
        auc = float("nan")
    return {"n": n, "accuracy": accuracy, "auc": auc, "positive_rate": n_pos / n}


def evaluate_prm(
    model: RewardModel, arrays: RewardArrays, *, batch_size: int = 32
) -> dict[str, float]:
    """Step-level accuracy/AUC of the PRM's probability at every labelled step end."""
    scores = token_scores(model, arrays, batch_size=batch_size)
    m = arrays.label_mask
    return binary_metrics(scores[m], arrays.step_labels[m])


def evaluate_orm(
    model: RewardModel, arrays: RewardArrays, *, batch_size: int = 32
) -> dict[str, float]:
    """Outcome accuracy/AUC of the ORM's probability at the last response token."""
    scores = token_scores(model, arrays, batch_size=batch_size)
    last = np.asarray(last_token_mask(jnp.asarray(arrays.attention_mask)))
    m = arrays.outcome_mask
    return binary_metrics((scores * last).sum(-1)[m], arrays.outcome[m])


def implicit_prm_scores(
    policy: CausalLM,
    reference: CausalLM,
    arrays: RewardArrays,
    beta: float,
    *,
    batch_size: int = 32,
) -> dict[str, np.ndarray]:
    """The implicit PRM's outputs on every row: ``reward`` [N] = r(y); ``step_rewards`` [N, S]
    (beta x each step's summed log-ratio, at step ends); ``q`` [N, S] = beta x the running log-ratio
    sum (the process value of Yuan et al.: log-odds that the prefix succeeds)."""
    logp = token_logps(policy, arrays, batch_size=batch_size)
    ref_logp = token_logps(reference, arrays, batch_size=batch_size)
    resp = arrays.response_mask
    steps = jax.vmap(implicit_step_rewards, in_axes=(0, 0, 0, 0, None))(
        logp, ref_logp, arrays.step_end, resp, beta
    )
    q = beta * np.cumsum(np.where(resp, logp - ref_logp, 0.0), axis=-1)
    return {
        "reward": beta * np.where(resp, logp - ref_logp, 0.0).sum(-1),
        "step_rewards": np.asarray(steps),
        "q": q,
        "logp": logp,
        "ref_logp": ref_logp,
    }


def evaluate_implicit_prm(
    policy: CausalLM,
    reference: CausalLM,
    arrays: RewardArrays,
    beta: float,
    *,
    batch_size: int = 32,
) -> dict[str, float]:
    """Outcome metrics of sigma(r(y)); step metrics of sigma(q) at labelled step ends."""
    out = implicit_prm_scores(policy, reference, arrays, beta, batch_size=batch_size)
    sigmoid = lambda x: 1.0 / (1.0 + np.exp(-x))  # noqa: E731
    outcome = binary_metrics(
        sigmoid(out["reward"][arrays.outcome_mask]), arrays.outcome[arrays.outcome_mask]
    )
    m = arrays.label_mask
    step = binary_metrics(sigmoid(out["q"][m]), arrays.step_labels[m])
    return {
        **{f"outcome_{k}": v for k, v in outcome.items()},
        **{f"step_{k}": v for k, v in step.items()},
    }


# --- Saving ---------------------------------------------------------------------------------------


def save_reward_model(
    model: nnx.Module, path: str | pathlib.Path, *, kind: str, tokenizer: Any = None, **meta: Any
) -> None:
    """``models.hf_io.save_causal_lm`` (+ tokenizer), and ``reward_model.json`` recording what the
    checkpoint is: the kind, the head and whether its scalar output is sigmoid-squashed
    (config.json cannot say so; load it with ``load_reward_model`` or
    ``head=RewardHead("scalar", sigmoid=True)``) and any ``meta`` given (beta, step separator,
    data, metrics)."""
    if kind not in KINDS:
        raise ValueError(f"kind={kind!r}: must be one of {KINDS}")
    path = pathlib.Path(path)
    hf_io.save_causal_lm(model, path, tokenizer=tokenizer)
    info = {"kind": kind, **meta}
    if isinstance(model, RewardModel):
        info.update(head=model.head.kind, sigmoid=model.head.sigmoid)
    if jax.process_index() == 0:
        (path / META_FILE).write_text(json.dumps(info, indent=2, sort_keys=True, default=str))


def load_tokenizer(path: str | pathlib.Path):
    """The tokenizer saved next to a checkpoint (``models.hf_io.load_tokenizer``, which loads a
    generic fast tokenizer as saved rather than as the checkpoint's model type's)."""
    return hf_io.load_tokenizer(path)


def load_reward_model(
    path: str | pathlib.Path, *, dtype: Any = jnp.float32, mesh=None, rules=None
) -> tuple[nnx.Module, dict[str, Any]]:
    """A model saved by ``save_reward_model``, with the head it was trained with, and its
    metadata."""
    path = pathlib.Path(path)
    info = json.loads((path / META_FILE).read_text())
    head = None
    if info["kind"] != "implicit_prm":
        head = RewardHead(info["head"], sigmoid=bool(info.get("sigmoid", False)))
    model = hf_io.load_causal_lm(path, dtype, mesh=mesh, rules=rules, head=head)
    return model, info
