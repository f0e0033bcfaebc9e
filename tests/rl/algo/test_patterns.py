"""Where the reasoning-pattern reward applies and what outcome it makes, by hand: truncated and
unanswered responses earn none, pattern_when="wrong" only the ones the (noisy) verifier rejects;
the outcome is success_weight * success + pattern_weight * term."""

import dataclasses

import numpy as np
import pytest

from configs import smoke
from rl.algo.patterns import outcome_rewards, pattern_applies, text_pattern_reward
from rl.config import RewardConfig, RLConfig
from rl.data.example import Example

TEXTS = [
    "First, I need to add.\n\nTherefore \\boxed{4}",  # 2 default phrases: 0.4, answered
    "Let me check.\n\nLet me check.\n\nThe answer is 7",  # 1 phrase, 1 of 3 steps repeated
    "Wait, therefore alternatively",  # 3 phrases (0.6) but no final answer
    "wait \\boxed{1}",  # 1 phrase, answered, but truncated
]
SUCCESS = np.array([1.0, 0.0, 0.0, 0.0], np.float32)
TRUNCATED = np.array([False, False, False, True])


def _cfg(**reward) -> RLConfig:
    cfg = RLConfig.from_config_dict(smoke.get_config())
    return dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, **reward).validate())


def test_the_text_reward_uses_the_configs_phrases_scale_cap_and_separator():
    r = RewardConfig(pattern_phrases=("a+b", "q"), pattern_scale=0.3, pattern_cap=0.5)
    assert text_pattern_reward("x a+b y", r, "\n") == pytest.approx(0.3)
    assert text_pattern_reward("a+b q", r, "\n") == pytest.approx(0.5)  # 0.6 capped
    # Steps split at the run's separator: two identical lines are one repeat in "\n" steps.
    assert text_pattern_reward("q\nq", r, "\n") == pytest.approx(0.3 - 0.5)
    assert text_pattern_reward("q\nq", r, "\n\n") == pytest.approx(0.3)
    assert text_pattern_reward("wait", RewardConfig(), "\n") == pytest.approx(0.2)  # default list


def test_where_the_pattern_reward_applies():
    always = RewardConfig(pattern_weight=1.0)
    np.testing.assert_array_equal(
        pattern_applies(always, TEXTS, SUCCESS, TRUNCATED), [True, True, False, False]
    )
    lenient = RewardConfig(pattern_weight=1.0, pattern_requires_answer=False)
    np.testing.assert_array_equal(
        pattern_applies(lenient, TEXTS, SUCCESS, TRUNCATED), [True, True, True, False]
    )
    wrong = RewardConfig(pattern_weight=1.0, pattern_when="wrong")
    np.testing.assert_array_equal(
        pattern_applies(wrong, TEXTS, SUCCESS, TRUNCATED), [False, True, False, False]
    )


def test_outcome_of_noisy_verifier_plus_rpr_by_hand():
    """pattern_when="wrong": row 0 keeps its 1 (no RPR), row 1 (verdict 0) earns 0.2 - 1/3."""
    cfg = _cfg(pattern_weight=1.0, pattern_when="wrong", success_weight=1.0)
    cfg = dataclasses.replace(cfg, data=dataclasses.replace(cfg.data, step_separator="\n\n"))
    out = outcome_rewards(cfg, TEXTS, SUCCESS, TRUNCATED)
    np.testing.assert_allclose(out.pattern_B, [0.0, 0.2 - 1 / 3, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.outcome_B, [1.0, 0.2 - 1 / 3, 0.0, 0.0], atol=1e-6)
    assert out.outcome_B.dtype == np.float32
    # "always", weights 0.5 and 2: outcome = 0.5 * SR + 2 * RPR on answered, untruncated rows.
    cfg = dataclasses.replace(
        cfg, reward=dataclasses.replace(cfg.reward, pattern_when="always", success_weight=0.5)
    )
    cfg = dataclasses.replace(cfg, reward=dataclasses.replace(cfg.reward, pattern_weight=2.0))
    out = outcome_rewards(cfg, TEXTS, SUCCESS, TRUNCATED)
    np.testing.assert_allclose(out.pattern_B, [0.4, 0.2 - 1 / 3, 0.0, 0.0], atol=1e-6)
    np.testing.assert_allclose(out.outcome_B, [0.5 + 0.8, 2 * (0.2 - 1 / 3), 0, 0], atol=1e-6)


def test_no_pattern_weight_computes_nothing_and_the_columns_name_each_row():
    cfg = _cfg()
    out = outcome_rewards(cfg, TEXTS, SUCCESS, TRUNCATED)
    np.testing.assert_array_equal(out.pattern_B, np.zeros(4))
    np.testing.assert_array_equal(out.outcome_B, SUCCESS)  # success_weight 1
    examples = [Example("p0", "Q0", "4"), Example("p1", "Q1", "7")]
    cols = out.columns(examples, TEXTS)
    assert cols["prompt_id"] == ["p0", "p0", "p1", "p1"] and cols["answer"] == ["4", "4", "7", "7"]
    assert cols["text"] == TEXTS and cols["truncated"] == [False, False, False, True]
    assert cols["success"] == [1.0, 0.0, 0.0, 0.0] and cols["outcome"] == cols["success"]
