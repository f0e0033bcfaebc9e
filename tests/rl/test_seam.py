"""`python -m rl.seam` as a user runs it, on a tiny random policy, then PPO with
configs/seam_filtered.py on what it kept (data.path): the outputs, training on exactly the kept
prompts, and an output directory scored with another tokenizer refused before any scoring."""

import json
import pathlib
import subprocess
import sys

import jax
from flax import nnx

from configs import seam_filtered
from models import hf_io, presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.config import RLConfig
from rl.data.toy_tokenizer import toy_tokenizer
from rl.trainers.ppo_trainer import Trainer
from tests.rl.train_cli import metrics as _metrics

ROOT = pathlib.Path(__file__).resolve().parents[2]
QWEN_TOKENIZER = ROOT / "models" / "assets" / "qwen2_tokenizer"


def _policy_dir(path: pathlib.Path) -> pathlib.Path:
    """A random 1-layer tiny policy over the toy vocabulary, initialised in one jitted program."""
    tok = toy_tokenizer()
    values = presets.tiny(vocab_size=len(tok)).to_dict()
    values.update(eos_token_id=tok.eos_token_id, pad_token_id=tok.pad_token_id, bos_token_id=None)
    config = ModelConfig.from_dict({**values, "num_layers": 1})
    make = lambda: CausalLM(config, rngs=nnx.Rngs(0))  # noqa: E731
    graphdef, _ = nnx.split(nnx.eval_shape(make))
    model = nnx.merge(graphdef, jax.jit(lambda: nnx.split(make())[1])())
    hf_io.save_causal_lm(model, path, tokenizer=tok)
    return path


def _seam(policy, out, data_dir, *extra):
    cmd = [sys.executable, "-m", "rl.seam", f"--policy={policy}", "--dataset=toy", "--limit=16"]
    cmd += ["--toy_train_size=64", "--samples=2", "--keep=0.5", "--batch_size=16"]
    cmd += ["--max_new_tokens=8"]
    cmd += [f"--output={out}", f"--data_dir={data_dir}", "--verifier_workers=1", *extra]
    return cmd


def test_seam_then_train_on_the_kept_prompts(tmp_path, env):
    e, data_dir = env
    policy, out = _policy_dir(tmp_path / "policy"), tmp_path / "seam"
    run = dict(cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)
    proc = subprocess.run(_seam(policy, out, data_dir), **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| kept | 8 (50.0%), the lowest 50% SEAM |" in proc.stdout
    assert "SEAM x2" in proc.stderr  # the progress bar
    manifest = json.loads((out / "seam.json").read_text())
    assert (manifest["dataset"], manifest["num_examples"], manifest["samples"]) == ("toy", 16, 2)
    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert len(kept) == summary["kept"] == 8 and summary["prompts"] == 16
    assert (out / "seam_hist.png").exists() and (out / "chunks" / "00000.jsonl").exists()

    # The same directory with another tokenizer: refused, naming the flag, before any scoring.
    proc = subprocess.run(_seam(policy, out, data_dir, f"--tokenizer={QWEN_TOKENIZER}"), **run)
    assert proc.returncode != 0
    assert f"--policy='{policy}': {out} holds SEAM scores made with another tokenizer" in (
        proc.stderr
    )
    assert "SEAM x2" not in proc.stderr

    # Training on the kept prompts (the trainer in process, as tests/rl/trainers does; rl.train is
    # this plus flag parsing): every prompt it samples is one rl.seam kept.
    cfg = seam_filtered.get_config()
    cfg.data_dir = data_dir
    cfg.data.path = str(out / "kept.jsonl")
    cfg.data.prompts_per_batch = 8  # 16 rows: 8 per update, one per device
    cfg.train.iterations = 2
    cfg.train.log_samples = 16
    workdir = tmp_path / "train"
    trainer = Trainer(RLConfig.from_config_dict(cfg), workdir)
    try:
        trainer.run()
    finally:
        trainer.close()
    assert [r["step"] for r in _metrics(workdir)] == [1, 2]
    for step in (1, 2):
        lines = (workdir / "samples" / f"{step:06d}.jsonl").read_text().splitlines()
        trained_on = {json.loads(line)["prompt_id"] for line in lines}
        assert trained_on == {r["id"] for r in kept}  # 8 prompts per batch: all of them
