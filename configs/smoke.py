"""A tiny CPU run of the whole PPO loop, for tests and debugging.

python -m rl.train --config=configs/smoke.py --workdir=/tmp/smoke
python -m rl.train --config=configs/smoke.py --workdir=/tmp/smoke --config.reward.prm_transform=clip
"""

from configs import common


def get_config(arg=None):
    del arg
    c = common.rl_base()
    c.policy.preset = "tiny"
    c.prm.preset = "tiny"
    c.prm.seed = 1
    c.reward.prm_weight = 1.0
    c.reward.prm_transform = "clip_delta"
    c.data.dataset = "toy"
    c.data.prompts_per_batch = 4
    c.data.samples_per_prompt = 2
    c.data.max_prompt_len = 32
    c.data.step_separator = "\n"
    c.data.toy_train_size = 256
    c.data.toy_test_size = 32
    c.rollout.max_new_tokens = 32
    c.optim.learning_rate = 1e-4
    c.optim.critic_learning_rate = 1e-4
    c.ppo.minibatches = 2
    c.train.iterations = 6
    c.train.checkpoint_every = 2
    return c
