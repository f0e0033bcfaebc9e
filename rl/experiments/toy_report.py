"""Results of the embedded default: ``results.json``, ``results.md`` and the training-curve plots.

Held-out figures come from the greedy evaluation of each policy (``rl.eval.evaluator``); the curves
come from each PPO run's ``metrics.jsonl`` (sampled rollouts): batch accuracy, steps per response
and the PRM's raw return per response, one line per variant (mean over seeds).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import ml_collections
import numpy as np
import scipy.stats
from matplotlib.figure import Figure

CURVES = (
    ("rollout/batch_accuracy", "accuracy (sampled rollouts)", "accuracy.png"),
    ("rollout/steps_per_response", "steps per response", "steps_per_response.png"),
    ("reward/prm_raw", "PRM return (sum of raw step scores)", "prm_return.png"),
)


def _fmt(value: Any, digits: int = 3) -> str:
    return "–" if value is None else f"{value:.{digits}f}"


def _spread(r: dict[str, Any], key: str, digits: int) -> str:
    """``mean ± std`` over seeds (the mean alone for one seed)."""
    text = _fmt(r.get(key), digits)
    if r.get(f"{key}_std") is not None:
        text += f" ± {r[f'{key}_std']:.{digits}f}"
    return text


def markdown(results: dict[str, Any]) -> str:
    """The results table: each variant's mean over seeds ± the seeds' standard deviation, and the
    accuracy's 95% interval (Student t over the seeds)."""
    init = results["initial"]
    lines = [
        "| variant | accuracy before | accuracy after | 95% interval | steps / response "
        "| repeated-step fraction | response length | PRM return |",
        "|---|---|---|---|---|---|---|---|",
        f"| initial policy | – | {_fmt(init['accuracy'])} | – "
        f"| {_fmt(init['steps_per_response'], 2)} "
        f"| {_fmt(init['repeated_step_fraction'])} | {_fmt(init['response_length'], 1)} "
        f"| {_fmt(init.get('prm_return'), 2)} |",
    ]
    for name, r in results["variants"].items():
        ci = "–"
        if r.get("accuracy_ci95") is not None and r.get("accuracy") is not None:
            lo, hi = r["accuracy"] - r["accuracy_ci95"], r["accuracy"] + r["accuracy_ci95"]
            ci = f"[{lo:.3f}, {hi:.3f}]"
        lines.append(
            f"| {name} | {_fmt(init['accuracy'])} | {_spread(r, 'accuracy', 3)} | {ci} "
            f"| {_spread(r, 'steps_per_response', 2)} "
            f"| {_spread(r, 'repeated_step_fraction', 3)} | {_fmt(r['response_length'], 1)} "
            f"| {_fmt(r.get('prm_return'), 2)} |"
        )
    return "\n".join(lines) + "\n"


# The paper's effect, as the issue that specified this reproduction states it.
STEPS_HACKED = 1.5  # raw PRM: steps per response at least this many times success-only's
STEPS_KEPT = 1.2  # bounded PRM rewards: steps per response within this factor of success-only's
# "No worse than success-only": the mean accuracy is above success-only's, or below it by less
# than the seeds' noise, t(0.975, n1 + n2 - 2) x the standard error of the difference of the two
# means (sqrt(s1^2/n1 + s2^2/n2) over the seeds' accuracies). With one seed per variant there is no
# spread to measure, and this fixed slack stands in for it (about the standard error of a greedy
# accuracy near 0.5 on the default's 256 held-out problems: sqrt(0.25 / 256) = 0.031).
ACCURACY_SLACK = 0.03
BOUNDED = ("prm_clip", "prm_delta", "prm_clip_delta")


def checks(results: dict[str, Any]) -> list[dict[str, Any]]:
    """Each criterion of the paper's effect, its measured value and whether it holds; criteria whose
    variants were not run are left out.

    Variants named ``<refinement>@<scheme>`` (``configs/credit_study.py``) are checked within their
    scheme, against ``success_only@<scheme>``; the criteria's names carry the ``@<scheme>``."""
    v, init = results["variants"], results["initial"]
    schemes = sorted({name.partition("@")[2] for name in v})
    out: list[dict[str, Any]] = []
    for scheme in schemes:
        tag = f"@{scheme}" if scheme else ""
        within = {
            name.partition("@")[0]: r for name, r in v.items() if name.partition("@")[2] == scheme
        }
        out += _checks_within(within, init, tag)
    return out


def _checks_within(v: dict[str, Any], init: dict[str, Any], tag: str) -> list[dict[str, Any]]:
    base = v.get("success_only")
    out: list[dict[str, Any]] = []
    if base is None:
        return out

    def add(name, value, ok, noise=None):
        # Ratios read as "2.41x", differences (accuracy, fraction) as "+0.031".
        row = {
            "check": name,
            "value": float(value),
            "holds": bool(ok),
            "kind": "ratio" if "steps" in name else "difference",
        }
        if noise is not None:
            row["noise"], row["noise_basis"] = noise
        out.append(row)

    if (raw := v.get("prm_raw")) is not None:
        ratio = raw["steps_per_response"] / base["steps_per_response"]
        add(
            f"prm_raw{tag} steps / success_only{tag} steps >= {STEPS_HACKED}",
            ratio,
            ratio >= STEPS_HACKED,
        )
        add(
            f"prm_raw{tag} repeated-step fraction above the initial policy's",
            raw["repeated_step_fraction"] - init["repeated_step_fraction"],
            raw["repeated_step_fraction"] > init["repeated_step_fraction"],
        )
        noise = accuracy_noise(raw, base)
        add(
            f"prm_raw{tag} accuracy below success_only{tag} beyond the noise",
            raw["accuracy"] - base["accuracy"],
            raw["accuracy"] < base["accuracy"] - noise[0],
            noise,
        )
    for name in BOUNDED:
        if (r := v.get(name)) is None:
            continue
        ratio = r["steps_per_response"] / base["steps_per_response"]
        add(
            f"{name}{tag} steps / success_only{tag} steps within {STEPS_KEPT}x",
            ratio,
            1 / STEPS_KEPT <= ratio <= STEPS_KEPT,
        )
        noise = accuracy_noise(r, base)
        add(
            f"{name}{tag} accuracy no worse than success_only{tag} (within the noise)",
            r["accuracy"] - base["accuracy"],
            r["accuracy"] >= base["accuracy"] - noise[0],
            noise,
        )
    return out


def summarize_seeds(per_seed: list[dict[str, Any]], seeds, keys) -> dict[str, Any]:
    """Mean over seeds of each figure, plus every seed's own values; with two or more seeds, the
    sample standard deviation (``_std``, ddof 1) and the half-width of the mean's 95% Student-t
    interval (``_ci95``: t(0.975, n - 1) * std / sqrt(n); with 3 seeds t = 4.30, so the interval is
    wide: three seeds tell large effects from noise, not small ones)."""
    out: dict[str, Any] = {}
    for key in keys:
        values = [r.get(key) for r in per_seed if isinstance(r.get(key), (int, float))]
        out[key] = float(np.mean(values)) if values else None
        if len(values) > 1:
            std = float(np.std(values, ddof=1))
            out[f"{key}_std"] = std
            out[f"{key}_ci95"] = float(
                scipy.stats.t.ppf(0.975, len(values) - 1) * std / np.sqrt(len(values))
            )
    out["seeds"] = {str(s): r for s, r in zip(seeds, per_seed, strict=True)}
    return out


def _seed_values(r: dict[str, Any], key: str) -> list[float]:
    per_seed = (r.get("seeds") or {}).values()
    values = [x.get(key) for x in per_seed if isinstance(x.get(key), (int, float))]
    return values or ([r[key]] if isinstance(r.get(key), (int, float)) else [])


def accuracy_noise(r: dict[str, Any], base: dict[str, Any]) -> tuple[float, str]:
    """How far apart two variants' mean accuracies may be by the seeds' noise alone, and how that
    was decided (``ACCURACY_SLACK`` when a variant has fewer than two seeds)."""
    a, b = _seed_values(r, "accuracy"), _seed_values(base, "accuracy")
    if len(a) < 2 or len(b) < 2:
        return ACCURACY_SLACK, "fixed slack (one seed: no spread measured)"
    se = float(np.sqrt(np.var(a, ddof=1) / len(a) + np.var(b, ddof=1) / len(b)))
    noise = float(scipy.stats.t.ppf(0.975, len(a) + len(b) - 2)) * se
    return noise, f"t x standard error over {len(a)} + {len(b)} seeds"


def checks_markdown(rows: list[dict[str, Any]]) -> str:
    lines = ["| criterion | measured | noise | holds |", "|---|---|---|---|"]
    for r in rows:
        value = f"{r['value']:.2f}x" if r["kind"] == "ratio" else f"{r['value']:+.3f}"
        noise = f"±{r['noise']:.3f} ({r['noise_basis']})" if "noise" in r else "–"
        lines.append(f"| {r['check']} | {value} | {noise} | {'yes' if r['holds'] else '**no**'} |")
    return "\n".join(lines) + "\n"


def reward_models_markdown(info: dict[str, Any]) -> str:
    """One line per reward model: its held-out accuracy / AUC against the automatic labels."""
    parts = []
    for kind, keys in (
        ("orm", ("accuracy", "auc")),
        ("prm", ("accuracy", "auc")),
        ("implicit_prm", ("step_accuracy", "step_auc")),
    ):
        m = info.get(kind)
        if isinstance(m, dict):
            parts.append(f"{kind}: " + ", ".join(f"{k} {_fmt(m.get(k))}" for k in keys))
    return "Reward models, held out (10% of the labelled solutions): " + "; ".join(parts) + "."


def premise_markdown(premise: dict[str, Any]) -> str:
    """The premise before PPO: how the reward models rank the initial policy's samples."""
    n = premise["samples"]
    lines = [
        f"The premise, before PPO ({premise['problems']} held-out problems, {n} samples of the "
        "initial policy each; margins against maj@N with their paired standard errors):",
        "",
        f"| greedy | mean sample | maj@{n} | pass@{n} | "
        + " | ".join(f"best-of-{n} {k}" for k in premise["best_of_n"])
        + " |",
        "|---|---|---|---|" + "---|" * len(premise["best_of_n"]),
        f"| {_fmt(premise['greedy_accuracy'])} | {_fmt(premise['mean_sample_accuracy'])} "
        f"| {_fmt(premise['maj@n'])} | {_fmt(premise['pass@n'])} | "
        + " | ".join(
            f"{_fmt(v['accuracy'])} ({v['margin']:+.3f} ± {_fmt(v['margin_se'])})"
            for v in premise["best_of_n"].values()
        )
        + " |",
    ]
    if "answered_fraction" in premise:
        anyone = ", ".join(
            f"{k} {_fmt(v['any_response_accuracy'])}" for k, v in premise["best_of_n"].items()
        )
        lines += [
            "",
            f"Best-of-{n} picks among the samples that state an answer "
            f"({_fmt(premise['answered_fraction'])} of them), as maj@{n} votes; picked among all "
            f"{n}: {anyone}.",
        ]
    check = premise.get("check")
    if check:
        verdict = "holds" if check["holds"] else "does NOT hold"
        lines += ["", f"Check: {check['statement']}: {verdict}."]
    return "\n".join(lines)


def _seed_curves(workdir: Path, variant: str, seeds) -> np.ndarray | None:
    """[metric, seed, iteration] values of one variant's runs (NaN where a metric is missing),
    cut to the shortest run; None when no run has metrics."""
    runs = []
    for seed in seeds:
        path = workdir / "ppo" / variant / f"seed{seed}" / "metrics.jsonl"
        if path.exists():
            runs.append([json.loads(line) for line in path.read_text().splitlines() if line])
    if not runs:
        return None
    n = min(len(r) for r in runs)
    return np.asarray(
        [[[float(r[i].get(key, np.nan)) for i in range(n)] for r in runs] for key, _, _ in CURVES]
    )


def _nan_stat(fn, values: np.ndarray) -> list[float]:
    """``fn`` over seeds (axis 0) per iteration, NaN where every seed is NaN."""
    out = []
    for column in values.T:
        ok = column[~np.isnan(column)]
        out.append(float(fn(ok)) if ok.size else float("nan"))
    return out


def curves(workdir: Path, variants, seeds) -> dict[str, dict[str, list[float]]]:
    """metric -> variant -> mean-over-seeds value per iteration."""
    out: dict[str, dict[str, list[float]]] = {key: {} for key, _, _ in CURVES}
    for variant in variants:
        if (values := _seed_curves(workdir, variant, seeds)) is not None:
            for k, (key, _, _) in enumerate(CURVES):
                out[key][variant] = _nan_stat(np.mean, values[k])
    return out


def curve_spread(workdir: Path, variants, seeds) -> dict[str, dict[str, list[float]]]:
    """metric -> variant -> the seeds' standard deviation per iteration (ddof 0; 0 for one seed):
    the band the plots draw around the mean."""
    out: dict[str, dict[str, list[float]]] = {key: {} for key, _, _ in CURVES}
    for variant in variants:
        if (values := _seed_curves(workdir, variant, seeds)) is not None:
            for k, (key, _, _) in enumerate(CURVES):
                out[key][variant] = _nan_stat(np.std, values[k])
    return out


def plot(workdir: Path, data: dict[str, dict[str, list[float]]], spread=None) -> list[Path]:
    """One figure per curve: each variant's mean over seeds, with a band of ± one standard
    deviation of the seeds where there are several."""
    paths = []
    for key, label, filename in CURVES:
        # The object API needs no pyplot state and no display backend (runs headless).
        fig = Figure(figsize=(6, 4))
        ax = fig.subplots()
        for variant, values in data[key].items():
            x = np.arange(1, len(values) + 1)
            (line,) = ax.plot(x, values, label=variant)
            band = (spread or {}).get(key, {}).get(variant)
            if band is not None and np.nanmax(np.asarray(band, float), initial=0.0) > 0:
                mean, sd = np.asarray(values, float), np.asarray(band, float)
                ax.fill_between(x, mean - sd, mean + sd, color=line.get_color(), alpha=0.2)
        ax.set_xlabel("PPO iteration")
        ax.set_ylabel(label)
        ax.grid(alpha=0.3)
        if data[key]:
            ax.legend(fontsize=7)
        fig.tight_layout()
        path = workdir / filename
        fig.savefig(path, dpi=110)
        paths.append(path)
    return paths


def write(workdir: Path, results: dict[str, Any], cfg: ml_collections.ConfigDict) -> None:
    workdir = Path(workdir)
    data = curves(workdir, results["variants"], cfg.seeds)
    spread = curve_spread(workdir, results["variants"], cfg.seeds)
    results = dict(results, curves=data, curves_std=spread, checks=checks(results))
    (workdir / "results.json").write_text(json.dumps(_jsonable(results), indent=2, sort_keys=True))
    plots = plot(workdir, data, spread)
    md = [
        "# Reward design on the toy task",
        "",
        f"Seeds: {list(cfg.seeds)} (mean ± the seeds' standard deviation; curves: the mean with a "
        f"± one standard deviation band); PPO iterations per run: {cfg.ppo.train.iterations}; "
        f"held-out problems: {results['initial'].get('n')}. Greedy decoding on the test split; "
        "PRM return = sum of the trained PRM's step scores on the policy's own responses.",
        "",
        markdown(results),
        "",
    ]
    if results.get("reward_models"):
        md += [reward_models_markdown(results["reward_models"]), ""]
    if results.get("premise"):
        md += [premise_markdown(results["premise"]), ""]
    if results["checks"]:
        md += [
            "The paper's effect (raw PRM hacked; Clip / Delta keep the learned reward safe):",
            "",
            checks_markdown(results["checks"]),
            "",
        ]
    md += [f"![{p.stem}]({p.name})" for p in plots]
    (workdir / "results.md").write_text("\n".join(md) + "\n")


def _jsonable(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_jsonable(v) for v in value]
    if isinstance(value, (np.floating, float)):
        v = float(value)
        return v if np.isfinite(v) else None
    if isinstance(value, np.integer):
        return int(value)
    return value
