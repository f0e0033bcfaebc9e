"""BroRL-style rollout scaling (arXiv 2510.01180) on the smoke model: hundreds of samples per
prompt, the update and the scoring pass in pieces sized in rows rather than by the rollout.

    python -m rl.train --config=configs/brorl.py --workdir=/tmp/brorl        # N = 256
    python -m rl.train --config=configs/brorl.py:512 --workdir=/tmp/brorl512 # N = 512

``ARG`` is ``data.samples_per_prompt`` (default 256). A few prompts per batch, each sampled N
times (the sampler prefills a prompt once and shares its KV cache with its N samples); the
verifier's outcome reward only (RLVR, as the paper); a critic-free group baseline (GRPO, with the
KL in the loss), which N samples of one prompt estimate well. What stays fixed as N grows: 64 rows
per update microbatch (``ppo.microbatch_rows``) and 128 rows per scoring block
(``rollout.score_rows``), so device memory does not scale with N; only the rollout buffers and the
host's text work do.
"""

import math

from configs import smoke


def get_config(arg=None):
    n = int(arg) if arg else 256
    c = smoke.get_config()
    c.prm.preset = ""
    c.reward.prm_weight = 0.0
    c.ppo.advantage = "grpo"
    c.reward.kl_in = "loss"
    c.data.prompts_per_batch = 2
    c.data.samples_per_prompt = n
    c.ppo.minibatches = 2
    c.ppo.microbatch_rows = math.gcd(64, n)  # 64 rows, or a power of two that divides N
    c.rollout.score_rows = 128
    c.train.iterations = 4
    return c
