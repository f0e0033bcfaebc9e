"""The results report: the paper-effect checks computed from hand-made results."""

import json

import ml_collections
import numpy as np
import pytest

from rl.eval.premise import premise_summary
from rl.experiments import toy_report as report
from rl.experiments.toy_pipeline import RESULT_KEYS


def _r(accuracy, steps, repeated=0.0, length=40.0, prm=2.0):
    return {
        "accuracy": accuracy,
        "steps_per_response": steps,
        "repeated_step_fraction": repeated,
        "response_length": length,
        "prm_return": prm,
    }


def _results(**variants):
    return {
        "initial": dict(_r(0.40, 6.0, 0.01), n=512),
        "variants": variants,
        "reward_models": {"prm": {"accuracy": 0.7, "auc": 0.75}},
    }


def test_checks_hold_for_the_paper_pattern():
    rows = report.checks(
        _results(
            success_only=_r(0.70, 5.5),
            prm_raw=_r(0.0, 14.9, 0.10),
            prm_clip=_r(0.69, 5.4),
            prm_delta=_r(0.72, 6.5),
            prm_clip_delta=_r(0.71, 4.7),
        )
    )
    by_name = {r["check"]: r for r in rows}
    assert len(rows) == 3 + 2 * 3 and all(r["holds"] for r in rows)
    assert by_name["prm_raw steps / success_only steps >= 1.5"]["value"] == pytest.approx(
        14.9 / 5.5
    )
    assert by_name["prm_raw accuracy below success_only beyond the noise"][
        "value"
    ] == pytest.approx(-0.70)
    assert by_name["prm_delta steps / success_only steps within 1.2x"]["value"] == pytest.approx(
        6.5 / 5.5
    )


@pytest.mark.parametrize(
    "variant, result, failing",
    [
        ("prm_raw", _r(0.0, 8.0, 0.10), "prm_raw steps / success_only steps >= 1.5"),  # 1.45x
        (
            "prm_raw",
            _r(0.0, 15.0, 0.01),
            "prm_raw repeated-step fraction above the initial policy's",
        ),
        ("prm_raw", _r(0.70, 15.0, 0.10), "prm_raw accuracy below success_only beyond the noise"),
        ("prm_clip", _r(0.70, 6.7), "prm_clip steps / success_only steps within 1.2x"),  # 1.22x
        ("prm_delta", _r(0.70, 4.5), "prm_delta steps / success_only steps within 1.2x"),  # 1/1.22
        (
            "prm_clip_delta",
            _r(0.669, 5.5),  # 0.031 below, the slack 0.03
            "prm_clip_delta accuracy no worse than success_only (within the noise)",
        ),
    ],
)
def test_each_check_fails_on_its_own(variant, result, failing):
    rows = report.checks(_results(success_only=_r(0.70, 5.5), **{variant: result}))
    assert [r["check"] for r in rows if not r["holds"]] == [failing]


def test_credit_study_variants_are_checked_within_their_scheme():
    """`<refinement>@<scheme>` variants: each scheme's refinements against that scheme's
    success-only run, never another scheme's (Delta hacked under gae, kept under rloo)."""
    rows = report.checks(
        _results(
            **{
                "success_only@gae": _r(0.70, 5.5),
                "prm_delta@gae": _r(0.03, 12.5),
                "success_only@rloo": _r(0.50, 5.0),
                "prm_delta@rloo": _r(0.51, 5.2),
                "prm_raw@rloo": _r(0.0, 15.0, 0.10),
            }
        )
    )
    by_name = {r["check"]: r for r in rows}
    assert len(rows) == 2 + 3 + 2
    gae = by_name["prm_delta@gae steps / success_only@gae steps within 1.2x"]
    assert gae["value"] == pytest.approx(12.5 / 5.5) and not gae["holds"]
    rloo = by_name["prm_delta@rloo accuracy no worse than success_only@rloo (within the noise)"]
    assert rloo["value"] == pytest.approx(0.01) and rloo["holds"]
    raw = by_name["prm_raw@rloo steps / success_only@rloo steps >= 1.5"]
    assert raw["value"] == pytest.approx(3.0) and raw["holds"]


def _seeded(accuracies, steps=5.5):
    per_seed = {str(i): _r(a, steps) for i, a in enumerate(accuracies)}
    return dict(_r(float(np.mean(accuracies)), steps), seeds=per_seed)


@pytest.mark.parametrize(
    "clip_delta, noise, holds",
    [
        # by hand: variances 0.0028 and 0.005833 (ddof 1), SE = sqrt((0.0028 + 0.005833) / 3)
        # = 0.053645, t(0.975, 4) = 2.776445: noise 0.14894; the difference -0.4033 is beyond it
        ((0.46, 0.38, 0.36), 0.14894, False),
        # variance 0.0016: SE = sqrt((0.0016 + 0.005833) / 3) = 0.049777, noise 0.138203; -0.0633
        ((0.78, 0.70, 0.74), 0.138203, True),
    ],
)
def test_no_worse_is_decided_on_seed_means_within_the_seeds_noise(clip_delta, noise, holds):
    rows = report.checks(
        _results(success_only=_seeded((0.87, 0.72, 0.82)), prm_clip_delta=_seeded(clip_delta))
    )
    row = {r["check"]: r for r in rows}[
        "prm_clip_delta accuracy no worse than success_only (within the noise)"
    ]
    assert row["noise"] == pytest.approx(noise, abs=1e-5) and row["holds"] is holds
    assert row["noise_basis"] == "t x standard error over 3 + 3 seeds"


def test_no_success_only_run_means_no_checks():
    assert report.checks(_results(prm_raw=_r(0.0, 15.0))) == []


def test_write_puts_checks_in_json_and_markdown(tmp_path):
    cfg = ml_collections.ConfigDict(dict(seeds=(0,), ppo=dict(train=dict(iterations=3))))
    report.write(tmp_path, _results(success_only=_r(0.70, 5.5), prm_raw=_r(0.1, 6.0, 0.0)), cfg)
    saved = json.loads((tmp_path / "results.json").read_text())
    assert [c["holds"] for c in saved["checks"]] == [False, False, True]
    md = (tmp_path / "results.md").read_text()
    assert "| prm_raw steps / success_only steps >= 1.5 | 1.09x | – | **no** |" in md
    slack = "±0.030 (fixed slack (one seed: no spread measured))"
    assert (
        f"| prm_raw accuracy below success_only beyond the noise | -0.600 | {slack} | yes |" in md
    )
    assert "prm: accuracy 0.700, auc 0.750" in md


def test_the_table_gives_mean_spread_and_interval_over_seeds():
    three = dict(
        _r(0.75, 5.5, 0.002),
        accuracy_std=0.05,
        accuracy_ci95=0.124,
        steps_per_response_std=0.25,
        repeated_step_fraction_std=0.001,
    )
    md = report.markdown(_results(success_only=three, prm_raw=_r(0.0, 15.0, 0.1)))
    row = "| success_only | 0.400 | 0.750 ± 0.050 | [0.626, 0.874] | 5.50 ± 0.25 | 0.002 ± 0.001 |"
    assert row in md
    assert "| prm_raw | 0.400 | 0.000 | – | 15.00 | 0.100 |" in md  # one seed: no spread


def test_the_premise_table_and_its_check_are_written():
    premise = premise_summary(
        np.array([[1, 0, 0]] * 4, bool),
        [["5", "6", "6"]] * 4,
        np.array([1, 0, 0, 0], bool),
        np.array([[0.2, 0.9, 0.1]] * 4),
        [[[0.9], [0.2, 0.3], [0.1]]] * 4,
    )
    md = report.premise_markdown(premise)
    assert "(4 held-out problems, 3 samples of the initial policy each" in md
    assert "| greedy | mean sample | maj@3 | pass@3 | best-of-3 orm | best-of-3 prm_min |" in md
    # greedy 1/4, samples 1/3 right, majority (6) always wrong, ORM picks the wrong sample 1,
    # the PRM's min picks sample 0: margin +1 with standard error 0
    assert (
        "| 0.250 | 0.333 | 0.000 | 1.000 | 0.000 (+0.000 ± 0.000) | 1.000 (+1.000 ± 0.000) |" in md
    )
    assert (
        "Best-of-3 picks among the samples that state an answer (1.000 of them), as maj@3 votes; "
        "picked among all 3: orm 0.000, prm_min 1.000, prm_last 1.000, prm_product 1.000." in md
    )
    assert md.endswith("by more than the paired standard error of the difference: holds.")


def test_curves_are_seed_means_with_a_spread_band(tmp_path):
    """Two seeds' metrics.jsonl, the second one iteration longer (cut to the shorter run): the
    curve is the mean per iteration, the band the seeds' standard deviation; a metric one seed
    lacks is averaged over the seeds that have it."""
    rows = {
        0: [
            {"rollout/batch_accuracy": 0.2, "reward/prm_raw": 1.0},
            {"rollout/batch_accuracy": 0.4},
        ],
        1: [
            {"rollout/batch_accuracy": 0.4, "reward/prm_raw": 3.0},
            {"rollout/batch_accuracy": 0.8},
            {"rollout/batch_accuracy": 1.0},
        ],
    }
    for seed, metrics in rows.items():
        d = tmp_path / "ppo" / "success_only" / f"seed{seed}"
        d.mkdir(parents=True)
        (d / "metrics.jsonl").write_text("".join(json.dumps(m) + "\n" for m in metrics))
    mean = report.curves(tmp_path, ["success_only", "not_run"], (0, 1))
    sd = report.curve_spread(tmp_path, ["success_only"], (0, 1))
    np.testing.assert_allclose(mean["rollout/batch_accuracy"]["success_only"], [0.3, 0.6])
    np.testing.assert_allclose(sd["rollout/batch_accuracy"]["success_only"], [0.1, 0.2])
    np.testing.assert_allclose(mean["reward/prm_raw"]["success_only"], [2.0, np.nan])
    assert "not_run" not in mean["rollout/batch_accuracy"]
    paths = report.plot(tmp_path, mean, sd)
    assert [p.name for p in paths] == [name for _, _, name in report.CURVES]
    assert all(p.stat().st_size > 1000 for p in paths)


def test_summarize_seeds_by_hand():
    per_seed = [
        {"accuracy": 0.5, "steps_per_response": 4.0, "prm_return": None},
        {"accuracy": 0.7, "steps_per_response": 6.0, "prm_return": 1.0},
    ]
    out = report.summarize_seeds(per_seed, (0, 1), RESULT_KEYS)
    # sample std of (0.5, 0.7): sqrt(0.02) = 0.1414; 95% t interval, 1 dof: 12.706 * 0.1414 / sqrt 2
    assert out["accuracy"] == pytest.approx(0.6) and out["accuracy_std"] == pytest.approx(
        0.14142, 1e-4
    )
    assert out["accuracy_ci95"] == pytest.approx(12.7062 * 0.1, rel=1e-4)
    assert out["steps_per_response"] == 5.0 and out["steps_per_response_std"] == pytest.approx(
        2**0.5
    )
    # missing values skipped: one value, a mean and no spread
    assert out["prm_return"] == 1.0 and "prm_return_std" not in out
    assert out["response_length"] is None and "response_length_std" not in out
    assert out["seeds"] == {"0": per_seed[0], "1": per_seed[1]}
    three = report.summarize_seeds(
        [{"accuracy": a} for a in (0.70, 0.80, 0.75)], (0, 1, 2), RESULT_KEYS
    )
    assert three["accuracy_std"] == pytest.approx(0.05)  # 4.303 * 0.05 / sqrt 3
    assert three["accuracy_ci95"] == pytest.approx(4.3027 * 0.05 / 3**0.5, rel=1e-4)
    single = report.summarize_seeds(per_seed[:1], (4,), RESULT_KEYS)
    assert single["accuracy"] == 0.5 and "accuracy_std" not in single
    assert single["seeds"] == {"4": per_seed[0]}
