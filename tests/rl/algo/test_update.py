"""The PPO step: exact microbatch accumulation, mesh equivalence, non-finite skip, no recompiles."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from flax import nnx
from jax.sharding import NamedSharding, PartitionSpec

from configs.sharding import RULES
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import ValueModel
from models.sharding import make_mesh, shard_model, use_mesh
from rl.algo import update as upd
from rl.config import OptimConfig, PPOConfig, RewardConfig

B, P, R, V = 8, 4, 6, 64
CFG = ModelConfig(
    vocab_size=V,
    hidden_size=32,
    intermediate_size=64,
    num_layers=2,
    num_heads=4,
    num_kv_heads=2,
    head_dim=8,
    attention_bias=True,
)


def make_batch(seed=0):
    rng = np.random.default_rng(seed)
    tokens = rng.integers(1, V, size=(B, P + R)).astype(np.int32)
    prompt_mask = np.ones((B, P), bool)
    prompt_mask[::2, :2] = False  # left padding on half the rows
    lengths = rng.integers(1, R + 1, size=B)
    response_mask = np.arange(R)[None] < lengths[:, None]
    f = lambda *s: rng.normal(size=s).astype(np.float32)  # noqa: E731
    return {
        "tokens": tokens,
        "attention_mask": np.concatenate([prompt_mask, response_mask], 1),
        "response_mask": response_mask,
        "old_logp": -np.abs(f(B, R)) - 3.0,
        "old_values": f(B, R),
        "advantages": f(B, R),
        "returns": f(B, R),
        "ref_logp": -np.abs(f(B, R)) - 3.0,
    }


def build(mesh_shape=(1, 1, 1), microbatches=1, kl_in="loss", lr=1e-3):
    devices = jax.devices()[: int(np.prod(mesh_shape))]
    mesh = make_mesh(mesh_shape, devices=devices)
    policy = shard_model(CausalLM(CFG, rngs=nnx.Rngs(0)), mesh, RULES)
    critic = shard_model(ValueModel.from_policy(policy, rngs=nnx.Rngs(1)), mesh, RULES)
    ocfg = OptimConfig(learning_rate=lr, critic_learning_rate=lr)
    ptx = upd.make_optimizer(ocfg, lr, 100)
    ctx = upd.make_optimizer(ocfg, lr, 100)
    models, state, sharding = upd.init_train_state(policy, critic, ptx, ctx, mesh, RULES)
    ppo_cfg = PPOConfig(microbatches=microbatches, entropy_coef=0.01)
    reward_cfg = RewardConfig(kl_coef=0.1, kl_in=kl_in)
    fn = upd.make_update_fn(models, ppo_cfg, reward_cfg, ptx, ctx, prompt_len=P)
    batch_sh = NamedSharding(mesh, PartitionSpec(("data", "fsdp")))
    replicated = NamedSharding(mesh, PartitionSpec())
    return mesh, fn, state, sharding, batch_sh, replicated


def test_four_microbatches_equal_the_full_batch():
    batch = make_batch()
    out = {}
    for m in (1, 4):
        mesh, fn, state, *_ = build(microbatches=m)
        with use_mesh(mesh, RULES):
            out[m] = jax.jit(fn.accumulate)(state.policy, state.critic, batch)
    g1p, g1c, m1 = out[1]
    g4p, g4c, m4 = out[4]
    for k in m1:
        np.testing.assert_allclose(m4[k], m1[k], rtol=1e-5, atol=1e-6, err_msg=k)
    chex.assert_trees_all_close(g4p, g1p, rtol=1e-4, atol=1e-6)
    chex.assert_trees_all_close(g4c, g1c, rtol=1e-4, atol=1e-6)
    assert float(optax_norm(g1p)) > 0 and float(optax_norm(g1c)) > 0


def optax_norm(tree):
    return jnp.sqrt(sum(jnp.sum(jnp.square(x)) for x in jax.tree.leaves(tree)))


def _run_steps(mesh_shape, steps=2):
    mesh, fn, state, sharding, batch_sh, replicated = build(mesh_shape, microbatches=2)
    step = upd.jit_update(fn, sharding, batch_sh, replicated)
    metrics = []
    with use_mesh(mesh, RULES):
        for i in range(steps):
            batch = jax.device_put(make_batch(i), batch_sh)
            state, m = step(state, batch)
            metrics.append(jax.device_get(m))
    return jax.device_get(state), metrics


def test_step_on_2x4_mesh_matches_one_device():
    single, m_single = _run_steps((1, 1, 1))
    sharded, m_sharded = _run_steps((2, 4, 1))
    for a, b in zip(m_single, m_sharded):
        for k in a:
            np.testing.assert_allclose(b[k], a[k], rtol=1e-5, atol=1e-5, err_msg=k)
    chex.assert_trees_all_close(sharded.policy, single.policy, atol=1e-5)
    chex.assert_trees_all_close(sharded.critic, single.critic, atol=1e-5)
    assert int(sharded.step) == 2


def test_tensor_parallel_mesh_matches_one_device():
    single, m_single = _run_steps((1, 1, 1), steps=1)
    tp, m_tp = _run_steps((1, 2, 4), steps=1)
    chex.assert_trees_all_close(tp.policy, single.policy, atol=1e-5)
    np.testing.assert_allclose(m_tp[0]["policy_loss"], m_single[0]["policy_loss"], rtol=1e-5)


def test_non_finite_update_is_skipped_and_compiled_once():
    mesh, fn, state, sharding, batch_sh, replicated = build()
    traced = chex.assert_max_traces(fn, n=1)
    step = upd.jit_update(traced, sharding, batch_sh, replicated)
    before = jax.device_get(state.policy)
    bad = make_batch()
    bad["advantages"][0, 0] = np.nan
    with use_mesh(mesh, RULES):
        state, m = step(state, jax.device_put(bad, batch_sh))
        assert float(m["skipped"]) == 1.0
        assert int(state.step) == 0
        chex.assert_trees_all_equal(jax.device_get(state.policy), before)
        state, m = step(state, jax.device_put(make_batch(1), batch_sh))  # same shapes: no retrace
        assert float(m["skipped"]) == 0.0 and int(state.step) == 1
    changed = jax.tree.map(
        lambda a, b: not np.array_equal(a, b), jax.device_get(state.policy), before
    )
    assert any(jax.tree.leaves(changed))


@pytest.mark.parametrize("schedule", ["constant", "cosine"])
def test_schedule_warmup(schedule):
    sched = upd.make_schedule(OptimConfig(schedule=schedule, warmup_steps=10), 1.0, 110)
    np.testing.assert_allclose(sched(0), 0.0)
    np.testing.assert_allclose(sched(5), 0.5)
    np.testing.assert_allclose(sched(10), 1.0)
    if schedule == "cosine":
        np.testing.assert_allclose(sched(110), 0.0, atol=1e-6)
        np.testing.assert_allclose(sched(60), 0.5, atol=1e-6)
    else:
        np.testing.assert_allclose(sched(100), 1.0)


def _build_variant(critic: bool, train_policy: bool = True, temperature: float = 1.0):
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    policy = shard_model(CausalLM(CFG, rngs=nnx.Rngs(0)), mesh, RULES)
    value = shard_model(ValueModel.from_policy(policy, rngs=nnx.Rngs(1)), mesh, RULES)
    ocfg = OptimConfig(learning_rate=1e-3, critic_learning_rate=1e-3)
    ptx = upd.make_optimizer(ocfg, 1e-3, 100)
    ctx = upd.make_optimizer(ocfg, 1e-3, 100) if critic else None
    models, state, _ = upd.init_train_state(
        policy, value if critic else None, ptx, ctx, mesh, RULES
    )
    fn = upd.make_update_fn(
        models,
        PPOConfig(entropy_coef=0.01),
        RewardConfig(kl_coef=0.1, kl_in="loss"),
        ptx,
        ctx,
        prompt_len=P,
        temperature=temperature,
        train_policy=train_policy,
    )
    return state, jax.jit(fn)


def test_critic_free_step_moves_the_policy_as_the_critic_step_does_and_holds_no_critic():
    """The policy's loss does not involve the critic, so the critic-free step gives the same
    policy update; its state has no critic, and its metrics no value terms."""
    batch = make_batch()
    with_critic, fn = _build_variant(True)
    new_with, m_with = fn(with_critic, batch)
    free, fn_free = _build_variant(False)
    assert free.critic is None and free.critic_opt is None
    new_free, m_free = fn_free(free, batch)
    chex.assert_trees_all_close(new_free.policy, new_with.policy, rtol=1e-5, atol=1e-7)
    assert new_free.critic is None
    assert "value_loss" not in m_free and "critic_grad_norm" not in m_free
    for k in ("policy_loss", "entropy", "kl_ref", "policy_grad_norm"):
        np.testing.assert_allclose(m_free[k], m_with[k], rtol=1e-5, err_msg=k)


def test_critic_warmup_step_trains_the_critic_and_leaves_the_policy_bit_for_bit():
    batch = make_batch()
    state, fn = _build_variant(True, train_policy=False)
    before = jax.tree.map(np.array, (state.policy, state.policy_opt, state.critic))
    new, metrics = fn(state, batch)
    chex.assert_trees_all_equal(new.policy, before[0])
    chex.assert_trees_all_equal(new.policy_opt, before[1])
    assert not all(jax.tree.leaves(jax.tree.map(np.array_equal, new.critic, before[2])))
    assert set(metrics) == {"value_loss", "critic_grad_norm", "skipped"}
    assert int(new.step) == 1


def test_the_ratio_uses_the_sampling_temperature():
    """old_logp taken at temperature 0.5 from the same policy makes the ratio exactly 1 only
    when the step divides its logits by 0.5 too: approx_kl and clip_frac are then 0."""
    batch = make_batch()
    state, fn = _build_variant(False, temperature=0.5)
    graphdef, params = nnx.split(CausalLM(CFG, rngs=nnx.Rngs(0)))
    logits = upd.response_logits(
        graphdef, params, batch["tokens"], batch["attention_mask"], P, temperature=0.5
    )
    old = jnp.take_along_axis(
        jax.nn.log_softmax(logits, -1), jnp.asarray(batch["tokens"][:, P:, None]), -1
    )[..., 0]
    _, metrics = fn(state, dict(batch, old_logp=np.asarray(old)))
    assert abs(float(metrics["approx_kl"])) < 1e-6 and float(metrics["clip_frac"]) == 0.0
    state1, fn1 = _build_variant(False, temperature=1.0)
    _, untempered = fn1(state1, dict(batch, old_logp=np.asarray(old)))
    assert float(untempered["approx_kl"]) > 1e-3  # the untempered ratio is not 1


@pytest.mark.parametrize("scale", [0.0, 0.3, 1.0, 7.0])
def test_clip_by_global_norm_equals_optax(scale):
    """The scalar-factor clip gives optax.clip_by_global_norm's updates within an ulp, below the
    threshold (unchanged), at it, above it (rescaled to norm max_norm) and for zero gradients;
    a NaN gradient stays NaN (the step's non-finite check then skips the update)."""
    rng = np.random.default_rng(5)
    grads = {
        "a": jnp.asarray(rng.normal(size=(3, 4)), jnp.float32),
        "b": jnp.asarray(rng.normal(size=(5,)), jnp.float32),
    }
    grads = jax.tree.map(lambda g: g * scale, grads)
    norm = float(jax.tree.reduce(lambda s, g: s + jnp.sum(g * g), grads, 0.0)) ** 0.5
    max_norm = 2.0
    ours, _ = upd.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    want, _ = optax.clip_by_global_norm(max_norm).update(grads, optax.EmptyState())
    for a, b in zip(jax.tree.leaves(ours), jax.tree.leaves(want)):
        np.testing.assert_allclose(a, b, rtol=2e-7, atol=0)
    got_norm = float(optax.global_norm(ours))
    np.testing.assert_allclose(got_norm, min(norm, max_norm), rtol=1e-6)
    nan = upd.clip_by_global_norm(max_norm).update(
        {"a": jnp.asarray([1.0, jnp.nan])}, optax.EmptyState()
    )[0]
    assert np.isnan(np.asarray(nan["a"])).all()
