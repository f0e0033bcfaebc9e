"""PRIME (Cui et al. 2025, arXiv 2502.01456) on the toy task: the implicit PRM trained online on
every iteration's verifier outcomes, RLOO, and the accuracy-band prompt filter. Tiny random models:
a CPU run of the whole recipe in about a minute, for tests and as the template of a real run.

    python -m rl.train --config=configs/prime_smoke.py --workdir=/tmp/prime
    python -m rl.train --config=configs/prime_smoke.py --workdir=/tmp/prime \\
        --config.data.accuracy_band="(0.25, 0.75)" --config.reward.implicit_prm_lr=3e-4

``prime(c)`` sets the recipe on any config; its values are verl's PRIME recipe
(``recipe/prime/config/prime_trainer.yaml`` and ``run_prime_qwen.sh``): the implicit PRM starts
from the policy's checkpoint with the PPO reference as its pi_ref, beta 0.05, updated before its
rewards are read (``update: before``) by AdamW at 1e-6 with gradient clipping at 10; RLOO, with the
outcome and the implicit rewards weighted alike (``reward_gt_coef`` = ``reward_dpo_coef`` = 5,
here 1 and 1: the advantages are whitened); a KL penalty of 0.001 in the reward; 4 samples per
prompt; prompts of sampled accuracy in [0.2, 0.8] out of up to 4 batches (``oversample_factor``).
For a real run, start from a paper config and point ``implicit_prm.path`` at the policy's
checkpoint (``prime(c)`` does that when ``policy.path`` is set).

The smoke run differs in size only (one layer, 12 new tokens, 4 prompts), and in two rates a tiny
model needs to move in 8 iterations (policy 1e-4, implicit PRM 1e-3); its random policy solves
nothing, so every prompt is out of the band and the filter fills each batch with out-of-band
prompts after its 2 rounds (logged as ``filter/out_of_band``).
"""

import ml_collections

from configs import common


def prime(c: ml_collections.ConfigDict) -> ml_collections.ConfigDict:
    """PRIME's recipe on config ``c`` (its model sections and sizes stay)."""
    c.implicit_prm.path = c.policy.path
    c.implicit_prm.preset = c.policy.preset
    c.implicit_prm.seed = c.policy.seed
    c.implicit_prm.dtype = c.policy.dtype
    c.implicit_prm.param_dtype = c.policy.param_dtype
    c.implicit_prm.overrides = dict(c.policy.overrides)
    c.reward.success_weight = 1.0
    c.reward.implicit_prm_weight = 1.0
    c.reward.implicit_prm_beta = 0.05
    c.reward.implicit_prm_online = True
    c.reward.implicit_prm_lr = 1e-6
    c.reward.implicit_prm_grad_clip = 10.0
    c.reward.prm_weight = 0.0
    c.reward.orm_weight = 0.0
    c.reward.kl_coef = 0.001
    c.reward.kl_in = "reward"
    c.ppo.advantage = "rloo"
    c.data.samples_per_prompt = 4
    c.data.accuracy_band = (0.2, 0.8)
    c.data.filter_rounds = 4
    return c


def get_config(arg=None):
    del arg
    c = common.rl_base()
    c.verifier_workers = 1  # the toy answers are integers: one grading process is plenty
    c.policy.preset = "tiny"
    c.policy.overrides = {"num_layers": 1}  # one layer: the run is mostly compilation
    c.data.dataset = "toy"
    c.data.prompts_per_batch = 4
    c.data.max_prompt_len = 32
    c.data.step_separator = "\n"
    c.data.toy_train_size = 256
    c.data.toy_test_size = 32
    c.rollout.max_new_tokens = 12
    prime(c)
    c.data.filter_rounds = 2
    c.reward.implicit_prm_lr = 1e-3
    c.optim.learning_rate = 1e-4
    c.ppo.epochs = 1
    c.ppo.minibatches = 1
    c.train.iterations = 8
    c.train.checkpoint_every = 2
    return c
