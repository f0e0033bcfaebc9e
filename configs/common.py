"""Defaults shared by every RL config; each config file starts from ``rl_base()`` and overrides.

The values mirror ``rl.config``'s dataclasses, where each field is documented and validated.
"""

import ml_collections

from configs import sharding


def model_section(**values) -> ml_collections.ConfigDict:
    """path | preset (+ seed), dtypes, remat; reward models add kind (scalar | token_prob |
    two_class) and, for token_prob, the good/bad tokens. ``overrides`` sets ModelConfig fields."""
    base = dict(
        path="",
        preset="",
        seed=0,
        dtype="float32",
        param_dtype="float32",
        remat=False,
        kind="scalar",
        good_token="",
        bad_token="",
        overrides={},
        format="",  # PRMs: own | qwen_math_prm | math_shepherd | rlhflow | value_head; "" detects
        max_input_len=0,  # a published PRM's input bucket in its tokens (0: derived)
        max_steps=0,  # most steps scored per response (0: derived)
    )
    base.update(values)
    return ml_collections.ConfigDict(base)


def rl_base() -> ml_collections.ConfigDict:
    c = ml_collections.ConfigDict()
    c.seed = 0
    c.tokenizer = ""  # a tokenizer directory; default: the policy checkpoint's, or the toy task's
    c.data_dir = ""  # where TFDS builds are cached; default ~/.cache/rlreward/tfds
    c.verifier_workers = 2

    # Models: a Hugging Face directory (path) or a random-weight preset of models/presets.py.
    c.policy = model_section()
    c.prm = model_section(kind="scalar")
    c.orm = model_section(kind="scalar")
    c.implicit_prm = model_section()

    c.reward = ml_collections.ConfigDict(
        dict(
            success_weight=1.0,
            orm_weight=0.0,
            prm_weight=0.0,
            prm_transform="raw",  # raw | clip | delta | clip_delta | min_form | potential
            prm_eta=0.5,
            prm_min_form_temperature=0.0,  # min_form: 0 exact min; > 0 PURE's softmax weights
            prm_potential_terminal=False,  # potential: -s_K at the last step (PRM return 0)
            implicit_prm_weight=0.0,
            implicit_prm_beta=0.05,
            # PRIME (configs/prime_smoke.py): the implicit PRM updated online every iteration.
            implicit_prm_online=False,
            implicit_prm_lr=1e-6,
            implicit_prm_grad_clip=10.0,
            implicit_prm_minibatches=1,
            implicit_prm_microbatches=1,
            gated=False,  # G-RA: process rewards only where the outcome reward >= gate_threshold
            gate_threshold=1.0,
            kl_coef=0.02,
            kl_estimator="k1",  # k1 | k2 | k3, in the reward and in the loss
            kl_in="reward",  # reward (per-token penalty) | loss
            success_flip_prob=0.0,
            # Reasoning-pattern reward (rewards.patterns, arXiv 2505.22653) added to the outcome:
            # min(scale * #distinct phrases, cap) - repeated-step fraction; () = the default list.
            pattern_weight=0.0,
            pattern_phrases=(),
            pattern_scale=0.2,
            pattern_cap=1.0,
            pattern_when="always",  # always | wrong (only where the success reward is < 0.5)
            pattern_requires_answer=True,  # none for a response that states no final answer
        )
    )
    c.ppo = ml_collections.ConfigDict(
        dict(
            gamma=1.0,
            lam=0.95,  # GAE lambda of the actor's advantages
            # ... and of the critic's targets (VC-PPO uses 1: unbiased Monte-Carlo-like targets).
            critic_lam=0.95,
            clip_eps=0.2,
            dual_clip=0.0,
            value_clip=0.2,
            vf_coef=0.5,
            entropy_coef=0.0,
            epochs=2,
            minibatches=2,
            microbatches=1,
            microbatch_rows=0,  # rows per microbatch; > 0 derives microbatches (BroRL scale)
            whiten_advantages=True,
            advantage="gae",  # gae | grpo | rloo | reinforce_pp (rl/algo/advantages.py)
        )
    )
    c.optim = ml_collections.ConfigDict(
        dict(
            learning_rate=1e-6,
            critic_learning_rate=5e-6,
            schedule="constant",
            warmup_steps=0,
            max_grad_norm=1.0,
            weight_decay=0.0,
            b1=0.9,
            b2=0.95,
        )
    )
    c.rollout = ml_collections.ConfigDict(
        dict(
            max_new_tokens=512,
            temperature=1.0,
            top_p=1.0,
            top_k=0,
            stop_strings=(),
            score_rows=0,  # rows per block of the scoring pass (0: the whole rollout at once)
            head_dtype="",  # the sampler's LM head: "" the model's dtype, or "bfloat16"
            # PPO's old log-probs: the sampler's ("sampler", no policy pass in scoring) or
            # "recompute" (needed with top_p / top_k or a bf16 sampler head)
            old_logp="sampler",
        )
    )
    c.data = ml_collections.ConfigDict(
        dict(
            dataset="gsm8k",
            split="train",
            prompts_per_batch=64,
            samples_per_prompt=4,
            max_prompt_len=256,
            step_separator="\n\n",
            accuracy_band=(),  # PRIME's filter: (low, high) of the sampled accuracy; () off
            filter_rounds=4,  # batches of prompts drawn at most per iteration to fill the band
            toy_seed=0,
            toy_train_size=20_000,
            toy_test_size=512,
            # Your own problems: a .jsonl / .parquet file or a directory of them: rl.data.user_files
            path="",
            question_field="question",
            answer_field="answer",
            id_field="",  # "": FILE/ROW
            allow_malformed=False,
        )
    )
    # The one logical-axis rule table (configs/sharding.py), handed to the library here.
    c.mesh = ml_collections.ConfigDict(dict(shape=(1, -1, 1), rules=sharding.RULES))
    c.train = ml_collections.ConfigDict(
        dict(
            iterations=500,
            checkpoint_every=10,
            keep_checkpoints=3,
            max_bad_updates=5,
            # Consecutive batches on which the verifier failed on every answer before stopping.
            max_failed_verifier_batches=3,
            # Greedy accuracy (and steps, repeats, length) on eval_limit problems of eval_split
            # every eval_every iterations, logged as eval/*; 0 turns it off (rl.evaluate does full
            # runs).
            eval_every=0,
            eval_split="test",
            eval_limit=256,
            log_samples=0,  # the first N responses of each iteration to samples/ITERATION.jsonl
        )
    )
    return c
