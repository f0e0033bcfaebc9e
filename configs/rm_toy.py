"""Reward-model training on the toy task: a PRM (default), an ORM or an implicit PRM.

    python -m rl.train_rm --config=configs/rm_toy.py --workdir=runs/rm_prm
    python -m rl.train_rm --config=configs/rm_toy.py:orm --workdir=runs/rm_orm
    python -m rl.train_rm --config=configs/rm_toy.py:prm --workdir=runs/rm_prm_auto \
        --config.data.source=auto --config.policy.path=runs/sft/policy \
        --config.model.init_from_policy=True
    python -m rl.train_rm --config=configs/rm_toy.py:implicit_prm --workdir=runs/rm_implicit \
        --config.data.source=auto --config.policy.path=runs/sft/policy

`arg` is the kind: prm | orm | implicit_prm. Data sources (data.source): synthetic (toy solutions
with wrong steps, labelled by the arithmetic check), auto (sample `data.samples_per_problem`
solutions per problem from the policy, label each step by `label.k_completions` completions; soft
fractions, or `label.hard=True` for any-correct), math_shepherd | prm800k | math_aps (a file at
data.path), jsonl (a labels.jsonl written by an earlier run). The implicit PRM is pi (initialised
from the policy, which is also pi_ref) trained on outcome labels with r = beta * sum log(pi/pi_ref).
"""

import ml_collections

from configs import common, sharding


def get_config(arg=None):
    c = ml_collections.ConfigDict()
    c.kind = arg or "prm"
    c.seed = 0
    c.tokenizer = ""  # default: the policy's or the init model's checkpoint, else the toy's
    # The policy: samples and completes solutions (source=auto); pi_ref for the implicit PRM; the
    # backbone of the ORM/PRM with model.init_from_policy. A checkpoint path or a random preset.
    c.policy = common.model_section()
    c.model = ml_collections.ConfigDict(
        dict(
            path="",  # an HF checkpoint whose backbone starts the ORM/PRM
            preset="tiny",  # else a random preset (models/presets.py) sized to the tokenizer
            seed=0,
            head="scalar",  # scalar (sigmoid-squashed) | two_class
            init_from_policy=False,
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            source="synthetic",
            path="",
            dataset="toy",
            split="train",
            data_dir="",
            num_problems=1500,
            samples_per_problem=4,
            max_prompt_len=32,
            max_response_len=112,
            step_separator="\n",
            heldout_fraction=0.1,
            prm800k_neutral=1.0,
            toy_seed=0,
            toy_error_prob=0.5,
            # rl.data.toy.ToySpec of the synthetic solutions: single-digit chains, whose arithmetic
            # check a random tiny PRM learns in a few hundred steps (measured: held-out accuracy
            # 0.99). On the task's own spec (values to 99: min_ops=3, max_ops=6, max_operand=9,
            # max_value=99, redundant_step_prob=0.15) a random tiny PRM memorizes 2,000 solutions
            # (train 1.0, held-out 0.56) and learns little from 20,000 in 1,000 steps (held-out
            # 0.58).
            toy_spec=ml_collections.ConfigDict(
                dict(min_ops=3, max_ops=4, max_operand=3, max_value=9, redundant_step_prob=0.0)
            ),
        )
    )
    c.label = ml_collections.ConfigDict(
        dict(
            k_completions=8,
            hard=False,
            temperature=1.0,
            max_new_tokens=96,
            prompts_per_call=16,
        )
    )
    c.train = ml_collections.ConfigDict(
        dict(
            steps=400,
            batch_size=64,
            learning_rate=2e-3,
            schedule="cosine",
            warmup_steps=20,
            weight_decay=0.0,
            max_grad_norm=1.0,
            beta=0.05,
            log_every=50,
        )
    )
    c.mesh = ml_collections.ConfigDict(dict(shape=(1, -1, 1), rules=sharding.RULES))
    return c
