"""The paper's 7B setting: Qwen2.5-Math-7B-Instruct with PPO on MATH, a 7B PRM in the reward.

    python -m rl.train --config=configs/qwen2p5_math_7b.py --workdir=gs://BUCKET/runs/math_7b
    python -m rl.train --config=configs/qwen2p5_math_7b.py:v5p-64 --workdir=...
    python -m launch.aot --config=configs/qwen2p5_math_7b.py          # memory check; "fits on: ..."

Data, reward, PPO and optimizer settings are those of `configs/qwen2_1p5b.py` (its docstring gives
each and why; the paper does not publish its PPO settings), so the 1.5B and 7B runs differ only in
the policy. What changes with size:

* Memory: the resident state is a 7.6B policy and a 7.1B critic in fp32 with their Adam moments
  (about 176 GB), the reference (a copy of the policy, 30 GB) and the bf16 PRM (14 GB): about
  221 GB, so the mesh is pure FSDP over every chip of the slice (`arg`, default v5p-128: 64 chips
  of 95 GiB; 128-device slices put a factor 2 on `tensor`, as the 64-row minibatch cannot be split
  128 ways).
  `python -m launch.aot --config=configs/qwen2p5_math_7b.py` prints which supported slices fit:
  the v5p ones (v5p-32 and up). The update is the largest program (XLA:TPU holds about one model's
  full-size layer weight gradients before reduce-scattering them: it refuses the update on v5e-64
  for 28 GiB of temporaries), so v4 and v5e slices up to 128 chips do not fit.
* Microbatches keep one 1,536-token row per device per microbatch, as for 1.5B.

    huggingface-cli download Qwen/Qwen2.5-Math-7B-Instruct \\
        --local-dir ~/models/Qwen2.5-Math-7B-Instruct
"""

from configs.qwen2_1p5b import paper_config

SUPPORTED = (
    "v4-32",
    "v4-64",
    "v4-128",
    "v5e-32",
    "v5e-64",
    "v5e-128",
    "v5p-32",
    "v5p-64",
    "v5p-128",
    "v5p-256",
)


def get_config(arg=None):
    return paper_config(
        policy_dir="Qwen2.5-Math-7B-Instruct",
        policy_preset="qwen2_5_math_7b",
        topology=arg or "v5p-128",
        supported=SUPPORTED,
        fsdp=None,
    )
