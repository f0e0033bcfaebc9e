"""A tiny reward-model run that finishes in seconds on a CPU: for tests and debugging.

    python -m rl.train_rm --config=configs/rm_smoke.py --workdir=/tmp/rm_smoke
    python -m rl.train_rm --config=configs/rm_smoke.py:orm --workdir=/tmp/rm_smoke_orm
    python -m rl.train_rm --config=configs/rm_smoke.py:implicit_prm --workdir=/tmp/rm_smoke_implicit
    python -m rl.train_rm --config=configs/rm_smoke.py --workdir=/tmp/rm_smoke_auto \
        --config.data.source=auto

`arg` is the kind (prm by default). The policy is a random tiny preset: enough to exercise sampling,
auto-labelling and the implicit PRM, not to produce meaningful labels.
"""

from configs import rm_toy


def get_config(arg=None):
    c = rm_toy.get_config(arg)
    c.policy.preset = "tiny"
    c.policy.seed = 1
    c.policy.overrides = {"num_layers": 1}
    c.data.num_problems = 48
    c.data.samples_per_problem = 2
    c.data.max_prompt_len = 24
    c.data.max_response_len = 64
    c.label.k_completions = 2
    c.label.max_new_tokens = 24
    c.label.prompts_per_call = 8
    c.train.steps = 6
    c.train.batch_size = 8
    c.train.warmup_steps = 0
    c.train.log_every = 2
    return c
