"""A whole reward-model run in process: source=auto samples from the (random) policy, labels,
trains, saves."""

from configs import rm_smoke
from models.decoder import CausalLM
from models.reward_io import load_reward_model
from rl.reward_models import sources
from rl.reward_models.run import run
from rl.reward_models.run_config import RMRunConfig


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
