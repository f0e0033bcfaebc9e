"""The embedded default's pipeline, the fast parts: each variant's PPO config is built from
``config.variant_rewards`` and validates, the policy is sized to the toy tokenizer, seeds are
summarized, and stages mark themselves done.

The stages themselves (SFT, reward models, PPO, evaluation) run end to end in
tests/rl/test_reproduce.py."""

import json

import jax
import pytest

from configs import credit_study
from configs import toy as toy_config
from rl.config import RLConfig
from rl.experiments import toy_pipeline
from rl.experiments.progress import reward_model_kinds
from rl.experiments.toy_pipeline import Pipeline


@pytest.fixture(scope="module")
def pipeline(tmp_path_factory):
    """A pipeline over a 40 + 8 problem toy task. Its constructor points JAX's compilation cache
    at its workdir; nothing here compiles, and the setting is put back afterwards."""
    previous = jax.config.jax_compilation_cache_dir
    cfg = toy_config.get_config("smoke")
    cfg.task.train_size, cfg.task.test_size = 40, 8
    yield Pipeline(cfg, tmp_path_factory.mktemp("toy"))
    jax.config.update("jax_compilation_cache_dir", previous)


def test_the_toy_task_and_tokenizer_are_built_into_the_workdir(pipeline):
    assert (len(pipeline.train), len(pipeline.test)) == (40, 8)
    assert (pipeline.tokenizer_dir / "tokenizer.json").is_file()
    assert pipeline.data_dir == str(pipeline.wd / "tfds")


@pytest.mark.parametrize("variant", toy_config.VARIANTS)
def test_each_variant_sets_its_reward_section_and_validates(pipeline, tmp_path, variant):
    policy_dir = tmp_path / "sft" / "policy"
    cd = pipeline.ppo_config(variant, seed=3, policy_dir=policy_dir)
    run = RLConfig.from_config_dict(cd)
    base = pipeline.cfg.ppo.reward
    overrides = toy_config.VARIANTS[variant]
    for key in base:
        assert getattr(run.reward, key) == overrides.get(key, base[key]), key
    rm = pipeline.wd / "reward_models"
    assert run.prm.path == str(rm / "prm")  # every variant logs the PRM's return
    assert run.orm.path == (str(rm / "orm") if overrides.get("orm_weight") else "")
    implicit = str(rm / "implicit_prm") if overrides.get("implicit_prm_weight") else ""
    assert run.implicit_prm.path == implicit
    assert (run.seed, run.policy.path, run.data_dir) == (3, str(policy_dir), pipeline.data_dir)
    assert run.tokenizer == str(pipeline.tokenizer_dir)
    assert (run.data.toy_seed, run.data.toy_train_size, run.data.toy_test_size) == (0, 40, 8)
    with pytest.raises(AttributeError):
        cd.new_key = 1  # handed over locked


def test_building_a_variant_leaves_the_shared_ppo_section_alone(pipeline, tmp_path):
    before = pipeline.cfg.ppo.to_dict()
    pipeline.ppo_config("prm_clip", seed=7, policy_dir=tmp_path)
    pipeline.ppo_config("orm", seed=8, policy_dir=tmp_path)
    assert pipeline.cfg.ppo.to_dict() == before


def test_a_new_variant_is_config_data_only(pipeline, tmp_path):
    pipeline.cfg.variant_rewards["prm_clip_low_eta"] = dict(
        prm_weight=0.5, prm_transform="clip", prm_eta=0.2
    )
    try:
        run = RLConfig.from_config_dict(pipeline.ppo_config("prm_clip_low_eta", 0, tmp_path))
    finally:
        del pipeline.cfg.variant_rewards["prm_clip_low_eta"]
    assert (run.reward.prm_weight, run.reward.prm_transform, run.reward.prm_eta) == (
        0.5,
        "clip",
        0.2,
    )


def test_an_unknown_variant_is_named(pipeline, tmp_path):
    with pytest.raises(ValueError) as err:
        pipeline.ppo_config("prm_clipp", seed=0, policy_dir=tmp_path)
    message = str(err.value)
    assert "'prm_clipp' has no entry in config.variant_rewards" in message
    assert str(sorted(toy_config.VARIANTS)) in message


@pytest.mark.parametrize(
    "override, match",
    [
        (
            dict(variants=("(success_only,prm_clip)",)),
            r"config.variants: '\(success_only,prm_clip\)'",
        ),
        (dict(seeds=()), r"config.seeds=\(\): must be a non-empty tuple of ints"),
        (dict(seeds=("0",)), r"config.seeds=\('0',\)"),
    ],
)
def test_a_restriction_a_run_cannot_use_fails_before_any_stage(tmp_path, override, match):
    """An unquoted --config.variants tuple arrives as one name; it fails in the constructor, before
    SFT, naming the key (and how to quote)."""
    previous = jax.config.jax_compilation_cache_dir
    cfg = toy_config.get_config("smoke")
    cfg.task.train_size, cfg.task.test_size = 40, 8
    cfg.update(override)
    try:
        with pytest.raises(ValueError, match=match):
            Pipeline(cfg, tmp_path)
        assert not (tmp_path / "sft").exists()
    finally:
        jax.config.update("jax_compilation_cache_dir", previous)


def test_an_invalid_variant_value_fails_validation_naming_the_key(pipeline, tmp_path):
    pipeline.cfg.variant_rewards["bad"] = dict(prm_transform="clamp")
    try:
        cd = pipeline.ppo_config("bad", seed=0, policy_dir=tmp_path)
    finally:
        del pipeline.cfg.variant_rewards["bad"]
    with pytest.raises(ValueError, match=r"config\.reward\.prm_transform='clamp'"):
        RLConfig.from_config_dict(cd)


def test_policy_config_is_sized_to_the_toy_tokenizer(pipeline):
    cfg = pipeline.policy_config()
    m = pipeline.cfg.model
    assert cfg.vocab_size == len(pipeline.tokenizer) == 27
    assert (cfg.hidden_size, cfg.intermediate_size, cfg.num_layers) == (
        m.hidden_size,
        m.intermediate_size,
        m.num_layers,
    )
    assert (cfg.num_heads, cfg.num_kv_heads) == (m.num_heads, m.num_kv_heads)
    assert (cfg.eos_token_id, cfg.pad_token_id, cfg.bos_token_id) == (1, 0, None)
    assert cfg.max_position_embeddings == 256 and cfg.initializer_range == 0.02


def test_a_stage_is_done_once_its_marker_is_written(tmp_path):
    stage = tmp_path / "stage"
    assert toy_pipeline._done(stage) is None
    info = toy_pipeline._mark_done(stage, {"policy": "p", "score": 0.5})
    assert toy_pipeline._done(stage) == info == {"policy": "p", "score": 0.5}
    assert json.loads((stage / "done.json").read_text()) == info
    assert sorted(p.name for p in stage.iterdir()) == ["done.json"]  # no temporary left


@pytest.mark.parametrize("arg", [None, "smoke"])
def test_the_credit_study_sets_estimator_and_refinement_per_variant(tmp_path, arg):
    """configs/credit_study.py: every variant validates with its refinement in `reward` and its
    credit scheme in `ppo`, over the default's seeds (3 outside the smoke config)."""
    previous = jax.config.jax_compilation_cache_dir
    cfg = credit_study.get_config(arg)
    cfg.task.train_size, cfg.task.test_size = 40, 8
    study = Pipeline(cfg, tmp_path / "credit")
    jax.config.update("jax_compilation_cache_dir", previous)
    expected = 21 if arg is None else 6
    assert len(cfg.variants) == expected and len(set(cfg.variants)) == expected
    assert cfg.seeds == ((0, 1, 2) if arg is None else (0,))
    warmup = 3 if arg is None else 1
    for variant in cfg.variants:
        refinement, scheme = variant.split("@")
        run = RLConfig.from_config_dict(study.ppo_config(variant, 0, tmp_path / "policy"))
        want = credit_study.REFINEMENTS[refinement]
        assert run.reward.prm_weight == want.get("prm_weight", 0.0), variant
        assert run.reward.prm_transform == want.get("prm_transform", "raw"), variant
        assert run.ppo.advantage == ("rloo" if scheme == "rloo" else "gae"), variant
        assert (run.ppo.lam, run.ppo.critic_lam) == (
            (1.0, 1.0) if scheme == "gae_l1" else (0.95, 0.95)
        ), variant
        assert run.ppo.critic_warmup_iterations == (warmup if scheme == "gae_l1" else 0)


def test_the_default_trains_the_implicit_prm_only_when_asked():
    """The paper's six variants need the ORM and the PRM; the smoke config (and a re-run with
    --config.variants naming implicit_prm) trains the implicit PRM too."""
    default = toy_config.get_config()
    assert (
        default.variants == toy_config.DEFAULT_VARIANTS and "implicit_prm" not in default.variants
    )
    assert reward_model_kinds(default) == ("orm", "prm")
    assert reward_model_kinds(toy_config.get_config("smoke")) == ("orm", "prm", "implicit_prm")
