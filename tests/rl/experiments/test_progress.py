"""The pipeline's progress bar: its plan in estimated seconds, worked by hand, and what it draws."""

import io

import ml_collections
import pytest

from rl.experiments.progress import PipelineProgress, planned_seconds, reward_model_kinds


def _cfg(**budget):
    c = ml_collections.ConfigDict(
        dict(
            variants=("success_only", "prm_raw"),
            variant_rewards=dict(
                success_only=dict(),
                prm_raw=dict(prm_weight=1.0),
                implicit_prm=dict(implicit_prm_weight=1.0),
            ),
            seeds=(0, 1, 2),
            sft=dict(steps=100),
            ppo=dict(train=dict(iterations=10)),
            budget=dict(
                sft_step_s=0.5,
                labels_s=30.0,
                reward_model_s=10.0,
                premise_s=7.0,
                eval_s=2.0,
                ppo_iteration_s=1.5,
            ),
        )
    )
    c.budget.update(budget)
    return c


def test_plan_by_hand():
    # 2 variants x 3 seeds = 6 runs of 10 iterations x 1.5 s, each with a 2 s evaluation; two
    # reward models (ORM, PRM) of 10 s.
    assert planned_seconds(_cfg()) == {
        "sft": 50.0,
        "labels": 30.0,
        "reward_models": 20.0,
        "initial_eval": 2.0,
        "premise": 7.0,
        "ppo": 6 * (15.0 + 2.0),
    }


def test_the_implicit_prm_is_trained_only_for_a_variant_that_rewards_with_it():
    cfg = _cfg()
    assert reward_model_kinds(cfg) == ("orm", "prm")
    cfg.variants = ("success_only", "implicit_prm")
    assert reward_model_kinds(cfg) == ("orm", "prm", "implicit_prm")
    assert planned_seconds(cfg)["reward_models"] == 30.0


def test_workers_share_out_the_ppo_runs():
    """6 runs of 17 s over 2 workers: 3 rounds; more workers than runs count as one per run."""
    cfg = _cfg()
    cfg.workers = 2
    assert planned_seconds(cfg)["ppo"] == 6 * 17.0 / 2
    cfg.workers = 10
    assert planned_seconds(cfg)["ppo"] == 17.0


def test_bad_budget_names_the_key():
    with pytest.raises(ValueError, match=r"config.budget.eval_s=-1.0: must be a number >= 0"):
        planned_seconds(_cfg(eval_s=-1.0))


def test_the_bar_shows_stage_variant_seed_and_fills_to_its_total():
    out = io.StringIO()
    progress = PipelineProgress(_cfg(), file=out)
    assert progress.bar.total == 50 + 30 + 20 + 2 + 7 + 102
    progress.stage("3/5 PPO", variant="prm_raw", seed=2)
    progress.advance(15.0)
    progress.advance(0.4)  # fractions accumulate: the bar moves in whole estimated seconds
    assert progress.bar.n == 15
    progress.advance(0.6)
    assert progress.bar.n == 16
    progress.advance(sum(planned_seconds(_cfg()).values()) - 16)
    progress.close()
    text = out.getvalue()
    assert "3/5 PPO variant=prm_raw seed=2" in text and "100%" in text
