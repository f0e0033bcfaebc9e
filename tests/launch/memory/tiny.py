"""A tiny PPO run for the memory-check modules: configs/smoke.py with a 2-layer width-64 policy of
vocabulary 256 and no PRM, so every byte count in these tests can be worked out by hand.

The policy (qwen2_like:64,2: 1 query head and 1 KV head of 64, MLP 384, tied embeddings, fp32
parameters) has per layer 4 * 64 * 64 attention weights + 192 q/k/v biases + 3 * 64 * 384 MLP
weights + 2 * 64 norm scales = 90,432 parameters; with the 256 x 64 embedding and the final norm,
197,312 parameters = 789,248 bytes. The critic adds a 64 -> 1 value head with bias: 789,508 bytes.
The rollout: 2 prompts x 2 samples = 4 rows of 8 prompt + 4 response tokens, one minibatch.
"""

from configs import smoke

POLICY_PARAMS = 197_312
POLICY_BYTES = POLICY_PARAMS * 4
CRITIC_BYTES = POLICY_BYTES + 65 * 4


def tiny_config():
    c = smoke.get_config()
    c.policy.preset = "qwen2_like:64,2"
    c.policy.overrides = {"vocab_size": 256}
    c.prm.preset = ""
    c.reward.prm_weight = 0.0
    c.data.prompts_per_batch, c.data.samples_per_prompt, c.data.max_prompt_len = 2, 2, 8
    c.rollout.max_new_tokens = 4
    c.ppo.minibatches = 1
    c.mesh.shape = (1, 1, 1)
    return c
