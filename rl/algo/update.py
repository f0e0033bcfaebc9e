"""The PPO update: one pure function ``(state, batch) -> (state, metrics)``, compiled once per
response width (``rl.algo.buckets``: R is the batch's longest response rounded up to a bucket).

Policy and critic are trained together in one step; each has its own optax chain (global-norm
clipping, then AdamW on a warmup + constant/cosine schedule). Under a critic-free estimator
(``ppo.advantage`` != "gae") there is no critic: ``TrainState.critic`` and ``critic_opt`` are None,
so nothing of it is built, run, differentiated or checkpointed. During critic warm-up
(``ppo.critic_warmup_iterations``) a second compiled step trains the critic alone and leaves the
policy and its optimizer state untouched.

The policy's log-probs, entropy and KL use the distribution the sampler drew from: logits divided
by ``temperature`` (the rollout temperature; 1 for greedy rollouts), as verl and OpenRLHF do.
Top-k / top-p truncation is not applied here: the ratio compares the temperature-scaled full
distributions. They come from the hidden states of the R response positions through the LM head in
vocabulary chunks (``rl.algo.token_stats``): the prompt's positions never reach the head, and no
``[B, R, V]`` logits are held in the forward or the backward pass.

A minibatch is split into microbatches whose gradients are accumulated with ``lax.scan``; every loss
is a token *sum* divided by the token count of the whole minibatch, so the accumulated gradient
equals the full-batch gradient exactly.

An update whose loss or gradient norm is not finite is skipped inside the step (parameters and
optimizer states keep their old values) and reported in the metrics; the caller counts consecutive
skips and stops the run past a limit.

Sequence layout (all arrays of one minibatch): ``tokens_BxS`` = left-padded prompt of length P then
the response of length R (S = P + R); ``attention_mask_BxS`` marks real tokens of both.
Response-token arrays are ``[B, R]``: the log-prob, value, advantage, ... of response token i, whose
logits come from sequence position P + i - 1.
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax
import jax
import jax.numpy as jnp
import optax
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from models.sharding import state_shardings as param_shardings_of
from rl.algo import losses as ppo
from rl.algo import token_stats
from rl.config import OptimConfig, PPOConfig, RewardConfig

METRIC_SUMS = ("policy_loss", "value_loss", "entropy", "clip_frac", "approx_kl", "kl_ref")
BATCH_KEYS = (
    "tokens",
    "attention_mask",
    "response_mask",
    "old_logp",
    "old_values",
    "advantages",
    "returns",
    "ref_logp",
)


@flax.struct.dataclass
class TrainState:
    """Everything the update changes; one pytree, donated to the step."""

    step: jax.Array  # optimizer updates applied so far (int32)
    policy: nnx.State
    critic: nnx.State | None  # None under a critic-free estimator
    policy_opt: optax.OptState
    critic_opt: optax.OptState | None


class Models(NamedTuple):
    """Static structure (graphdefs) of the trained models; parameters live in ``TrainState``."""

    policy: Any
    critic: Any  # None: no critic


def make_schedule(cfg: OptimConfig, learning_rate: float, total_steps: int) -> optax.Schedule:
    warmup = optax.linear_schedule(0.0, learning_rate, max(cfg.warmup_steps, 1))
    if cfg.schedule == "cosine":
        main = optax.cosine_decay_schedule(learning_rate, max(total_steps - cfg.warmup_steps, 1))
    else:
        main = optax.constant_schedule(learning_rate)
    if cfg.warmup_steps == 0:
        return main
    return optax.join_schedules([warmup, main], [cfg.warmup_steps])


def clip_by_global_norm(max_norm: float) -> optax.GradientTransformation:
    """``optax.clip_by_global_norm`` as one multiply of every gradient by the scalar
    ``min(1, max_norm / norm)`` (equal to optax's ``t / norm * max_norm`` within an ulp).

    Why not optax's: its per-leaf ``select(norm < max_norm, t, t / norm * max_norm)`` holds a
    divide, which XLA does not duplicate into the two consumers that follow (Adam's first and
    second moments), so it writes a clipped copy of every gradient and reads it back twice; a
    multiply by a scalar fuses into both. Measured on the CPU, an optimizer step alone over three
    151,936 x 256 tables (``bench/ppo_iteration.py``'s model) in one process, alternating with
    optax's: 199-226 ms against 433-609 ms.
    """

    def update(updates, state, params=None):
        del params
        factor = jnp.minimum(1.0, max_norm / optax.global_norm(updates))
        return jax.tree.map(lambda t: t * factor.astype(t.dtype), updates), state

    return optax.GradientTransformation(lambda params: optax.EmptyState(), update)


def make_optimizer(cfg: OptimConfig, learning_rate: float, total_steps: int):
    return optax.chain(
        clip_by_global_norm(cfg.max_grad_norm),
        optax.adamw(
            make_schedule(cfg, learning_rate, total_steps),
            b1=cfg.b1,
            b2=cfg.b2,
            weight_decay=cfg.weight_decay,
        ),
    )


def response_logits(
    graphdef, params, tokens_BxS, attention_mask_BxS, prompt_len: int, temperature: float = 1.0
):
    """Logits that predict each response token (positions P-1 .. S-2), divided by the sampling
    temperature: the plain [B, R, V] form of what the step computes in chunks (the reference of
    its tests; the step itself uses ``token_stats.response_token_stats``)."""
    model = nnx.merge(graphdef, params)
    logits_BxSxV = model(tokens_BxS, attention_mask_BxS)
    logits = logits_BxSxV[:, prompt_len - 1 : -1]
    return logits if temperature == 1.0 else logits / temperature


def response_values(graphdef, params, tokens_BxS, attention_mask_BxS, prompt_len: int):
    """Critic values of the states before each response token (same positions as the logits)."""
    model = nnx.merge(graphdef, params)
    return model(tokens_BxS, attention_mask_BxS)[:, prompt_len - 1 : -1]


def training_temperature(sampling_temperature: float) -> float:
    """The temperature of the distribution PPO trains: the sampler's (greedy rollouts, T = 0, are
    trained at T = 1: there is no distribution to match, and one sample per prompt)."""
    return sampling_temperature if sampling_temperature > 0 else 1.0


def _microbatches(batch: dict[str, jax.Array], n: int) -> dict[str, jax.Array]:
    """[B, ...] -> [n, B/n, ...] taking rows i, i+n, i+2n, ... into microbatch i.

    Strided (not contiguous) so that, with the batch sharded over devices, every device holds rows
    of every microbatch and the scan needs no data movement between devices.
    """

    def split(x):
        b = x.shape[0]
        return jnp.swapaxes(x.reshape((b // n, n) + x.shape[1:]), 0, 1)

    return jax.tree.map(split, batch)


def make_update_fn(
    models: Models,
    ppo_cfg: PPOConfig,
    reward_cfg: RewardConfig,
    policy_tx: optax.GradientTransformation,
    critic_tx: optax.GradientTransformation | None,
    prompt_len: int,
    *,
    temperature: float = 1.0,
    train_policy: bool = True,
):
    """Builds ``update(state, batch) -> (state, metrics)`` (not yet jitted; see ``jit_update``).

    ``models.critic`` None: critic-free (the batch needs no ``old_values`` / ``returns``).
    ``train_policy=False``: the critic warm-up step (value loss only; the policy and its optimizer
    state are returned unchanged and the policy metrics are 0)."""
    kl_in_loss = reward_cfg.kl_in == "loss" and reward_cfg.kl_coef > 0
    has_critic = models.critic is not None
    if not (has_critic or train_policy):
        raise ValueError("a critic warm-up step needs a critic (ppo.advantage='gae')")
    zero = jnp.zeros((), jnp.float32)
    reported = (set(METRIC_SUMS) - {"value_loss"} if train_policy else set()) | (
        {"value_loss"} if has_critic else set()
    )

    def policy_terms(policy_params, mb):
        mask = mb["response_mask"]
        # The response positions' hidden states through the chunked head: neither this forward nor
        # its backward holds [B, R, V] logits (rl.algo.token_stats; equal to response_logits').
        logp, entropy_BxR = token_stats.response_token_stats(
            nnx.merge(models.policy, policy_params),
            mb["tokens"],
            mb["attention_mask"],
            prompt_len,
            temperature=temperature,
            # The entropy is a metric only unless it is in the loss: skip its backward term.
            entropy_grad=ppo_cfg.entropy_coef != 0,
        )
        pg = ppo.policy_loss(
            logp, mb["old_logp"], mb["advantages"], mask, ppo_cfg.clip_eps, ppo_cfg.dual_clip
        )
        ent = ppo.masked(entropy_BxR, mask)
        total = pg.loss.total - ppo_cfg.entropy_coef * ent.total
        kl = ppo.kl_loss(logp, mb["ref_logp"], mask)  # k3: the kl_ref metric, whatever the loss
        if kl_in_loss:
            penalty = ppo.kl_loss(logp, mb["ref_logp"], mask, reward_cfg.kl_estimator)
            total = total + reward_cfg.kl_coef * penalty.total
        sums = {
            "policy_loss": pg.loss.total,
            "entropy": ent.total,
            "clip_frac": pg.clip_frac.total,
            "approx_kl": pg.approx_kl.total,
            "kl_ref": kl.total,
        }
        return total, sums

    def micro_loss(policy_params, critic_params, mb, n_tokens):
        total, sums = zero, dict.fromkeys(METRIC_SUMS, zero)
        if train_policy:
            total, policy_sums = policy_terms(policy_params, mb)
            sums.update(policy_sums)
        if has_critic:
            values = response_values(
                models.critic, critic_params, mb["tokens"], mb["attention_mask"], prompt_len
            )
            vl = ppo.value_loss(
                values, mb["old_values"], mb["returns"], mb["response_mask"], ppo_cfg.value_clip
            )
            total = total + ppo_cfg.vf_coef * vl.total
            sums["value_loss"] = vl.total
        return total / n_tokens, sums

    grad_fn = jax.grad(micro_loss, argnums=(0, 1), has_aux=True)

    def accumulate(policy_params, critic_params, batch):
        """Gradients and metric sums of a whole minibatch, microbatch by microbatch."""
        n_tokens = jnp.maximum(jnp.sum(batch["response_mask"].astype(jnp.float32)), 1.0)
        if ppo_cfg.microbatches == 1:  # no accumulators: a pass over every gradient saved
            (g_policy, g_critic), sums = grad_fn(policy_params, critic_params, batch, n_tokens)
            return g_policy, g_critic, {k: v / n_tokens for k, v in sums.items()}
        mbs = _microbatches(batch, ppo_cfg.microbatches)

        def body(carry, mb):
            g_policy, g_critic, sums = carry
            (gp, gc), s = grad_fn(policy_params, critic_params, mb, n_tokens)
            return (
                jax.tree.map(jnp.add, g_policy, gp),
                jax.tree.map(jnp.add, g_critic, gc),
                jax.tree.map(jnp.add, sums, s),
            ), None

        zeros = lambda tree: jax.tree.map(jnp.zeros_like, tree)  # noqa: E731
        sums0 = dict.fromkeys(METRIC_SUMS, zero)
        (g_policy, g_critic, sums), _ = jax.lax.scan(
            body, (zeros(policy_params), zeros(critic_params), sums0), mbs
        )
        return g_policy, g_critic, {k: v / n_tokens for k, v in sums.items()}

    def apply(state: TrainState, g_policy, g_critic) -> TrainState:
        policy, policy_opt = state.policy, state.policy_opt
        if train_policy:
            p_updates, policy_opt = policy_tx.update(g_policy, state.policy_opt, state.policy)
            policy = optax.apply_updates(state.policy, p_updates)
        critic, critic_opt = state.critic, state.critic_opt
        if has_critic:
            c_updates, critic_opt = critic_tx.update(g_critic, state.critic_opt, state.critic)
            critic = optax.apply_updates(state.critic, c_updates)
        return TrainState(
            step=state.step + 1,
            policy=policy,
            critic=critic,
            policy_opt=policy_opt,
            critic_opt=critic_opt,
        )

    def update(state: TrainState, batch: dict[str, jax.Array]):
        g_policy, g_critic, metrics = accumulate(state.policy, state.critic, batch)
        # Only what this step computes is reported (no value loss without a critic, no policy
        # terms during the critic warm-up).
        metrics = {k: v for k, v in metrics.items() if k in reported}
        ok = jnp.isfinite(metrics.get("policy_loss", zero))
        if train_policy:
            metrics["policy_grad_norm"] = optax.global_norm(g_policy)
            ok &= jnp.isfinite(metrics["policy_grad_norm"])
        if has_critic:
            metrics["critic_grad_norm"] = optax.global_norm(g_critic)
            ok &= jnp.isfinite(metrics["critic_grad_norm"]) & jnp.isfinite(metrics["value_loss"])
        # A non-finite update leaves the state as it was (including the step count). A branch
        # rather than a select over every parameter and moment: the optimizer runs only when it
        # applies, and no pass compares old and new state (on CPU, a third of the step's time).
        new = jax.lax.cond(ok, apply, lambda s, gp, gc: s, state, g_policy, g_critic)
        metrics["skipped"] = 1.0 - ok.astype(jnp.float32)
        return new, metrics

    update.accumulate = accumulate
    return update


def state_shardings(
    state: TrainState, param_shardings: tuple[Any, Any], policy_tx, critic_tx, replicated
) -> TrainState:
    """Shardings of a TrainState: optimizer moments follow their parameters, scalars replicate."""
    policy_sh, critic_sh = param_shardings

    def opt_sh(tx, opt_state, params_sh):
        return optax.tree_map_params(
            tx, lambda _, s: s, opt_state, params_sh, transform_non_params=lambda _: replicated
        )

    return TrainState(
        step=replicated,
        policy=policy_sh,
        critic=critic_sh,
        policy_opt=opt_sh(policy_tx, state.policy_opt, policy_sh),
        critic_opt=None if critic_sh is None else opt_sh(critic_tx, state.critic_opt, critic_sh),
    )


def jit_update(update_fn, state_sharding: TrainState, batch_sharding, replicated):
    """The compiled step: explicit shardings in and out, the state donated (updated in place)."""
    return jax.jit(
        update_fn,
        in_shardings=(state_sharding, batch_sharding),
        out_shardings=(state_sharding, replicated),
        donate_argnums=(0,),
    )


def init_train_state(
    policy: nnx.Module, critic: nnx.Module | None, policy_tx, critic_tx, mesh, rules
) -> tuple[Models, TrainState, TrainState]:
    """Split the (already sharded) models and build optimizer states directly in their layout.

    ``critic`` None (a critic-free estimator): the state holds no critic and no critic optimizer.
    Returns the graphdefs, the state, and the state's shardings (for ``jit_update``).
    """
    policy_def, policy_params = nnx.split(policy)
    critic_def, critic_params = nnx.split(critic) if critic is not None else (None, None)
    replicated = NamedSharding(mesh, PartitionSpec())
    p_sh = param_shardings_of(policy_params, mesh, rules)
    c_sh = param_shardings_of(critic_params, mesh, rules) if critic is not None else None
    critic_opt_shape = jax.eval_shape(critic_tx.init, critic_params) if critic is not None else None
    abstract = TrainState(
        step=jnp.zeros((), jnp.int32),
        policy=policy_params,
        critic=critic_params,
        policy_opt=jax.eval_shape(policy_tx.init, policy_params),
        critic_opt=critic_opt_shape,
    )
    sharding = state_shardings(abstract, (p_sh, c_sh), policy_tx, critic_tx, replicated)
    policy_opt = jax.jit(policy_tx.init, out_shardings=sharding.policy_opt)(policy_params)
    critic_opt = None
    if critic is not None:
        critic_opt = jax.jit(critic_tx.init, out_shardings=sharding.critic_opt)(critic_params)
    state = TrainState(
        step=jax.device_put(jnp.zeros((), jnp.int32), replicated),
        policy=policy_params,
        critic=critic_params,
        policy_opt=policy_opt,
        critic_opt=critic_opt,
    )
    return Models(policy_def, critic_def), state, sharding
