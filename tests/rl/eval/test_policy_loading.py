"""Loading the policy to evaluate: what counts as an HF directory, which checkpoint steps a
workdir holds, the errors that name what is missing, and a project workdir restored exactly."""

import json

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from flax import nnx

from configs import smoke
from models.decoder import CausalLM
from rl.algo.update import TrainState
from rl.config import ModelSpec
from rl.eval import policy_loading
from rl.runtime import model_builder
from rl.runtime.checkpoint import Checkpointer


def test_is_hf_dir_needs_a_transformers_config(tmp_path):
    assert not policy_loading.is_hf_dir(tmp_path)  # no config.json
    (tmp_path / "config.json").write_text(json.dumps({"data": {"dataset": "toy"}}))
    assert not policy_loading.is_hf_dir(tmp_path)  # a project run config
    (tmp_path / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert policy_loading.is_hf_dir(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"architectures": ["Qwen2ForCausalLM"]}))
    assert policy_loading.is_hf_dir(tmp_path)


def test_checkpoint_steps_are_the_numbered_dirs_with_a_state_in_numeric_order(tmp_path):
    assert policy_loading.checkpoint_steps(tmp_path) == []
    for name in ("10/state", "3/state", "7", "tmp/state"):
        (tmp_path / "checkpoints" / name).mkdir(parents=True)
    assert policy_loading.checkpoint_steps(tmp_path) == [3, 10]


def test_load_policy_names_what_is_missing(tmp_path):
    with pytest.raises(FileNotFoundError, match="neither an HF model directory"):
        policy_loading.load_policy(tmp_path)
    hf = tmp_path / "hf"
    hf.mkdir()
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    with pytest.raises(FileNotFoundError, match="has no tokenizer files"):
        policy_loading.load_policy(hf)
    workdir = tmp_path / "run"
    (workdir / "checkpoints" / "3" / "state").mkdir(parents=True)
    (workdir / "config.json").write_text(json.dumps({"data": {"dataset": "toy"}}))
    with pytest.raises(FileNotFoundError, match=r"no checkpoint step 5; have \[3\]"):
        policy_loading.load_policy(workdir, step=5)


def test_load_policy_from_workdir_restores_the_trained_policy(tmp_path, toy_tok):
    """A workdir as the trainer leaves it (TrainState checkpoint) plus the run's config.json."""
    cfg = smoke.get_config()
    cfg.policy.overrides = {"num_layers": 1}
    spec = ModelSpec.from_section("policy", cfg.policy)
    model = CausalLM(model_builder.model_config(spec, toy_tok), rngs=nnx.Rngs(7))
    state = nnx.state(model)
    ckpt = Checkpointer(tmp_path / "checkpoints", keep=2)
    ckpt.save(
        3,
        TrainState(
            step=jnp.zeros((), jnp.int32), policy=state, critic=state, policy_opt=(), critic_opt=()
        ),
        {"iteration": 3},
    )
    ckpt.close()
    with pytest.raises(FileNotFoundError, match="config.json"):
        policy_loading.load_policy(tmp_path)
    (tmp_path / "config.json").write_text(cfg.to_json())
    loaded = policy_loading.load_policy(tmp_path)
    assert loaded.source == "workdir" and loaded.step == 3
    assert loaded.run_config["data"]["dataset"] == "toy"
    assert loaded.tokenizer.get_vocab() == toy_tok.get_vocab()
    want, got = jax.tree.leaves(state), jax.tree.leaves(nnx.state(loaded.model))
    assert len(want) == len(got) and all(
        np.array_equal(a, b) for a, b in zip(want, got, strict=True)
    )


def test_load_policy_tokenizer_reads_no_weights(tmp_path, toy_tok):
    """A workdir's tokenizer from its run config alone (the toy task's; a config.tokenizer
    directory first); an HF directory's from its files; anything else named."""
    run = tmp_path / "run"
    run.mkdir()
    (run / "config.json").write_text(json.dumps({"data": {"dataset": "toy"}, "policy": {}}))
    assert policy_loading.load_policy_tokenizer(run).get_vocab() == toy_tok.get_vocab()
    hf = tmp_path / "hf"
    toy_tok.save_pretrained(hf)
    (hf / "config.json").write_text(json.dumps({"model_type": "qwen2"}))
    assert policy_loading.load_policy_tokenizer(hf).get_vocab() == toy_tok.get_vocab()
    (run / "config.json").write_text(
        json.dumps({"data": {"dataset": "gsm8k"}, "policy": {}, "tokenizer": str(hf)})
    )
    assert policy_loading.load_policy_tokenizer(run).get_vocab() == toy_tok.get_vocab()
    with pytest.raises(FileNotFoundError, match="neither an HF model directory"):
        policy_loading.load_policy_tokenizer(tmp_path / "empty")
