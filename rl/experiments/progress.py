"""One progress bar for the whole embedded default: stage, current variant and seed, and an ETA.

The stages cost very different amounts per unit (an SFT step, a reward model, a PPO iteration), so
the bar counts *estimated seconds*: each unit advances it by its share of the config's ``budget``
(``configs/toy.py`` states where those figures come from). tqdm's rate then turns the estimate into
a real ETA for this machine: if it runs twice as slowly as the budget, the rate halves and the ETA
doubles. A stage found finished in the workdir (a resumed run) advances the bar at once, so the ETA
covers only the work left.
"""

from __future__ import annotations

import sys
from typing import Any

import ml_collections
from tqdm import tqdm

BUDGET_KEYS = (
    "sft_step_s",
    "labels_s",
    "reward_model_s",
    "premise_s",
    "eval_s",
    "ppo_iteration_s",
)


def reward_model_kinds(cfg: ml_collections.ConfigDict) -> tuple[str, ...]:
    """The reward models the pipeline trains: the ORM and the PRM always (the premise ranks
    samples with both and every PPO run logs the PRM's return), the implicit PRM only when a
    configured variant rewards with it (``implicit_prm_weight``). The plan counts these."""
    rewards = cfg.get("variant_rewards") or {}
    implicit = any((rewards.get(v) or {}).get("implicit_prm_weight") for v in cfg.variants)
    return ("orm", "prm", "implicit_prm") if implicit else ("orm", "prm")


def planned_seconds(cfg: ml_collections.ConfigDict) -> dict[str, float]:
    """Estimated wall seconds per stage of a pipeline config (each PPO run with its evaluation;
    runs side by side in ``config.workers`` processes count once per round)."""
    b = cfg.get("budget")
    if b is None:
        raise ValueError(
            "config.budget: missing (estimated seconds per unit: " + ", ".join(BUDGET_KEYS) + ")"
        )
    for key in BUDGET_KEYS:
        if not (isinstance(b.get(key), (int, float)) and b[key] >= 0):
            raise ValueError(f"config.budget.{key}={b.get(key)!r}: must be a number >= 0 (seconds)")
    runs = len(cfg.variants) * len(cfg.seeds)
    return {
        "sft": cfg.sft.steps * b.sft_step_s,
        "labels": b.labels_s,
        "reward_models": len(reward_model_kinds(cfg)) * b.reward_model_s,
        "initial_eval": b.eval_s,
        "premise": b.premise_s,
        # Runs share out over config.workers processes, one core each (rl.experiments.workers);
        # the budget's PPO figures are those of one run on one core.
        "ppo": runs
        * (cfg.ppo.train.iterations * b.ppo_iteration_s + b.eval_s)
        / max(1, min(cfg.get("workers", 1), runs)),
    }


class PipelineProgress:
    """``stage(name, **postfix)`` names what runs; ``advance(seconds)`` moves the bar by that many
    estimated seconds. Writes to stderr; ``enabled=False`` (tests) draws nothing."""

    def __init__(self, cfg: ml_collections.ConfigDict, *, enabled: bool = True, file=None):
        self.plan = planned_seconds(cfg)
        self.budget = cfg.budget
        self.bar = tqdm(
            total=round(sum(self.plan.values())),
            desc="reproduce",
            unit="s",
            bar_format="{desc} {percentage:3.0f}%|{bar}| [{elapsed}<{remaining}] {postfix}",
            file=file or sys.stderr,
            disable=not enabled,
            mininterval=1.0,
            dynamic_ncols=True,
        )
        self.done = 0.0

    def stage(self, name: str, **postfix: Any) -> None:
        self.bar.set_postfix_str(" ".join([name] + [f"{k}={v}" for k, v in postfix.items()]))

    def advance(self, seconds: float) -> None:
        self.done += seconds
        self.bar.update(round(self.done) - self.bar.n)

    def write(self, line: str) -> None:
        """A log line printed above the bar (stdout), not through it."""
        self.bar.write(line, file=sys.stdout)

    def close(self) -> None:
        self.bar.close()
