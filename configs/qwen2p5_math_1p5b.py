"""The paper's 1.5B math-specialist setting: Qwen2.5-Math-1.5B-Instruct with PPO on MATH, 7B PRM.

    python -m rl.train --config=configs/qwen2p5_math_1p5b.py --workdir=gs://BUCKET/runs/math_1p5b
    python -m rl.train --config=configs/qwen2p5_math_1p5b.py:v5e-64 --workdir=...
    python -m launch.aot --config=configs/qwen2p5_math_1p5b.py --topology=v5e-32

Everything but the policy is the setting of `configs/qwen2_1p5b.py`, whose docstring gives every
hyperparameter and why (the paper does not publish its PPO settings). The policy has Qwen2-1.5B's
shapes (28 layers, width 1536, 2 KV heads) with RoPE theta 1e4 and a 4,096-token context, which
P + R = 512 + 1024 stays within; its tokenizer is the PRM's, so the PRM scores the policy's own
tokens.

    huggingface-cli download Qwen/Qwen2.5-Math-1.5B-Instruct \\
        --local-dir ~/models/Qwen2.5-Math-1.5B-Instruct

`arg` names the TPU slice (default v4-32); the mesh is FSDP over groups of 16 chips.
"""

from configs.qwen2_1p5b import SUPPORTED, paper_config


def get_config(arg=None):
    return paper_config(
        policy_dir="Qwen2.5-Math-1.5B-Instruct",
        policy_preset="qwen2_5_math_1_5b",
        topology=arg or "v4-32",
        supported=SUPPORTED,
        fsdp=16,
    )
