"""The memory check's report as text: per-device GiB, the analytic count beside the compiled one.

`render` takes the dict launch.memory.assess returns (also what `--json` writes) and gives the lines
launch/aot.py prints: each model's size and source of shapes, the state terms, then per program its
arguments, transient terms, temporaries and what stays resident meanwhile, its peak, and the
verdict for the chosen slice and (analytic) for every slice the config supports.
"""

from __future__ import annotations

from typing import Any

from configs.topologies import GIB
from launch.memory import PROGRAMS

_ARGS = {
    "update": "arguments: policy+critic params, Adam, minibatch",
    "sample": "arguments: policy params, prompts",
    "score": "arguments: every model's params, the rollout",
}


def _gib(x) -> str:
    return "" if x is None else f"{x / GIB:.3f}"


def row(label: str, a=None, c=None, indent: int = 2) -> str:
    """One line of the table: `label`, then bytes `a` (analytic) and `c` (compiled) in GiB."""
    return f"{' ' * indent}{label:<{58 - indent}}{_gib(a):>9}{_gib(c):>10}".rstrip()


def render(r: dict[str, Any]) -> list[str]:
    """The report as text: per-device GiB, analytic beside compiled."""
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
        "  ref      a copy of the policy (as rl/runtime/model_builder.frozen_copy makes it)",
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

    def verdict(ok):
        return [
            f"{n} ({v['peak'] / GIB:.1f}/{v['hbm'] / GIB:.0f})"
            for n, v in r["fits_on"].items()
            if v["fits"] == ok
        ]

    if r["fits_on"]:
        lines.append(f"fits on (analytic peak/HBM GiB): {', '.join(verdict(True)) or 'none'}")
        if verdict(False):
            lines.append(f"does not fit on: {', '.join(verdict(False))}")
    return lines
