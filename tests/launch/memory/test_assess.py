"""launch.memory.assess: the batch checks, each program's peak and the verdict's basis, the report
of a run with nothing compiled, and the analytic verdict for every slice a config lists."""

import dataclasses

import pytest

from configs import qwen2_1p5b, smoke, topologies
from launch.memory import assess as am
from launch.memory.analytic import analytic
from rl.config import ConfigError, RLConfig
from tests.launch.memory.tiny import CRITIC_BYTES, POLICY_BYTES, POLICY_PARAMS

SMALL = {
    "policy.path": "",
    "policy.preset": "qwen2_like:64,2",
    "prm.path": "",
    "prm.preset": "qwen2_like:64,2",
    "data.prompts_per_batch": 8,
    "data.max_prompt_len": 16,
    "rollout.max_new_tokens": 16,
    "ppo.microbatches": 1,
}


def smoke_rl(**changes):
    c = smoke.get_config()  # 4 prompts x 2 samples = 8 rows, 2 minibatches of 4
    for key, value in changes.items():
        section, name = key.split(".")
        setattr(c[section], name, value)
    return RLConfig.from_config_dict(c)


def test_batch_checks_name_the_rows_that_do_not_split():
    am.check_batch(smoke_rl(**{"mesh.shape": (1, 4, 1)}))
    # Rows that do not divide into minibatches / microbatches: RLConfig refuses them already.
    with pytest.raises(ConfigError, match="ppo.minibatches=3: must divide the 8 rollout rows"):
        am.check_batch(smoke_rl(**{"ppo.minibatches": 3, "mesh.shape": (1, 1, 1)}))
    with pytest.raises(ConfigError, match="ppo.microbatches=3: must divide the 4 rows of a"):
        am.check_batch(smoke_rl(**{"ppo.microbatches": 3, "mesh.shape": (1, 1, 1)}))
    with pytest.raises(ConfigError, match="the rows of one update = 4 does not split over data x"):
        am.check_batch(smoke_rl(**{"mesh.shape": (1, 8, 1)}))
    with pytest.raises(ConfigError, match="the rollout's rows = 8 does not split .* = 16 devices"):
        am.check_batch(smoke_rl(**{"mesh.shape": (2, 8, 1)}))


def _est(**peaks):
    return {"programs": {n: dict(args=10, others=5, peak=p) for n, p in peaks.items()}}


def _got(argument, temp, **extra):
    return dict(argument=argument, output=4, alias=3, temp=temp, generated_code=1, **extra)


def test_peaks_compiled_ones_decide_on_tpu_only():
    est = _est(update=100, sample=300, score=200)
    compiled = {"update": _got(50, 1000)}
    # compiled peak: arguments + outputs - aliased + temporaries + code + resident meanwhile
    update_peak = 50 + 4 - 3 + 1000 + 1 + 5
    peaks, basis, worst, needed, refused = am.peaks_and_verdict(est, compiled, "cpu")
    assert peaks["update"] == dict(analytic=100, compiled=update_peak, refused=False)
    assert peaks["sample"] == dict(analytic=300, compiled=None, refused=False)
    assert (basis, worst, needed, refused) == ("analytic", "sample", 300, [])
    _, basis, worst, needed, _ = am.peaks_and_verdict(est, compiled, "tpu")
    assert (basis, worst, needed) == ("compiled", "update", update_peak)
    _, basis, worst, needed, _ = am.peaks_and_verdict(est, {}, "tpu")
    assert (basis, worst, needed) == ("analytic", "sample", 300)


def test_a_refused_program_is_the_verdict_with_its_temporaries():
    est = _est(update=100, sample=300, score=200)
    compiled = {
        "update": _got(50, 7),
        "score": _got(None, 40, refused="RESOURCE_EXHAUSTED"),
        "sample": _got(None, None, refused="RESOURCE_EXHAUSTED"),
    }
    peaks, basis, worst, needed, refused = am.peaks_and_verdict(est, compiled, "tpu")
    assert peaks["score"] == dict(analytic=200, compiled=10 + 40 + 5, refused=True)
    assert peaks["sample"] == dict(analytic=300, compiled=None, refused=True)
    # The first refused program in PROGRAMS order; without its temporaries, its analytic peak.
    assert (worst, needed, refused) == ("sample", 300, ["sample", "score"])


def test_assess_with_nothing_compiled_is_the_analytic_count(tiny_rl, tiny_models):
    # One device, so the tiny run's mesh (1, 1, 1) and its hand-worked bytes apply.
    t = dataclasses.replace(topologies.get("v4-8"), name="one-chip", chips=1, devices=1, hosts=1)
    r = am.assess(tiny_rl, tiny_models, t, "cpu", [], 2**20, "tiny", {})
    assert r["mesh"] == {"data": 1, "fsdp": 1, "tensor": 1} and r["compiled"] == {}
    assert r["models"]["policy"]["params"] == POLICY_PARAMS
    assert r["models"]["critic"]["params"] == CRITIC_BYTES // 4
    assert r["models"]["policy"]["dtype"] == "float32" and r["models"]["ref"]["remat"] is False
    assert r["analytic"]["params"]["policy"] == POLICY_BYTES
    # test_analytic.py works the update peak out by hand
    assert (r["basis"], r["worst"], r["needed_bytes"]) == ("analytic", "update", 13_035_064)
    assert r["fits"] is False  # 12.4 MiB against 1 MiB
    r = am.assess(tiny_rl, tiny_models, t, "cpu", [], 2**24, "tiny", {})
    assert r["fits"] is True and r["hbm_bytes"] == 2**24 and r["topology"]["name"] == "one-chip"


def test_fits_summary_gives_every_listed_slice_its_analytic_peak(tiny_models):
    assert am.fits_summary(smoke.get_config(), tiny_models, "configs/smoke.py", {}) == {}

    cfg = qwen2_1p5b.get_config()
    cfg.update_from_flattened_dict(SMALL)
    out = am.fits_summary(cfg, tiny_models, "configs/qwen2_1p5b.py", SMALL)
    assert list(out) == list(cfg.topologies)
    for name, v in out.items():
        t = topologies.get(name)
        rebuilt = qwen2_1p5b.get_config(name)
        rebuilt.update_from_flattened_dict(SMALL)
        rl = RLConfig.from_config_dict(rebuilt)
        sizes = dict(zip(("data", "fsdp", "tensor"), rl.mesh.shape, strict=True))
        peak = max(p["peak"] for p in analytic(tiny_models, rl, sizes)["programs"].values())
        assert v == dict(peak=peak, hbm=t.hbm_bytes, fits=peak <= t.hbm_bytes, mesh=rl.mesh.shape)
