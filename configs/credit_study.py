"""Credit assignment x reward refinement on the toy task: does Delta's exploitation disappear under
whole-trajectory credit, and which refinements keep the PRM useful?

    python -m rl.reproduce --workdir=/tmp/credit --config=configs/credit_study.py
    python -m rl.reproduce --workdir=/tmp/credit_smoke --config=configs/credit_study.py:smoke

The embedded default's task, SFT policy and reward models (``configs/toy.py``; the same seeds, so
the same artifacts), then PPO for every PRM refinement under three credit-assignment schemes, 3
seeds each:

* ``gae``: GAE(gamma 1, lambda 0.95) from a zero-initialised critic, the default's. A token's credit
  for the success reward decays as 0.95^distance (about 0.08 at 50 tokens), while a step's PRM
  reward 8 tokens away keeps about 0.66: the PRM term dominates early tokens' advantages.
* ``gae_l1``: GAE with lambda 1 for actor and critic (Monte-Carlo returns minus a baseline; VC-PPO's
  critic lambda) after 3 critic-only warm-up iterations, so the baseline has seen returns before the
  policy moves.
* ``rloo``: no critic; a token's advantage is its return-to-go minus the mean return of the prompt's
  other samples (PURE's and PRIME's estimator): every reward counts at full weight.

Variant names are ``<refinement>@<scheme>``; results.md reports each variant's mean and spread over
the seeds (accuracy, steps per response, repeated-step fraction).
"""

import ml_collections

from configs import toy

REFINEMENTS = {
    "success_only": dict(),
    "prm_raw": dict(prm_weight=1.0, prm_transform="raw"),
    "prm_clip": dict(prm_weight=1.0, prm_transform="clip"),
    "prm_delta": dict(prm_weight=1.0, prm_transform="delta"),
    "prm_clip_delta": dict(prm_weight=1.0, prm_transform="clip_delta"),
    "prm_min_form": dict(prm_weight=1.0, prm_transform="min_form"),
    "prm_potential": dict(prm_weight=1.0, prm_transform="potential"),
}
SCHEMES = {
    "gae": dict(),
    "gae_l1": dict(lam=1.0, critic_lam=1.0, critic_warmup_iterations=3),
    "rloo": dict(advantage="rloo"),
}


def get_config(arg=None):
    c = toy.get_config(arg)
    variants = {f"{r}@{s}": (r, s) for s in SCHEMES for r in REFINEMENTS}
    if arg == "smoke":  # two refinements under each scheme: every code path, minutes
        variants = {k: v for k, v in variants.items() if v[0] in ("success_only", "prm_delta")}
        warmup = 1
        c.seeds = (0,)
    else:
        warmup = SCHEMES["gae_l1"]["critic_warmup_iterations"]
        c.seeds = (0, 1, 2)
    c.variants = tuple(variants)
    c.variant_rewards = ml_collections.ConfigDict(
        {name: dict(REFINEMENTS[r]) for name, (r, _) in variants.items()}
    )
    c.variant_ppo = ml_collections.ConfigDict(
        {
            name: dict(
                SCHEMES[s], **({"critic_warmup_iterations": warmup} if s == "gae_l1" else {})
            )
            for name, (_, s) in variants.items()
        }
    )
    return c
