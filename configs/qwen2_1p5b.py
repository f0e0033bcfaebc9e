"""The paper's 1.5B setting: Qwen2-1.5B-Instruct trained with PPO on MATH, a 7B PRM in the reward.

    python -m rl.train --config=configs/qwen2_1p5b.py --workdir=gs://BUCKET/runs/qwen2_1p5b
    python -m rl.train --config=configs/qwen2_1p5b.py:v5e-64 --workdir=...   # another TPU slice
    python -m rl.train --config=configs/qwen2_1p5b.py --config.data.dataset=gsm8k --workdir=...
    python -m launch.aot --config=configs/qwen2_1p5b.py --topology=v4-64    # memory check on CPU

`arg` names the TPU slice (configs/topologies.py; default v4-32, 16 chips): it sets the mesh and the
microbatch count. The supported slices are `SUPPORTED` below.

Checkpoints are local Hugging Face directories (nothing is downloaded at run time). Fetch them once
on a machine with internet access and copy them to every host, e.g. through a bucket
(`gcloud storage rsync -r gs://BUCKET/models/NAME ~/models/NAME`):

    huggingface-cli download Qwen/Qwen2-1.5B-Instruct --local-dir ~/models/Qwen2-1.5B-Instruct
    huggingface-cli download Qwen/Qwen2.5-Math-7B-PRM800K \\
        --local-dir ~/models/Qwen2.5-Math-7B-PRM800K

Elsewhere: `--config.policy.path=DIR --config.prm.path=DIR`. `launch.aot` needs no weights: it
reads a checkpoint's config.json when the directory exists, else the shapes of `aot_presets`.

Gao et al. 2024 do not publish their PPO settings. The choices, and why:

* Data: MATH train (7,500 problems, shipped in rl/data/files); GSM8K with `data.dataset=gsm8k`.
  Steps are split at "\\n\\n", the instruct models' paragraph break. Prompts use the chat template
  and the boxed-answer instruction; max_prompt_len=512 holds 99.1% of MATH train prompts in the
  Qwen2 tokenizer (measured: median 77 tokens, p99 492, 70 of 7,500 longer; the trainer drops
  those, naming them in a warning). All GSM8K prompts fit.
* Rollout: 32 prompts x 4 samples = 128 responses per iteration (4 per prompt as in the issue). The
  batch is set by memory, not taste: rl/scoring.py runs policy, reference, critic and PRM over the
  whole rollout at once, and its fp32 logits of [rows, 1536, 152k] dominate. XLA:TPU refuses 16
  rows per chip on v4-32 (40 GiB of temporaries, launch.aot --backend=tpu); 8 rows per chip fit.
  Once scoring runs in row chunks, raise prompts_per_batch (and minibatches) for steadier updates.
  max_new_tokens=1024 covers the instruct models' MATH solutions with room for the repeated steps
  that PRM hacking produces (a truncated response cannot show them, and one that runs out has no
  boxed answer, so it scores 0). Temperature 1, no top-k/top-p: PPO's ratio uses the model's
  untempered log-probs, so the behaviour policy is the model itself.
* Reward: success 1 for a verified answer; PRM weight 1 with clip_delta(eta=0.5), the refinement
  the paper reports best. After Clip every step reward is <= 0 and Delta telescopes the PRM return
  from any step to one clipped score in [-0.5, 0], so a correct answer always nets >= 0.5: the PRM
  shapes the return but never outweighs the verifier. eta=0.5 is the decision boundary of a PRM
  that outputs P(step correct). KL to the reference 0.05 per token in the reward (k1): enough to
  hold a 1e-6 learning-rate policy near the instruct model over the run's 1,600 updates without
  masking the success signal (0.01-0.1 is the usual range for PPO on 1-7B models).
* PPO: gamma 1 (episodic task, one terminal reward: no discounting), GAE lambda 0.95 (lambda=1
  gives token-level advantages whose variance over ~1000 tokens swamps the fresh critic), clip 0.2,
  value clip 0.2, vf_coef 0.5, no entropy bonus (temperature-1 sampling explores; a bonus over a
  152k vocabulary mostly adds noise). One epoch of 2 minibatches of 64 responses: every sample is
  used once, so ratios stay near 1 at these learning rates, and each iteration makes 2 steps.
* Optimizer: AdamW, lr 1e-6 actor / 5e-6 critic (the critic starts from a zero value head and must
  catch up fast; the actor must move slowly), 10 warmup steps then constant, b2 0.95, global-norm
  clip 1, no weight decay (a short run from a tuned model).
* Models: policy and critic keep fp32 master weights (an update of relative size 1e-6 is below
  bf16's resolution of ~4e-3 and would round away) with bf16 compute and per-layer remat; the PRM
  is frozen, bf16 weights and compute. The PRM is Qwen2.5-Math-7B-PRM800K: a Qwen2.5-Math-7B
  backbone with a two-class step head (kind="two_class"), sharing the policies' tokenizer.
* Mesh: FSDP groups of 16 chips, data parallel across groups. 16-way FSDP already brings the
  resident state (fp32 policy, critic and Adam moments, fp32 reference, bf16 PRM: about 57 GB) to
  3.4 GiB per chip, and smaller groups keep the per-layer all-gathers short. The update's 64-row
  minibatch is sharded over (data, fsdp); a slice with more devices than that puts the rest on
  `tensor`. Microbatches give every device one 1,536-token row per microbatch (64 / (data x fsdp)).
* Iterations: 800 of 32 prompts, about 3.4 passes over MATH train (1,600 optimizer steps).
"""

import os

import ml_collections

from configs import common
from configs import topologies as topo

MODELS_DIR = os.path.expanduser("~/models")
PRM_DIR = "Qwen2.5-Math-7B-PRM800K"

SUPPORTED = (
    "v4-16",
    "v4-32",
    "v4-64",
    "v4-128",
    "v5e-16",
    "v5e-32",
    "v5e-64",
    "v5e-128",
    "v5p-16",
    "v5p-32",
    "v5p-64",
    "v5p-128",
)


def paper_config(
    *,
    policy_dir: str,
    policy_preset: str,
    topology: str,
    supported: tuple[str, ...],
    fsdp: int | None,
) -> ml_collections.ConfigDict:
    """The paper setting shared by the three paper configs (see this module's docstring).

    `fsdp`: devices per FSDP group (None: all devices); the rest of the slice is data parallel.
    """
    if topology not in supported:
        raise ValueError(
            f"topology {topology!r} is not supported by this config; use one of "
            f"{', '.join(supported)}"
        )
    c = common.rl_base()
    c.topology = topology  # read by launch.aot; RLConfig ignores top-level keys it does not own
    c.topologies = supported
    # Shapes for launch.aot when a checkpoint directory is absent (models/presets.py presets).
    c.aot_presets = ml_collections.ConfigDict(dict(policy=policy_preset, prm="qwen2_5_math_7b"))

    c.policy = common.model_section(
        path=os.path.join(MODELS_DIR, policy_dir),
        dtype="bfloat16",
        param_dtype="float32",
        remat=True,
    )
    c.prm = common.model_section(
        path=os.path.join(MODELS_DIR, PRM_DIR),
        # Qwen2ForProcessRewardModel: its chat template, steps joined by <extra_0>, P(class 1)
        # read at each <extra_0> (models.prm); scored in its own tokens, not the policy's.
        format="qwen_math_prm",
        kind="two_class",
        dtype="bfloat16",
        param_dtype="bfloat16",
    )

    c.data.dataset = "math"
    c.data.split = "train"
    c.data.prompts_per_batch = 32
    c.data.samples_per_prompt = 4
    c.data.max_prompt_len = 512
    c.data.step_separator = "\n\n"
    c.rollout.max_new_tokens = 1024
    c.rollout.temperature = 1.0
    c.rollout.top_p = 1.0
    c.rollout.top_k = 0

    c.reward.success_weight = 1.0
    c.reward.prm_weight = 1.0
    c.reward.prm_transform = "clip_delta"
    c.reward.prm_eta = 0.5
    c.reward.kl_coef = 0.05
    c.reward.kl_estimator = "k1"
    c.reward.kl_in = "reward"

    c.ppo.gamma = 1.0
    c.ppo.lam = 0.95
    c.ppo.clip_eps = 0.2
    c.ppo.value_clip = 0.2
    c.ppo.vf_coef = 0.5
    c.ppo.entropy_coef = 0.0
    c.ppo.epochs = 1
    c.ppo.minibatches = 2

    c.optim.learning_rate = 1e-6
    c.optim.critic_learning_rate = 5e-6
    c.optim.schedule = "constant"
    c.optim.warmup_steps = 10
    c.optim.max_grad_norm = 1.0
    c.optim.weight_decay = 0.0
    c.optim.b1 = 0.9
    c.optim.b2 = 0.95

    # The update's minibatch is sharded over (data, fsdp): on slices with more devices than rows,
    # the remainder goes to tensor parallelism.
    rows_per_update = c.data.prompts_per_batch * c.data.samples_per_prompt // c.ppo.minibatches
    tensor = max(1, topo.get(topology).devices // rows_per_update)
    c.mesh.shape = topo.mesh_shape(topology, fsdp=fsdp, tensor=tensor)
    data, group, _ = c.mesh.shape
    c.ppo.microbatches = max(1, rows_per_update // (data * group))

    c.train.iterations = 800  # 32 prompts per iteration: about 3.4 passes over MATH train
    c.train.checkpoint_every = 10
    c.train.keep_checkpoints = 3
    return c


def get_config(arg=None):
    return paper_config(
        policy_dir="Qwen2-1.5B-Instruct",
        policy_preset="qwen2_1_5b",
        topology=arg or "v4-32",
        supported=SUPPORTED,
        fsdp=16,
    )
