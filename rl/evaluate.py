"""Evaluation entry point: greedy accuracy, sampled pass@1 / maj@k, best-of-N with an ORM or PRM.

    python -m rl.evaluate --model=PATH --dataset=gsm8k --limit=200 --output=/tmp/eval.json
    python -m rl.evaluate --model=PATH --dataset=math500 --output=/tmp/eval.json --samples=8 \\
        --reward_model=PRM_DIR --reward_kind=prm --reward_head=two_class --best_of=8

PATH is an HF model directory (config.json + safetensors + tokenizer) or a project workdir
(``rl.train --workdir``; see ``rl.eval.evaluation.load_policy``). Writes FILE (JSON: ``accuracy``
(greedy), ``n``, sections "greedy", "sampled", "best_of"), FILE with suffix .md (the table, also
printed) and .records.jsonl (one line per response). The reward model must share the policy's
tokenizer.
"""

from pathlib import Path

from absl import app, flags

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
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS build cache (default: rl.data.paths).")
_WORKERS = flags.DEFINE_integer("verifier_workers", 2, "Verifier processes.")
_RECORDS = flags.DEFINE_bool("records", True, "Write FILE's .records.jsonl.")


def _reward_model(tokenizer, mesh, rules):
    import jax.numpy as jnp

    from models import hf_io
    from models.heads import RewardHead

    path = _REWARD_MODEL.value
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
    import jax
    import jax.numpy as jnp

    from configs import common
    from configs.sharding import RULES
    from models.sharding import make_mesh
    from rl import data as data_lib
    from rl.eval import evaluation
    from rl.runtime.distributed import maybe_initialize

    maybe_initialize()
    mesh = make_mesh(tuple(int(s) for s in _MESH.value.split(",")))
    loaded = evaluation.load_policy(
        _MODEL.value,
        tokenizer=_TOKENIZER.value or None,
        step=_STEP.value,
        dtype=jnp.dtype(_DTYPE.value),
        mesh=mesh,
        rules=RULES,
    )
    run_data = (loaded.run_config or {}).get("data", {})
    dataset = _DATASET.value or run_data.get("dataset")
    if dataset is None:
        raise SystemExit("error: --dataset is required for an HF model directory")
    toy = {**common.rl_base().data.to_dict(), **run_data}
    kwargs = (
        {
            "seed": toy["toy_seed"],
            "train_size": toy["toy_train_size"],
            "test_size": toy["toy_test_size"],
        }
        if dataset == "toy"
        else {}
    )
    examples = data_lib.load(dataset, _SPLIT.value, data_dir=_DATA_DIR.value, **kwargs)
    if _LIMIT.value:
        examples = examples[: _LIMIT.value]
    reward_model = _reward_model(loaded.tokenizer, mesh, RULES) if _REWARD_MODEL.value else None
    config = evaluation.EvalConfig(
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
    from flax import nnx

    graphdef, params = nnx.split(loaded.model)
    with evaluation.Evaluator(
        graphdef,
        loaded.tokenizer,
        config,
        reward_model=reward_model,
        reward_kind=_REWARD_KIND.value,
        mesh=mesh,
        rules=RULES,
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
        print(evaluation.write_outputs(summary, _OUTPUT.value, records=_RECORDS.value), flush=True)


if __name__ == "__main__":
    app.run(main)
