"""Mesh, logical-to-mesh axis rules, and sharded model creation.

Parameters name their axes logically where they are defined (`("embed", "mlp")`); one rule table
(`configs/sharding.py`) maps those names to the mesh axes `("data", "fsdp", "tensor")`. This module
turns (logical names, rules, mesh, shape) into `PartitionSpec`s, and builds models directly in their
sharded layout: abstract init (`nnx.eval_shape`) → shardings → `jax.jit(init, out_shardings=...)`,
so full parameters never exist on one host.

Rules are `(logical_name, mesh_axes)` pairs where mesh_axes is a mesh axis name, a tuple of them, or
None (replicated). Two robustness choices, both needed by real configs:
  * a mesh axis is used at most once per array (the first logical dim that claims it wins), and
  * a dim that a mesh axis does not divide drops that axis (e.g. Qwen2-1.5B's 2 KV heads on tensor=4
    stay replicated), keeping the longest prefix of the rule's axes whose product divides it.
"""

from __future__ import annotations

import contextlib
import math
from collections.abc import Callable, Iterator, Mapping, Sequence
from typing import Any, TypeVar

import jax
from flax import nnx
from flax.core import spmd as flax_spmd
from jax.sharding import AxisType, NamedSharding, PartitionSpec

M = TypeVar("M")
MESH_AXES = ("data", "fsdp", "tensor")
Rules = Sequence[tuple[str, Any]]


def make_mesh(
    shape: Sequence[int],
    axis_names: Sequence[str] = MESH_AXES,
    devices: Sequence[jax.Device] | None = None,
) -> jax.sharding.Mesh:
    """A mesh of `shape` over `devices` (default: all); one entry of `shape` may be -1 (the rest).

    Axes are `AxisType.Auto`: shardings of parameters and inputs are given explicitly and XLA
    propagates the rest (guided by `constrain`), which is how FSDP/tensor-parallel programs are
    written here.
    """
    devices = list(jax.devices() if devices is None else devices)
    shape = list(shape)
    if len(shape) != len(axis_names):
        raise ValueError(f"mesh shape {tuple(shape)} does not match axis names {tuple(axis_names)}")
    if shape.count(-1) > 1:
        raise ValueError(f"mesh shape {tuple(shape)} may contain at most one -1")
    if -1 in shape:
        known = math.prod(s for s in shape if s != -1)
        if len(devices) % known:
            raise ValueError(f"mesh shape {tuple(shape)} does not divide {len(devices)} devices")
        shape[shape.index(-1)] = len(devices) // known
    if math.prod(shape) != len(devices):
        raise ValueError(
            f"mesh shape {tuple(shape)} needs {math.prod(shape)} devices, have {len(devices)}"
        )
    return jax.make_mesh(
        tuple(shape), tuple(axis_names), axis_types=(AxisType.Auto,) * len(shape), devices=devices
    )


def logical_to_spec(
    logical_axes: Sequence[str | None],
    rules: Rules,
    mesh_axis_sizes: Mapping[str, int],
    shape: Sequence[int] | None = None,
) -> PartitionSpec:
    """PartitionSpec for an array whose dims carry `logical_axes`, under `rules` on a mesh.

    Unknown logical names raise (a typo would otherwise silently replicate a weight). Mesh axes that
    the mesh lacks or that have size 1 are skipped, so the same rules serve any mesh and specs stay
    in the normal form XLA reports back.
    """
    table: dict[str, Any] = {}
    for name, target in rules:
        table.setdefault(name, target)
    used: set[str] = set()
    spec: list[Any] = []
    for i, name in enumerate(logical_axes):
        if name is None:
            spec.append(None)
            continue
        if name not in table:
            raise KeyError(
                f"logical axis {name!r} has no sharding rule; rules cover {sorted(table)}"
            )
        target = table[name]
        axes = () if target is None else (target,) if isinstance(target, str) else tuple(target)
        axes = tuple(a for a in axes if mesh_axis_sizes.get(a, 1) > 1 and a not in used)
        if shape is not None:
            while axes and shape[i] % math.prod(mesh_axis_sizes[a] for a in axes):
                axes = axes[:-1]
        used.update(axes)
        spec.append(None if not axes else axes[0] if len(axes) == 1 else axes)
    return PartitionSpec(*spec)


def _logical_axes(var: nnx.Variable) -> tuple[str | None, ...] | None:
    return var.get_metadata().get("out_sharding")


def state_shardings(state: Any, mesh: jax.sharding.Mesh, rules: Rules) -> Any:
    """NamedShardings for every Variable of an (abstract or concrete) nnx state, same tree
    structure.

    Variables without logical axes (none here, but e.g. RNG state) are replicated.
    """
    sizes = dict(mesh.shape)

    def one(var):
        axes = _logical_axes(var)
        shape = var.shape
        spec = PartitionSpec() if not axes else logical_to_spec(axes, rules, sizes, shape)
        return var.replace(NamedSharding(mesh, spec))

    return jax.tree.map(one, state, is_leaf=lambda x: isinstance(x, nnx.Variable))


def array_sharding(
    logical_axes: Sequence[str | None], shape: Sequence[int], mesh: jax.sharding.Mesh, rules: Rules
) -> NamedSharding:
    """NamedSharding of one array (inputs, KV cache) from its logical axes."""
    return NamedSharding(mesh, logical_to_spec(logical_axes, rules, dict(mesh.shape), shape))


def create_sharded(make_model: Callable[[], M], mesh: jax.sharding.Mesh, rules: Rules) -> M:
    """Builds `make_model()` with every parameter created directly in its sharded layout.

    `make_model` must be deterministic (seed its own `nnx.Rngs`): it runs once abstractly for shapes
    and once inside `jit`, whose `out_shardings` make each device compute only its own shards.
    """
    abstract = nnx.eval_shape(make_model)
    graphdef, abstract_state = nnx.split(abstract)
    shardings = state_shardings(abstract_state, mesh, rules)

    def init():
        return nnx.split(make_model())[1]

    state = jax.jit(init, out_shardings=shardings)()
    return nnx.merge(graphdef, state)


def shard_model(model: M, mesh: jax.sharding.Mesh, rules: Rules) -> M:
    """Moves an existing model's state onto `mesh` per `rules`, in place; returns the model.

    For small or already-sharded models (e.g. a fresh value head next to a copied sharded backbone);
    large models should be created with `create_sharded` or loaded with
    `hf_io.load_causal_lm(mesh=...)`.
    """
    state = nnx.state(model)
    nnx.update(model, jax.device_put(state, state_shardings(state, mesh, rules)))
    return model


@contextlib.contextmanager
def use_mesh(mesh: jax.sharding.Mesh, rules: Rules) -> Iterator[None]:
    """Context in which model code constrains activations to `rules` on `mesh` (see `constrain`).

    Trace (call or jit) the model inside it. Outside, `constrain` is a no-op, so single-device code
    and tests need no mesh.
    """
    with jax.set_mesh(mesh), nnx.logical_axis_rules(tuple(rules)):
        yield


def constrain(x: jax.Array, logical_axes: Sequence[str | None]) -> jax.Array:
    """Sharding constraint on an activation by logical names, when a mesh and rules are active.

    Pins the FSDP pattern (batch over data×fsdp, weights gathered) instead of leaving XLA to
    propagate a weight's fsdp-sharded dim into the activations.
    """
    rules = flax_spmd.get_logical_axis_rules()
    mesh = jax.sharding.get_abstract_mesh()
    if not rules or mesh.empty:
        return x
    if not all(t == AxisType.Auto for t in mesh.axis_types):
        return x  # Explicit-axis meshes carry shardings in the types; nothing to constrain.
    spec = logical_to_spec(logical_axes, rules, dict(mesh.shape), x.shape)
    return jax.lax.with_sharding_constraint(x, spec)
