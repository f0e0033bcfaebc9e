"""RL on all prompts vs on SEAM-filtered prompts (Lu et al. 2024, "It Takes Two", arXiv
2406.07971), smoke-sized on the toy task: the same success-only PPO run, two commands.

    python -m rl.seam --policy=POLICY --dataset=toy --toy_train_size=256 --samples=8 \\
        --keep=0.5 --max_new_tokens=32 --output=/tmp/seam
    python -m rl.train --config=configs/seam_filtered.py --workdir=/tmp/all
    python -m rl.train --config=configs/seam_filtered.py --workdir=/tmp/filtered \\
        --config.data.path=/tmp/seam/kept.jsonl

Without `data.path` the run trains on the dataset's own split; with it, on the prompts rl.seam kept
(`kept.jsonl`: id, question, answer, solution, seam; `data.id_field="id"` keeps their dataset ids,
so metrics and samples name the original problems). `data.dataset` stays the task the prompts came
from: it sets their format, and rl.train refuses a kept file whose seam.json names another dataset.
POLICY is an HF directory or a workdir (`rl.train`'s exported `policy/` or the workdir itself);
SEAM ranks that policy's own responses, so train that same policy on them:
`--config.policy.preset= --config.policy.path=POLICY`.
"""

from configs import smoke


def get_config(arg=None):
    del arg
    c = smoke.get_config()
    c.prm.preset = ""  # success only: the comparison is about the prompts, not the reward
    c.reward.prm_weight = 0.0
    c.reward.prm_transform = "raw"
    c.data.id_field = "id"
    return c
