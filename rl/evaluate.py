"""Evaluation entry point: greedy accuracy, sampled pass@1 / maj@k, best-of-N with an ORM or PRM.

    python -m rl.evaluate --model=PATH --dataset=gsm8k --limit=200 --output=/tmp/eval.json
    python -m rl.evaluate --model=PATH --dataset=math500 --output=/tmp/eval.json --samples=8 \\
        --reward_model=PRM_DIR --reward_kind=prm --reward_head=two_class --best_of=8

PATH is an HF model directory (config.json + safetensors + tokenizer) or a project workdir
(``rl.train --workdir``; see ``rl.eval.policy_loading.load_policy``). Writes FILE (JSON:
``accuracy`` (greedy), ``n``, sections "greedy", "sampled", "best_of"), FILE with suffix .md (the
table, also printed) and .records.jsonl (one line per response). The reward model must share the
policy's tokenizer.

The mesh's logical-axis rule table is a workdir's own (its config.json's ``mesh.rules``, as the
trainer writes it), else ``--sharding``'s (default ``configs/sharding.py``, a path relative to the
repository root, where the command runs, as ``rl.train --config=configs/...`` does).
"""

import dataclasses
import json
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
from absl import app, flags
from flax import nnx
from ml_collections import config_flags

from models import hf_io
from models.heads import RewardHead
from models.prm import PRMFormatError, load_prm
from models.prm_formats import FORMATS
from models.sharding import make_mesh
from rl import data as data_lib
from rl.config import ConfigError, DataConfig, MeshConfig
from rl.eval.evaluator import EvalConfig, Evaluator
from rl.eval.outputs import write_outputs
from rl.eval.policy_loading import RUN_CONFIG_FILE, is_hf_dir, load_policy
from rl.runtime.distributed import maybe_initialize

_MODEL = flags.DEFINE_string("model", None, "HF model directory or project workdir.", required=True)
_OUTPUT = flags.DEFINE_string("output", None, "Output JSON file.", required=True)
_DATASET = flags.DEFINE_enum(
    "dataset", None, ["gsm8k", "math500", "toy"], "Dataset (default: a workdir's own)."
)
_SPLIT = flags.DEFINE_string("split", "test", "Split.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Evaluate the first N examples only (0: all).")
_SAMPLES = flags.DEFINE_integer("samples", 0, "k of sampled pass@1 and maj@k (0: greedy only).")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sampling top-p.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 512, "Response length limit.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Prompts per sampler call.")
_MAX_PROMPT_LEN = flags.DEFINE_integer("max_prompt_len", 0, "Prompt bucket (0: longest, rounded).")
_REWARD_MODEL = flags.DEFINE_string("reward_model", "", "HF reward model directory.")
_REWARD_KIND = flags.DEFINE_enum("reward_kind", "orm", ["orm", "prm"], "How it scores.")
_REWARD_FORMAT = flags.DEFINE_enum(
    "reward_format",
    "",
    ["", *FORMATS],
    "A published PRM's format (models.prm: qwen_math_prm, math_shepherd, rlhflow, value_head): it "
    "scores in its own tokenizer and template; '' reads the reward model on the policy's tokens.",
)
_REWARD_HEAD = flags.DEFINE_enum(
    "reward_head",
    "scalar",
    ["scalar", "two_class", "token_prob"],
    "Its head convention (models.heads).",
)
_GOOD_TOKEN = flags.DEFINE_string("good_token", "", "token_prob: the 'good' token.")
_BAD_TOKEN = flags.DEFINE_string("bad_token", "", "token_prob: the 'bad' token.")
_AGGREGATION = flags.DEFINE_enum(
    "prm_aggregation", "min", ["min", "last", "product"], "PRM step scores → one score."
)
_BEST_OF = flags.DEFINE_integer("best_of", 0, "N of best-of-N (needs --reward_model).")
_SEPARATOR = flags.DEFINE_string("step_separator", None, "Step separator (default: dataset's).")
_STOP = flags.DEFINE_multi_string("stop_string", [], "Stop string(s), besides EOS (repeatable).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_TOKENIZER = flags.DEFINE_string("tokenizer", "", "Tokenizer directory (default: the model's).")
_STEP = flags.DEFINE_integer("step", None, "Workdir checkpoint step (default: latest).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "HF models' dtype.")
_MESH = flags.DEFINE_string("mesh", "1,-1,1", "Mesh shape (data, fsdp, tensor).")
_SHARDING = config_flags.DEFINE_config_file(
    "sharding",
    "configs/sharding.py",
    "Mesh rule table: a config file whose get_config() has `rules` (default: the project's one "
    "table).",
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS build cache (default: rl.data.paths).")
_WORKERS = flags.DEFINE_integer("verifier_workers", 2, "Verifier processes.")
_RECORDS = flags.DEFINE_bool("records", True, "Write FILE's .records.jsonl.")


def _rules() -> tuple:
    """The logical-axis rule table: a project workdir's own (the ``mesh.rules`` of its config.json:
    the table its policy was trained under), else ``--sharding``'s. Read before the policy is
    loaded, since loading places the parameters by it; the flag's file is read only when used."""
    path, saved = Path(_MODEL.value), None
    if not is_hf_dir(path) and (path / RUN_CONFIG_FILE).exists():
        saved = (json.loads((path / RUN_CONFIG_FILE).read_text()).get("mesh") or {}).get("rules")
    try:
        # MeshConfig turns JSON's lists into tuples (rule tables stay hashable) and checks them.
        rules = MeshConfig(rules=saved or _SHARDING.value.rules)
        return rules.validate("mesh" if saved else "sharding").rules
    except ConfigError as e:
        raise SystemExit(f"error: {e}") from None


def _builder_kwargs(dataset: str, run_data: dict[str, Any]) -> dict[str, Any]:
    """The dataset builder's arguments (the toy task's seed and sizes): a workdir's saved ``data``
    section where it has them, DataConfig's defaults where not."""
    fields = {f.name for f in dataclasses.fields(DataConfig)}
    saved = {k: v for k, v in run_data.items() if k in fields}
    return DataConfig(**{**saved, "dataset": dataset}).builder_kwargs()


def _reward_model(tokenizer, mesh, rules):
    path = _REWARD_MODEL.value
    if _REWARD_FORMAT.value and _REWARD_FORMAT.value != "own":
        if _REWARD_KIND.value != "prm":
            raise SystemExit(
                f"error: --reward_format={_REWARD_FORMAT.value} needs --reward_kind=prm"
            )
        try:
            return load_prm(
                path,
                _REWARD_FORMAT.value,
                dtype=jnp.dtype(_DTYPE.value),
                mesh=mesh,
                rules=rules,
                key="reward_model",
            )
        except PRMFormatError as e:
            raise SystemExit(f"error: {e}") from None
    ids = [None, None]
    if _REWARD_HEAD.value == "token_prob":
        ids = [
            tokenizer.convert_tokens_to_ids(t) if t else None
            for t in (_GOOD_TOKEN.value, _BAD_TOKEN.value)
        ]
    head = RewardHead(_REWARD_HEAD.value, *ids)
    if any((Path(path) / f).exists() for f in ("tokenizer.json", "tokenizer_config.json")):
        if hf_io.load_tokenizer(path).get_vocab() != tokenizer.get_vocab():
            raise SystemExit(
                f"error: --reward_model={path} has a different tokenizer than the "
                "policy; the reward model must share the policy's tokenizer"
            )
    return hf_io.load_causal_lm(path, jnp.dtype(_DTYPE.value), mesh=mesh, rules=rules, head=head)


def main(argv):
    del argv
    maybe_initialize()
    mesh = make_mesh(tuple(int(s) for s in _MESH.value.split(",")))
    rules = _rules()
    loaded = load_policy(
        _MODEL.value,
        tokenizer=_TOKENIZER.value or None,
        step=_STEP.value,
        dtype=jnp.dtype(_DTYPE.value),
        mesh=mesh,
        rules=rules,
    )
    run_data = (loaded.run_config or {}).get("data", {})
    dataset = _DATASET.value or run_data.get("dataset")
    if dataset is None:
        raise SystemExit("error: --dataset is required for an HF model directory")
    examples = data_lib.load(
        dataset, _SPLIT.value, data_dir=_DATA_DIR.value, **_builder_kwargs(dataset, run_data)
    )
    if _LIMIT.value:
        examples = examples[: _LIMIT.value]
    reward_model = _reward_model(loaded.tokenizer, mesh, rules) if _REWARD_MODEL.value else None
    config = EvalConfig(
        dataset=dataset,
        max_new_tokens=_MAX_NEW_TOKENS.value,
        batch_size=_BATCH_SIZE.value,
        samples=_SAMPLES.value,
        best_of=_BEST_OF.value,
        temperature=_TEMPERATURE.value,
        top_p=_TOP_P.value,
        prm_aggregation=_AGGREGATION.value,
        step_separator=_SEPARATOR.value,
        max_prompt_len=_MAX_PROMPT_LEN.value or None,
        stop_strings=tuple(_STOP.value),
        seed=_SEED.value,
    )
    graphdef, params = nnx.split(loaded.model)
    with Evaluator(
        graphdef,
        loaded.tokenizer,
        config,
        reward_model=reward_model,
        reward_kind=_REWARD_KIND.value,
        mesh=mesh,
        rules=rules,
        verifier_workers=_WORKERS.value,
    ) as evaluator:
        summary = evaluator.evaluate(params, examples, progress=True)
    summary["model"] = _MODEL.value
    summary["split"] = _SPLIT.value
    if loaded.step is not None:
        summary["step"] = loaded.step
    if _REWARD_MODEL.value:
        summary["reward_model"] = _REWARD_MODEL.value
    if jax.process_index() == 0:
        print(write_outputs(summary, _OUTPUT.value, records=_RECORDS.value), flush=True)


if __name__ == "__main__":
    app.run(main)
