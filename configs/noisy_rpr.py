"""Noisy verifier + reasoning-pattern reward (Lv et al. 2025, "The Climb Carves Wisdom Deeper Than
the Summit", arXiv 2505.22653), smoke-sized on the toy task (CPU, about a minute).

    python -m rl.train --config=configs/noisy_rpr.py --workdir=/tmp/noisy_rpr
    python -m rl.train --config=configs/noisy_rpr.py:noisy --workdir=/tmp/noisy      # baseline
    python -m rl.train --config=configs/noisy_rpr.py:rpr_only --workdir=/tmp/rpr_only

`arg` picks the variant (the paper's comparison):
* "" (default) / "noisy_rpr": the verifier's verdict flipped with probability 0.4 (the paper's 40%),
  and where the noisy verdict is "wrong" the response earns its reasoning-pattern reward instead of
  0 (pattern_when="wrong": the paper's code, `add_format_reward_when_wrong`);
* "noisy": the same noise, no pattern reward;
* "rpr_only": no verifier at all (success_weight 0), the pattern reward of every answered response;
* "clean": the verifier alone.

The pattern reward is the paper's math list (`PAPER_PHRASES`, verbatim from its public code,
`verl/utils/reward_score/math_score.py: think_reward`, typo "makes sence" included) scored as its
code does, min(#phrases / 20, 1) (pattern_scale 0.05, cap 1), minus the project's repeated-step
fraction (the README's "Reasoning-pattern reward" says where the forms differ). PPO as the paper's:
GAE with gamma = lambda = 1, no KL. Every response of an iteration goes to samples/ITERATION.jsonl
with its success, pattern and outcome reward (train.log_samples).

The toy task's 27-character alphabet cannot spell any phrase, so here only the plumbing and the
repetition penalty act; the study itself needs a policy that writes English, e.g. (bash)
`--config.policy.preset= --config.policy.path=DIR --config.data.dataset=gsm8k
--config.data.step_separator=$'\n\n' --config.data.max_prompt_len=256
--config.rollout.max_new_tokens=1024` (and a larger batch).
"""

from configs import smoke

PAPER_PHRASES = (
    "i need to", "we need to", "wait", "alternatively", "let me check", "let me see",
    "let's focus on", "we know that", "we can observe ", "we can see ", "let me try", "let's try",
    "let us try", "first, ", "firstly, ", "next, ", "finally, ", "let us first", "let's first",
    "let me first", "try again", "still not", "not working", "not correct", "does not work",
    "doesn't work", "makes sence", "since we ", "because we ", "consequently", "as a result",
    "thus", "therefore", "hence", "so that", "thereby", "if we", "given there ", "for instance ",
    "for example ",
)  # fmt: skip

VARIANTS = ("noisy_rpr", "noisy", "rpr_only", "clean")


def get_config(arg=None):
    variant = arg or "noisy_rpr"
    if variant not in VARIANTS:
        raise ValueError(f"configs/noisy_rpr.py: unknown arg {arg!r}; use one of {VARIANTS}")
    c = smoke.get_config()
    c.prm.preset = ""  # outcome rewards only
    c.reward.prm_weight = 0.0
    c.reward.prm_transform = "raw"
    c.reward.kl_coef = 0.0
    c.ppo.lam = 1.0
    c.ppo.critic_lam = 1.0
    c.reward.pattern_phrases = PAPER_PHRASES
    c.reward.pattern_scale = 0.05
    c.reward.pattern_cap = 1.0
    c.train.log_samples = c.data.prompts_per_batch * c.data.samples_per_prompt
    if variant in ("noisy_rpr", "noisy"):
        c.reward.success_flip_prob = 0.4
    if variant == "noisy_rpr":
        c.reward.pattern_weight = 1.0
        c.reward.pattern_when = "wrong"
    if variant == "rpr_only":
        c.reward.success_weight = 0.0
        c.reward.pattern_weight = 1.0
        c.reward.pattern_when = "always"
    return c
