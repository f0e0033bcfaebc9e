"""`python -m rl.seam` then `python -m rl.train` on what it kept, as a user runs them, on a tiny
random policy: the outputs, training on exactly the kept prompts, and an output directory scored
with another tokenizer refused before any scoring."""

import json
import pathlib
import subprocess
import sys

import jax
from flax import nnx

from models import hf_io, presets
from models.config import ModelConfig
from models.decoder import CausalLM
from rl.data.toy_tokenizer import toy_tokenizer
from tests.rl.train_cli import metrics as _metrics
from tests.rl.train_cli import train_command as _train

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
    cmd = [sys.executable, "-m", "rl.seam", f"--policy={policy}", "--dataset=toy", "--limit=8"]
    cmd += ["--toy_train_size=64", "--samples=2", "--keep=0.5", "--batch_size=8"]
    cmd += ["--max_new_tokens=8"]
    cmd += [f"--output={out}", f"--data_dir={data_dir}", "--verifier_workers=1", *extra]
    return cmd


def test_seam_then_train_on_the_kept_prompts(tmp_path, env):
    e, data_dir = env
    policy, out = _policy_dir(tmp_path / "policy"), tmp_path / "seam"
    run = dict(cwd=ROOT, env=e, capture_output=True, text=True, timeout=300)
    proc = subprocess.run(_seam(policy, out, data_dir), **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "| kept | 4 (50.0%), the lowest 50% SEAM |" in proc.stdout
    assert "SEAM x2" in proc.stderr  # the progress bar
    manifest = json.loads((out / "seam.json").read_text())
    assert (manifest["dataset"], manifest["num_examples"], manifest["samples"]) == ("toy", 8, 2)
    kept = [json.loads(line) for line in (out / "kept.jsonl").read_text().splitlines()]
    summary = json.loads((out / "summary.json").read_text())
    assert len(kept) == summary["kept"] == 4 and summary["prompts"] == 8
    assert (out / "seam_hist.png").exists() and (out / "chunks" / "00000.jsonl").exists()

    # The same directory with another tokenizer: refused, naming the flag, before any scoring.
    proc = subprocess.run(_seam(policy, out, data_dir, f"--tokenizer={QWEN_TOKENIZER}"), **run)
    assert proc.returncode != 0
    assert f"--policy='{policy}': {out} holds SEAM scores made with another tokenizer" in (
        proc.stderr
    )
    assert "SEAM x2" not in proc.stderr

    # rl.train on the kept prompts: every prompt it samples is one rl.seam kept.
    workdir = tmp_path / "train"
    cmd = _train(workdir, data_dir, f"--config.data.path={out / 'kept.jsonl'}")
    cmd[3:4] = ["--config=configs/seam_filtered.py"]
    cmd += ["--config.train.iterations=2", "--config.train.log_samples=8"]
    proc = subprocess.run(cmd, **run)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert [r["step"] for r in _metrics(workdir)] == [1, 2]
    trained_on = set()
    for step in (1, 2):
        lines = (workdir / "samples" / f"{step:06d}.jsonl").read_text().splitlines()
        trained_on |= {json.loads(line)["prompt_id"] for line in lines}
    assert trained_on == {r["id"] for r in kept}  # 4 prompts per batch: all of them, each time
