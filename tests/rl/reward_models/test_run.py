"""A whole reward-model run in process: source=auto samples from the (random) policy, labels,
trains, saves."""

import numpy as np
import pytest
from flax import nnx

from configs import rm_smoke
from models import hf_io
from models.decoder import CausalLM
from models.likelihood_prm import LikelihoodPRM
from models.reward_io import load_reward_model
from rl.config import ConfigError
from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models import sources
from rl.reward_models.run import run
from rl.reward_models.run_config import RMRunConfig
from tests.rl.reward_models.toy_rm import tiny_config


def test_auto_labelled_implicit_prm_run(tmp_path):
    """source=auto end to end, in process: sample from the (random) policy, label, train, save."""
    c = rm_smoke.get_config("implicit_prm")
    c.data.source = "auto"
    c.data.num_problems = 4
    c.mesh.shape = (1, 1, 1)
    result = run(RMRunConfig.from_config_dict(c), tmp_path)
    labelled = sources.load_jsonl(tmp_path / "labels.jsonl")
    assert len(labelled) <= 8 and result["num_examples"] == len(labelled)
    assert all(len(e.steps) == len(e.labels) and e.outcome in (0.0, 1.0) for e in labelled)
    model, info = load_reward_model(tmp_path / "model")
    assert isinstance(model, CausalLM) and info["kind"] == "implicit_prm" and info["beta"] == 0.05


def test_a_prm_run_with_a_likelihood_lm_saves_a_likelihood_prm(tmp_path):
    """model.likelihood_lm: after training, the weights are fitted and the saved PRM reloads as a
    LikelihoodPRM whose eval.json holds the fit's held-out metrics; kinds that are not a scalar
    PRM are refused by name."""
    c = rm_smoke.get_config()
    c.mesh.shape = (1, 1, 1)
    tok = toy_tokenizer()
    hf_io.save_causal_lm(
        CausalLM(tiny_config(tok, num_layers=1), rngs=nnx.Rngs(4)), tmp_path / "lm"
    )
    c.model.likelihood_lm = str(tmp_path / "lm")
    result = run(RMRunConfig.from_config_dict(c), tmp_path / "run")
    fit = result["eval"]["likelihood"]
    assert len(fit["likelihood_weights"]) == 3 and 0 <= fit["auc"] <= 1
    model, info = load_reward_model(tmp_path / "run" / "model")
    assert isinstance(model, LikelihoodPRM)
    np.testing.assert_allclose(info["likelihood"]["weights"], fit["likelihood_weights"], rtol=1e-6)
    c = rm_smoke.get_config("orm")
    c.model.likelihood_lm = str(tmp_path / "lm")
    with pytest.raises(ConfigError, match="config.model.likelihood_lm"):
        RMRunConfig.from_config_dict(c)
