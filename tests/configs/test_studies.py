"""The study configs: each variant validates with the settings its docstring names, and a PPO run
with the reasoning-pattern reward logs outcome rewards that equal the pattern reward recomputed
from the logged texts. (SEAM's two commands: tests/rl/test_seam.py.)"""

import json

import numpy as np
import pytest

from configs import noisy_rpr, seam_filtered
from rewards.patterns import reasoning_pattern_reward
from rl.config import RLConfig
from rl.trainers.ppo_trainer import Trainer
from tests.rl.train_cli import metrics as _metrics


def test_the_noisy_rpr_variants():
    got = {v: RLConfig.from_config_dict(noisy_rpr.get_config(v)).reward for v in noisy_rpr.VARIANTS}
    assert RLConfig.from_config_dict(noisy_rpr.get_config()).reward == got["noisy_rpr"]
    r = got["noisy_rpr"]
    assert (r.success_weight, r.success_flip_prob, r.pattern_weight, r.pattern_when) == (
        1.0,
        0.4,
        1.0,
        "wrong",
    )
    assert (r.pattern_scale, r.pattern_cap, r.prm_weight, r.kl_coef) == (0.05, 1.0, 0.0, 0.0)
    assert r.pattern_phrases == noisy_rpr.PAPER_PHRASES and len(set(r.pattern_phrases)) == 40
    assert (got["noisy"].success_flip_prob, got["noisy"].pattern_weight) == (0.4, 0.0)
    assert (got["rpr_only"].success_weight, got["rpr_only"].pattern_weight) == (0.0, 1.0)
    assert (got["clean"].success_flip_prob, got["clean"].pattern_weight) == (0.0, 0.0)
    with pytest.raises(ValueError, match="unknown arg 'noisier'"):
        noisy_rpr.get_config("noisier")
    cfg = RLConfig.from_config_dict(seam_filtered.get_config())
    assert (cfg.data.id_field, cfg.data.path, cfg.reward.prm_weight) == ("id", "", 0.0)
    assert not cfg.prm.configured


def test_a_ppo_run_logs_the_pattern_reward_of_its_texts(tmp_path):
    """noisy_rpr on the toy task, with phrases the toy alphabet can spell and no answer required
    (a random policy never boxes one), so the term is not all 0: every logged row's pattern
    reward is rewards.patterns' value of its text where the rule says it applies (not truncated,
    noisy verdict below 0.5), its outcome success + pattern, and the batch means are the logged
    metrics."""
    cfg = noisy_rpr.get_config()
    cfg.data_dir = str(tmp_path / "tfds")
    cfg.data.prompts_per_batch = 8  # 16 rows: 8 per update, one per device
    cfg.train.iterations = 2
    cfg.train.log_samples = 16
    phrases = ("1", "=", "+9", "q")
    cfg.reward.pattern_phrases = phrases
    cfg.reward.pattern_scale = 0.25
    cfg.reward.pattern_requires_answer = False
    trainer = Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run")
    try:
        trainer.run()
    finally:
        trainer.close()
    records = _metrics(tmp_path / "run")
    applied = 0
    for step, record in enumerate(records, 1):
        rows = [json.loads(x) for x in (tmp_path / "run" / "samples" / f"{step:06d}.jsonl").open()]
        assert [r["row"] for r in rows] == list(range(16))
        for r in rows:
            applies = not r["truncated"] and r["success"] < 0.5
            want = reasoning_pattern_reward(r["text"], phrases=phrases, scale=0.25, sep="\n")
            assert r["pattern"] == pytest.approx(want if applies else 0.0, abs=1e-6), r
            assert r["outcome"] == pytest.approx(r["success"] + r["pattern"], abs=1e-6)
            applied += applies and want != 0
        assert record["reward/pattern"] == pytest.approx(np.mean([r["pattern"] for r in rows]))
        assert record["reward/outcome"] == pytest.approx(np.mean([r["outcome"] for r in rows]))
        assert record["reward/success"] == pytest.approx(np.mean([r["success"] for r in rows]))
    assert applied > 0
