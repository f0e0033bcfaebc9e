"""``rollout.old_logp="sampler"``: PPO's old log-probs taken from the sampler instead of a
recomputing pass of the policy in scoring. They must be the log-probs scoring would recompute (the
training forward's chunked head at the training temperature), on every response token of rows with
different prompt paddings and lengths; and the config refuses the setting where the sampled
distribution is not the trained one."""

import jax
import numpy as np
import pytest
from flax import nnx

from rl.algo.scoring import make_score_fn
from rl.algo.update import training_temperature
from rl.config import ConfigError, RolloutConfig
from rl.trainers.prompt_filter import behaviour_logp
from tests.rl.rollout.sampling_helpers import run


@pytest.mark.parametrize("temperature", [1.0, 0.7, 0.0])
def test_sampler_logp_equal_the_recomputed_old_logp(model, prompts, temperature):
    ids, mask = prompts
    eos = int(run(model, prompts, key=11, temperature=temperature).tokens[0, 4])
    out = run(model, prompts, key=11, temperature=temperature, eos_ids=(eos,))
    assert out.response_mask.sum(1).min() < out.response_mask.shape[1]  # some rows stop early
    graphdef, state = nnx.split(model)
    seq = np.concatenate([ids, out.tokens], axis=1)
    seq_mask = np.concatenate([mask, out.response_mask], axis=1)
    last = np.zeros(out.tokens.shape, bool)
    t = training_temperature(temperature)
    graphdefs = {"policy": graphdef, "ref": graphdef}
    params = {"policy": state, "ref": state}
    score = jax.jit(make_score_fn(graphdefs, ids.shape[1], t))
    recomputed = np.asarray(score(params, seq, seq_mask, last)["old_logp"])
    taken = behaviour_logp(out, temperature)  # what the trainer takes
    m = out.response_mask
    assert np.abs(taken[m] - recomputed[m]).max() < 1e-4
    assert (taken[~m] == 0).all()
    assert np.abs(taken[m]).max() > 0.1  # real log-probs, not zeros
    # Without the policy's pass, scoring returns no old_logp (the trainer adds the sampler's).
    lean = jax.jit(make_score_fn(graphdefs, ids.shape[1], t, policy_logp=False))
    assert "old_logp" not in lean(params, seq, seq_mask, last)


@pytest.mark.parametrize(
    "field,value",
    [("top_p", 0.9), ("top_k", 20), ("head_dtype", "bfloat16")],
)
def test_sampler_old_logp_is_refused_where_the_sampled_distribution_differs(field, value):
    with pytest.raises(ConfigError, match=rf"rollout.{field}=.*old_logp='recompute'"):
        RolloutConfig(**{field: value}).validate()
    RolloutConfig(old_logp="recompute", **{field: value}).validate()  # fine when recomputed


def test_old_logp_must_be_a_known_source():
    with pytest.raises(ConfigError, match=r"rollout.old_logp='rollout'"):
        RolloutConfig(old_logp="rollout").validate()
