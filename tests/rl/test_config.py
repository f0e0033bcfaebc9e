"""Configs: get_config(arg) files, command-line overrides reaching the code, named errors."""

import json
import pathlib
import re
import subprocess
import sys

import pytest

from configs import sharding, smoke
from rl.config import ConfigError, RLConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]


def _resolve(*flags):
    proc = subprocess.run(
        [sys.executable, "-m", "rl.config", "--config=configs/smoke.py", *flags],
        cwd=ROOT,
        capture_output=True,
        text=True,
        timeout=120,
    )
    return proc


def test_command_line_override_reaches_the_validated_config():
    proc = _resolve(
        "--config.reward.prm_transform=delta",
        "--config.reward.prm_eta=0.25",
        "--config.mesh.shape=(2,4,1)",
    )
    assert proc.returncode == 0, proc.stderr
    resolved = json.loads(proc.stdout)
    assert resolved["reward"]["prm_transform"] == "delta"
    assert resolved["reward"]["prm_eta"] == 0.25
    assert resolved["mesh"]["shape"] == [2, 4, 1]
    assert resolved["data"]["dataset"] == "toy"  # the file's own value, untouched


def test_invalid_override_names_key_and_value():
    proc = _resolve("--config.reward.prm_transform=clipdelta")
    assert proc.returncode != 0
    assert "config.reward.prm_transform='clipdelta'" in proc.stderr
    assert "Traceback" not in proc.stderr


def test_locked_config_rejects_unknown_override():
    proc = _resolve("--config.reward.prm_wieght=1.0")
    assert proc.returncode != 0
    assert "prm_wieght" in proc.stderr


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("reward.kl_coef", -0.1, "config.reward.kl_coef=-0.1"),
        ("reward.prm_eta", 1.5, "config.reward.prm_eta=1.5"),
        (
            "reward.prm_min_form_temperature",
            -0.5,
            "config.reward.prm_min_form_temperature=-0.5",
        ),
        ("reward.kl_estimator", "k4", "config.reward.kl_estimator='k4'"),
        ("ppo.epochs", 0, "config.ppo.epochs=0"),
        ("ppo.dual_clip", 0.5, "config.ppo.dual_clip=0.5"),
        ("rollout.top_p", 0.0, "config.rollout.top_p=0.0"),
        ("data.step_separator", "", "config.data.step_separator=''"),
        ("optim.learning_rate", float("nan"), "config.optim.learning_rate=nan"),
        (
            "train.max_failed_verifier_batches",
            0,
            "config.train.max_failed_verifier_batches=0: must be an integer >= 1",
        ),
    ],
)
def test_validation_errors_name_key_and_value(key, value, message):
    cfg = smoke.get_config()
    section, name = key.split(".")
    cfg[section][name] = value
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(cfg)
    assert message in str(err.value)


def test_mesh_shape_validation():
    cfg = smoke.get_config()
    cfg.mesh.shape = (-1, -1, 1)
    with pytest.raises(ConfigError, match=r"config.mesh.shape=\(-1, -1, 1\)"):
        RLConfig.from_config_dict(cfg)


def test_unknown_key_in_a_section_is_named():
    cfg = smoke.get_config()
    cfg.reward.unlock()
    cfg.reward.prm_wieght = 1.0
    with pytest.raises(ConfigError, match="config.reward.prm_wieght=1.0: unknown key"):
        RLConfig.from_config_dict(cfg)


def test_the_rule_table_reaches_the_library_through_the_config():
    rl = RLConfig.from_config_dict(smoke.get_config())
    assert rl.mesh.rules == sharding.RULES
    assert dict(rl.mesh.rules)["batch"] == ("data", "fsdp")


@pytest.mark.parametrize(
    "rules, message",
    [
        ((), "config.mesh.rules=(): must be the logical-axis rule table"),
        ((("embed", "fsdpp"),), "config.mesh.rules=('embed', 'fsdpp'): each rule must be"),
        ((("embed",),), "config.mesh.rules=('embed',): each rule must be"),
        (((1, "fsdp"),), "config.mesh.rules=(1, 'fsdp'): each rule must be"),
    ],
)
def test_a_bad_rule_table_is_named(rules, message):
    cfg = smoke.get_config()
    cfg.mesh.rules = rules
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(cfg)
    assert message in str(err.value)


def test_the_saved_run_config_reads_back_to_the_same_config():
    """The trainer writes RLConfig.to_json() as the workdir's config.json; rl.evaluate reads it."""
    rl = RLConfig.from_config_dict(smoke.get_config())
    again = RLConfig.from_config_dict(json.loads(rl.to_json()))
    assert again == rl
    assert again.mesh.rules == sharding.RULES  # JSON lists come back as the tuples of the table


def test_model_sections_are_validated_at_the_edge():
    cfg = smoke.get_config()
    cfg.policy.dtype = "float16"
    with pytest.raises(ConfigError, match="config.policy.dtype='float16': must be"):
        RLConfig.from_config_dict(cfg)
    cfg = smoke.get_config()
    cfg.prm.preset = "qwen3_giant"
    with pytest.raises(ConfigError, match="config.prm.preset='qwen3_giant': unknown"):
        RLConfig.from_config_dict(cfg)
    cfg = smoke.get_config()
    cfg.orm.kind = "ranker"
    with pytest.raises(ConfigError, match="config.orm.kind='ranker': must be one of"):
        RLConfig.from_config_dict(cfg)


def test_a_reward_term_without_its_model_is_a_config_error():
    cfg = smoke.get_config()
    cfg.reward.orm_weight = 0.5
    with pytest.raises(ConfigError, match=r"config.orm.path='': reward uses orm \(weight > 0\)"):
        RLConfig.from_config_dict(cfg)
    cfg = smoke.get_config()
    cfg.policy.preset = ""
    with pytest.raises(
        ConfigError, match="config.policy.path='': set policy.path or policy.preset"
    ):
        RLConfig.from_config_dict(cfg)


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("verifier_workers", 0, "config.verifier_workers=0: must be an integer >= 1"),
        ("tokenizer", 3, "config.tokenizer=3: must be a path string"),
    ],
)
def test_top_level_keys_are_validated(key, value, message):
    cfg = smoke.get_config().to_dict()  # a plain mapping, as a saved config.json reads back
    cfg[key] = value
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(cfg)
    assert message in str(err.value)


def test_critic_free_estimators_are_validated():
    cfg = smoke.get_config()
    cfg.ppo.advantage = "vtrace"
    with pytest.raises(ConfigError, match="config.ppo.advantage='vtrace': must be one of"):
        RLConfig.from_config_dict(cfg)
    cfg = smoke.get_config()
    cfg.ppo.advantage = "rloo"
    cfg.data.samples_per_prompt = 1
    with pytest.raises(ConfigError, match="config.ppo.advantage='rloo': .*samples_per_prompt >= 2"):
        RLConfig.from_config_dict(cfg)
    cfg = smoke.get_config()
    cfg.ppo.advantage = "grpo"  # smoke: kl_coef 0.02 in the reward
    with pytest.raises(ConfigError, match="config.ppo.advantage='grpo': .*kl_in='loss'"):
        RLConfig.from_config_dict(cfg)
    cfg.reward.kl_in = "loss"
    assert RLConfig.from_config_dict(cfg).ppo.advantage == "grpo"


@pytest.mark.parametrize("transform", ["min_form", "potential"])
def test_new_prm_transforms_and_options_resolve(transform):
    cfg = smoke.get_config()
    cfg.reward.prm_transform = transform
    cfg.reward.prm_min_form_temperature = 0.1
    cfg.reward.prm_potential_terminal = True
    reward = RLConfig.from_config_dict(cfg).reward
    assert (reward.prm_transform, reward.prm_min_form_temperature) == (transform, 0.1)
    assert reward.prm_potential_terminal is True


@pytest.mark.parametrize(
    "overrides, message",
    [
        (
            {"rollout.temperature": 0.0},  # smoke: 2 samples per prompt
            "config.rollout.temperature=0: greedy decoding gives data.samples_per_prompt=2 "
            "identical samples",
        ),
        (
            {"ppo.advantage": "rloo", "ppo.critic_warmup_iterations": 2},
            "config.ppo.critic_warmup_iterations=2: warms up the critic, and "
            "ppo.advantage='rloo' has none",
        ),
        (
            {"ppo.critic_warmup_iterations": 6, "train.iterations": 6},
            "config.ppo.critic_warmup_iterations=6: must be below train.iterations=6",
        ),
        (
            {"ppo.critic_warmup_iterations": -1},
            "config.ppo.critic_warmup_iterations=-1: must be an integer >= 0",
        ),
        (
            {"implicit_prm.ref_path": "/ckpt/sft"},
            "config.implicit_prm.ref_path='/ckpt/sft': set without an implicit PRM",
        ),
        (
            {"prm.ref_path": "/ckpt/sft"},
            "config.prm.ref_path='/ckpt/sft': only the implicit PRM has a reference",
        ),
    ],
)
def test_sampling_critic_and_implicit_reference_settings_are_validated(overrides, message):
    cfg = smoke.get_config()
    for dotted, value in overrides.items():
        section, key = dotted.split(".")
        cfg[section][key] = value
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(cfg)
    assert message in str(err.value)


def test_greedy_rollouts_with_one_sample_are_valid():
    cfg = smoke.get_config()
    cfg.rollout.temperature = 0.0
    cfg.data.samples_per_prompt = 1
    assert RLConfig.from_config_dict(cfg).rollout.temperature == 0.0


@pytest.mark.parametrize(
    "key, value, message",
    [
        ("reward.pattern_weight", -1.0, "config.reward.pattern_weight=-1.0: must be a finite"),
        ("reward.pattern_scale", -0.1, "config.reward.pattern_scale=-0.1"),
        ("reward.pattern_cap", float("inf"), "config.reward.pattern_cap=inf"),
        ("reward.pattern_when", "right", "config.reward.pattern_when='right': must be one of"),
        ("reward.pattern_phrases", ("wait", ""), "config.reward.pattern_phrases=('wait', '')"),
        ("reward.pattern_requires_answer", 1, "config.reward.pattern_requires_answer=1"),
        ("data.question_field", "", "config.data.question_field=''"),
        ("data.answer_field", "question", "config.data.answer_field='question': must differ"),
        ("data.allow_malformed", "yes", "config.data.allow_malformed='yes'"),
        ("data.path", "/no/such/file.jsonl", "config.data.path='/no/such/file.jsonl': no such"),
        ("train.log_samples", -1, "config.train.log_samples=-1"),
    ],
)
def test_study_keys_are_validated(key, value, message):
    """Through a plain dict: a ConfigDict already refuses some of these types itself."""
    values = smoke.get_config().to_dict()
    section, name = key.split(".")
    values[section][name] = value
    with pytest.raises(ConfigError) as err:
        RLConfig.from_config_dict(values)
    assert message in str(err.value)


def test_data_path_must_hold_data_files(tmp_path):
    cfg = smoke.get_config()
    (tmp_path / "p.csv").write_text("q,a\n")
    for path, message in (
        (tmp_path / "p.csv", "is a .csv file; must be one of ('.jsonl', '.parquet')"),
        (tmp_path, "is a directory without .jsonl or .parquet files"),
    ):
        cfg.data.path = str(path)
        with pytest.raises(ConfigError, match=re.escape(f"config.data.path='{path}': {message}")):
            RLConfig.from_config_dict(cfg)
    (tmp_path / "p.jsonl").write_text("{}\n")
    cfg.data.path = str(tmp_path / "p.jsonl")
    cfg.reward.pattern_phrases = ["wait", "therefore"]  # a list from the command line
    rl = RLConfig.from_config_dict(cfg)
    assert rl.data.path == str(tmp_path / "p.jsonl")
    assert rl.reward.pattern_phrases == ("wait", "therefore")
