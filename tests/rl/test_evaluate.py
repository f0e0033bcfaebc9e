"""The evaluation CLI: on 32 GSM8K problems with a tiny random Qwen2 (HF directory made here); the
rule table it shards by (a workdir's own, else --sharding's); the toy task's builder arguments."""

import json
import os
import pathlib
import shutil
import subprocess
import sys

import pytest
import torch
import transformers
from absl import flags
from absl.testing import flagsaver

from configs import smoke
from configs.sharding import RULES
from rl import evaluate
from rl.config import RLConfig

ROOT = pathlib.Path(__file__).resolve().parents[2]
QWEN_TOKENIZER = ROOT / "models" / "assets" / "qwen2_tokenizer"


def _tiny_qwen_dir(path: pathlib.Path, head: bool = False) -> pathlib.Path:
    """A random 1-layer width-16 Qwen2 with the real Qwen tokenizer's vocabulary, saved by
    transformers (as a token-classification model with a scalar head when `head`)."""
    torch.manual_seed(1 if head else 0)
    config = transformers.Qwen2Config(
        vocab_size=151936,
        hidden_size=16,
        intermediate_size=32,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=1,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        bos_token_id=151643,
        eos_token_id=151645,
        pad_token_id=151643,
        num_labels=1,
    )
    cls = transformers.Qwen2ForTokenClassification if head else transformers.Qwen2ForCausalLM
    cls(config).save_pretrained(path)
    for name in ("tokenizer.json", "tokenizer_config.json"):
        shutil.copy(QWEN_TOKENIZER / name, path / name)
    return path


def test_cli_on_32_gsm8k_problems(tmp_path):
    """Greedy accuracy and PRM diagnostics (sampling and best-of-N are covered in process, in
    tests/rl/eval/test_evaluator.py)."""
    policy_dir = _tiny_qwen_dir(tmp_path / "policy")
    prm_dir = _tiny_qwen_dir(tmp_path / "prm", head=True)
    out = tmp_path / "out" / "eval.json"
    # One device; the lowest XLA backend optimisation level compiles ~3x faster (same math).
    env = dict(
        os.environ,
        JAX_PLATFORMS="cpu",
        XLA_FLAGS=("--xla_force_host_platform_device_count=1 --xla_backend_optimization_level=0"),
    )
    cmd = [
        sys.executable,
        "-m",
        "rl.evaluate",
        f"--model={policy_dir}",
        "--dataset=gsm8k",
        "--limit=32",
        f"--output={out}",
        "--max_new_tokens=8",
        "--batch_size=32",
        f"--reward_model={prm_dir}",
        "--reward_kind=prm",
        f"--data_dir={tmp_path / 'tfds'}",
        "--verifier_workers=1",
    ]
    proc = subprocess.run(cmd, cwd=ROOT, env=env, capture_output=True, text=True, timeout=600)
    assert proc.returncode == 0, proc.stderr[-4000:]
    result = json.loads(out.read_text())
    assert result["n"] == 32 and 0.0 <= result["accuracy"] <= 1.0
    assert result["greedy"]["accuracy"] == result["accuracy"]
    assert result["settings"]["reward_kind"] == "prm" and "sampled" not in result
    assert "prm_return" in result and "prm_return_correlation" in result["greedy"]
    records = [
        json.loads(line) for line in out.with_suffix(".records.jsonl").read_text().splitlines()
    ]
    assert [r["id"] for r in records] == [f"gsm8k/test/{i}" for i in range(32)]
    assert all(r["prm_return"] == pytest.approx(sum(r["step_scores"])) for r in records)
    assert all(1 <= r["response_length"] <= 8 for r in records)
    table = out.with_suffix(".md").read_text()
    assert "| greedy accuracy |" in table and table in proc.stdout


# --- The rule table and the dataset's builder arguments ------------------------------------------


def _rules_for(model: pathlib.Path) -> tuple:
    """rl.evaluate's rule table for --model=`model`, its flags set as parsed from a command line
    (FLAGS itself is not parsed: other modules' required flags may be defined in this process)."""
    was_parsed = flags.FLAGS.is_parsed()
    flags.FLAGS.mark_as_parsed()
    try:
        with flagsaver.as_parsed(model=str(model), sharding=str(ROOT / "configs" / "sharding.py")):
            return evaluate._rules()
    finally:
        if not was_parsed:
            flags.FLAGS.unparse_flags()


def test_rules_are_a_workdirs_saved_table_else_the_sharding_flags(tmp_path):
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert _rules_for(hf) == RULES
    # A workdir as the trainer leaves it: RLConfig.to_json(), rules as nested lists.
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(RLConfig.from_config_dict(smoke.get_config()).to_json())
    assert json.loads((run / "config.json").read_text())["mesh"]["rules"][0] == [
        "batch",
        ["data", "fsdp"],
    ]
    assert _rules_for(run) == RULES
    # Its own table wins over the flag's, as tuples.
    (run / "config.json").write_text(
        json.dumps({"mesh": {"rules": [["batch", ["data"]], ["embed", None]]}})
    )
    assert _rules_for(run) == (("batch", ("data",)), ("embed", None))
    # A run config without mesh.rules (written before the trainer saved them): the flag's.
    (run / "config.json").write_text(json.dumps({"data": {"dataset": "toy"}}))
    assert _rules_for(run) == RULES
    (run / "config.json").write_text(json.dumps({"mesh": {"rules": [["batch", "rows"]]}}))
    with pytest.raises(SystemExit, match="config.mesh.rules"):
        _rules_for(run)


def test_builder_kwargs_read_a_workdirs_toy_settings_with_defaults_for_the_rest():
    saved = {"dataset": "toy", "toy_seed": 3, "toy_test_size": 8, "prompts_per_batch": 2, "x": 1}
    assert evaluate._builder_kwargs("toy", saved) == {
        "seed": 3,
        "train_size": 20_000,
        "test_size": 8,
    }
    assert evaluate._builder_kwargs("toy", {}) == {
        "seed": 0,
        "train_size": 20_000,
        "test_size": 512,
    }
    # --dataset overrides the run's: a toy workdir evaluated on GSM8K takes no toy arguments.
    assert evaluate._builder_kwargs("gsm8k", saved) == {}
