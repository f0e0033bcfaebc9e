"""Fixtures of tests/rl/rollout: a tiny random Qwen2 (transformers' and ours, from one checkpoint),
four left-padded prompts, and the greedy and temperature-1 runs several tests compare against."""

import numpy as np
import pytest

from models.hf_io import load_causal_lm
from tests.models.hf_reference import jit_forward, left_padded, make_hf_model
from tests.rl.rollout.sampling_helpers import PADS, VOCAB, run


@pytest.fixture(scope="module")
def hf_model():
    return make_hf_model("qwen2", seed=0)


@pytest.fixture(scope="module")
def ckpt(hf_model, tmp_path_factory):
    path = tmp_path_factory.mktemp("qwen2_sampler")
    hf_model.save_pretrained(path)
    return path


@pytest.fixture(scope="module")
def model(ckpt):
    return load_causal_lm(ckpt)


@pytest.fixture(scope="module")
def forward(model):
    return jit_forward(model)


@pytest.fixture(scope="module")
def prompts():
    return left_padded(np.random.default_rng(0), batch=4, length=9, pads=PADS, vocab=VOCAB)


@pytest.fixture(scope="module")
def greedy(model, prompts):
    return run(model, prompts, temperature=0.0)


@pytest.fixture(scope="module")
def sampled(model, prompts):
    """Temperature-1 samples, no stop: the reference for the stop tests (same key)."""
    return run(model, prompts, key=7, temperature=1.0)
