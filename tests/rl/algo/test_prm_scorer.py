"""rl.algo.prm_scorer: a published PRM with its own tokenizer scored on the mesh, and its scores on
the policy's step ends; a PPO run whose policy (toy char tokenizer) and PRM (Qwen BPE tokenizer,
Qwen2.5-Math-PRM format) share no token."""

import json

import jax
import numpy as np
import pytest
from jax.sharding import NamedSharding, PartitionSpec

from configs import sharding, smoke
from models.prm import load_prm
from models.sharding import make_mesh
from rewards import steps as steps_lib
from rl.algo import prm_scorer
from rl.config import ConfigError, ModelSpec, RLConfig
from rl.data.toy_tokenizer import toy_tokenizer
from rl.trainers.ppo_trainer import Trainer
from tests.models import prm_reference as ref


@pytest.fixture(scope="module")
def qwen_prm_dir(tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen_math_prm")
    ref.write_qwen_math_prm(path, ref.qwen_tokenizer())
    return path


def test_derived_bucket_by_hand():
    spec = ModelSpec(name="prm")
    # steps: max(16, 112 // 8) = 16; length: 24 + 112 + 96 + 4 * 16 = 296 -> 384.
    assert prm_scorer.derived_bucket(spec, 24, 112) == (384, 16)
    # steps: 1024 // 8 = 128; length: 512 + 1024 + 96 + 4 * 128 = 2144 -> 2176.
    assert prm_scorer.derived_bucket(spec, 512, 1024) == (2176, 128)
    spec = ModelSpec(name="prm", max_input_len=300, max_steps=5)
    assert prm_scorer.derived_bucket(spec, 24, 112) == (300, 5)


def test_which_prms_are_scored_in_their_own_tokens(qwen_prm_dir, tmp_path):
    assert prm_scorer.uses_published_format(ModelSpec(name="prm", path=str(qwen_prm_dir)))
    assert prm_scorer.uses_published_format(
        ModelSpec(name="prm", path="/x", format="math_shepherd")
    )
    assert not prm_scorer.uses_published_format(ModelSpec(name="prm", preset="tiny"))
    assert not prm_scorer.uses_published_format(ModelSpec(name="prm", path="/x", format="own"))
    own = tmp_path / "own"
    own.mkdir()
    (own / "reward_model.json").write_text(json.dumps({"kind": "prm"}))
    assert not prm_scorer.uses_published_format(ModelSpec(name="prm", path=str(own)))


def test_a_format_mismatch_is_a_config_error_naming_the_key(qwen_prm_dir):
    spec = ModelSpec(name="prm", path=str(qwen_prm_dir), format="math_shepherd")
    with pytest.raises(ConfigError, match=r"config\.prm\.format='math_shepherd'"):
        prm_scorer.load_published_prm(spec, None, None)


def test_scores_on_the_mesh_land_on_the_policys_step_ends(qwen_prm_dir):
    """Policy rows in the toy char tokenizer; the PRM reads the same steps in Qwen's tokens. Score
    k of `score_steps` (its own bucketing, one device) is the reward at the k-th step end."""
    tok = toy_tokenizer()
    texts = ["1+2=3\n3+4=7\n\\boxed{7}", "5-1=4\n\\boxed{4}", "2+2=4\n4+", ""]
    truncated = [False, False, True, False]
    questions = ["What is 1+2+4?", "What is 5-1?", "What is 2+2+2?", "What is 0?"]
    width = 32
    ids = np.zeros((4, width), np.int32)
    response = np.zeros((4, width), bool)
    for b, t in enumerate(texts):
        eos = [] if truncated[b] else [tok.eos_token_id]
        row = tok(t, add_special_tokens=False)["input_ids"] + eos
        ids[b, : len(row)], response[b, : len(row)] = row, True
    step_end, step_lists = steps_lib.batch_steps_and_ends(tok, ids, response, "\n", truncated)
    assert step_lists == [["1+2=3", "3+4=7", "\\boxed{7}"], ["5-1=4", "\\boxed{4}"], ["2+2=4"], []]

    mesh = make_mesh((2, 4, 1))
    prm = load_prm(qwen_prm_dir, "qwen_math_prm", mesh=mesh, rules=sharding.RULES)
    scorer = prm_scorer.PublishedPRMScorer(
        prm,
        max_input_len=256,
        max_steps=8,
        mesh=mesh,
        rules=sharding.RULES,
        batch_sharding=NamedSharding(mesh, PartitionSpec(("data", "fsdp"))),
    )
    # 8 rows: the mesh splits the batch 8 ways.
    rows = [*range(4), *range(4)]
    prm_BxR, metrics = scorer(
        [questions[r] for r in rows], [step_lists[r] for r in rows], step_end[rows]
    )
    expected = load_prm(qwen_prm_dir, "qwen_math_prm").score_steps(questions, step_lists)
    for i, r in enumerate(rows):
        ends = np.flatnonzero(step_end[r])
        np.testing.assert_allclose(prm_BxR[i, ends], expected[r], atol=1e-5)
        off = np.ones(width, bool)
        off[ends] = False
        assert not prm_BxR[i, off].any()
    assert metrics["reward/prm_unscored_steps"] == 0


def test_a_bucket_too_small_leaves_steps_unscored_and_counts_them(qwen_prm_dir):
    prm = load_prm(qwen_prm_dir, "qwen_math_prm")
    mesh = make_mesh((1, 1, 1), devices=jax.devices()[:1])
    scorer = prm_scorer.PublishedPRMScorer(
        prm,
        max_input_len=256,
        max_steps=1,
        mesh=mesh,
        rules=sharding.RULES,
        batch_sharding=NamedSharding(mesh, PartitionSpec(("data", "fsdp"))),
    )
    step_end = np.array([[0, 1, 0, 1]], bool)
    prm_BxR, metrics = scorer(["What is 1+1?"], [["1+1=2", "\\boxed{2}"]], step_end)
    assert prm_BxR[0, 1] != 0 and prm_BxR[0, 3] == 0
    assert metrics["reward/prm_unscored_steps"] == 1


def test_ppo_with_a_prm_of_another_tokenizer(qwen_prm_dir, tmp_path):
    """Two smoke iterations; every row's PRM reward on its k-th step end is the PRM's k-th score
    of the same steps (the real scorer, spied on)."""
    cfg = smoke.get_config()
    cfg.prm.preset = ""
    cfg.prm.path = str(qwen_prm_dir)
    cfg.prm.format = "qwen_math_prm"
    cfg.data.prompts_per_batch = 8  # 8 rows per update microbatch: one per device
    cfg.reward.prm_transform = "raw"
    cfg.train.iterations = 2
    cfg.data_dir = str(tmp_path / "tfds")
    trainer = Trainer(RLConfig.from_config_dict(cfg), tmp_path / "run")
    seen = []
    real = trainer.prm_scorer.__call__

    def spy(questions, steps, step_end):
        out = real(questions, steps, step_end)
        seen.append((questions, steps, step_end, out[0]))
        return out

    trainer.prm_scorer = spy
    try:
        trainer.run()
    finally:
        trainer.close()
    assert len(seen) == 2
    prm = load_prm(qwen_prm_dir, "qwen_math_prm")
    rows = json.loads((tmp_path / "run" / "metrics.jsonl").read_text().splitlines()[-1])
    assert np.isfinite(rows["reward/prm_raw"])
    for questions, steps, step_end, prm_BxR in seen:
        expected = prm.score_steps(questions, steps)
        for b in range(len(steps)):
            ends = np.flatnonzero(step_end[b])
            assert len(ends) == len(steps[b])
            np.testing.assert_allclose(prm_BxR[b, ends], expected[b], atol=1e-5)
