"""Test helpers of tests/rl/reward_models: short toy chains, their encoding, a tiny model config
sized to the toy tokenizer, and the implicit PRM's step rewards as a plain loop."""

import numpy as np

from models import presets
from models.config import ModelConfig
from rl.data import toy
from rl.reward_models import data as rd
from rl.reward_models import sources

# Single-digit toy chains without re-statements: short sequences, so a tiny PRM learns the
# arithmetic check in a few hundred CPU steps.
SPEC = toy.ToySpec(min_ops=3, max_ops=4, max_value=9, max_operand=3, redundant_step_prob=0.0)
P, R = 14, 36


def tiny_config(tok, **values) -> ModelConfig:
    return ModelConfig.from_dict(
        presets.tiny(
            vocab_size=len(tok),
            eos_token_id=tok.eos_token_id,
            pad_token_id=tok.pad_token_id,
            bos_token_id=None,
            **values,
        ).to_dict()
    )


def toy_arrays(tok, split, size, seed=0) -> rd.RewardArrays:
    return rd.encode(
        sources.toy_step_labelled(split, size, seed=seed, spec=SPEC),
        tok,
        max_prompt_len=P,
        max_response_len=R,
        sep="\n",
    )


def per_step_by_hand(logp, ref_logp, step_end, response, beta):
    """beta x the summed log-ratio of each step's tokens, written as a plain loop."""
    out = np.zeros_like(logp)
    total = 0.0
    for t in range(len(logp)):
        if response[t]:
            total += logp[t] - ref_logp[t]
        if step_end[t]:
            out[t] = beta * total
            total = 0.0
    return out, beta * total  # and what follows the last step (the EOS)
