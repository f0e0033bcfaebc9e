"""SEAM data selection entry point (Lu et al. 2024, arXiv 2406.07971; ``rl.eval.seam``): score a
dataset's prompts with the policy and a reward, keep those where they agree, and write the kept
prompts as a data file that ``rl.train`` trains on through ``data.path``.

    python -m rl.seam --policy=DIR --reward=verifier --dataset=gsm8k --split=train --samples=8 \\
        --keep=0.5 --output=OUT
    python -m rl.train --config=configs/seam_filtered.py --workdir=RUN \\
        --config.data.path=OUT/kept.jsonl

DIR is an HF model directory or a project workdir (``rl.train --workdir``). ``--reward``:
``verifier`` (the answer's correctness), ``orm:DIR`` (an outcome reward model on the policy's
tokens: ``rl.train_rm``'s, or an HF directory with a scalar head) or ``prm:DIR`` (any PRM
``models.prm.load_prm`` reads, in its own tokens; ``--reward_format`` names a published format).
Exactly one of ``--keep=F`` (the lowest-SEAM fraction F; ``--mode=high``: the highest) and
``--band=LO,HI``. Re-running the same command resumes: finished chunks are kept, the rest scored
(``rl.eval.seam_stage``); flags that change the scores must match the directory's ``seam.json``,
while the selection may change freely (it is redone from the saved scores). Outputs:
``rl.eval.seam_outputs``.
"""

import json
import math
from pathlib import Path

import jax.numpy as jnp
from absl import app, flags, logging
from flax import nnx
from ml_collections import config_flags

from models import hf_io, reward_io
from models.heads import RewardHead
from models.prm import PRMFormatError, load_prm
from models.prm_formats import FORMATS
from models.sharding import make_mesh
from rewards.verify import Verifier
from rl import data as data_lib
from rl.config import ConfigError, DataConfig, MeshConfig
from rl.data import prompts as prompts_lib
from rl.eval.policy_loading import (
    RUN_CONFIG_FILE,
    checkpoint_steps,
    is_hf_dir,
    load_policy,
    load_policy_tokenizer,
)
from rl.eval.problems import default_step_separator
from rl.eval.seam import METHODS, MODES
from rl.eval.seam_outputs import Selection, write_outputs
from rl.eval.seam_stage import (
    SeamSettings,
    SeamStageError,
    check_manifest,
    examples_sha256,
    load_records,
    missing_chunks,
    score_chunks,
    tokenizer_sha256,
)
from rl.runtime.distributed import maybe_initialize

_POLICY = flags.DEFINE_string(
    "policy", None, "HF model directory or project workdir.", required=True
)
_REWARD = flags.DEFINE_string("reward", "verifier", "verifier | orm:DIR | prm:DIR.")
_REWARD_FORMAT = flags.DEFINE_enum(
    "reward_format", "", ["", *FORMATS], "prm:DIR's format (models.prm; '' detects it)."
)
_DATASET = flags.DEFINE_enum(
    "dataset", None, ["gsm8k", "math", "math500", "toy"], "Dataset (default: a workdir's own)."
)
_SPLIT = flags.DEFINE_string("split", "train", "Split scored.")
_LIMIT = flags.DEFINE_integer("limit", 0, "Score the first N prompts only (0: all).")
_SAMPLES = flags.DEFINE_integer("samples", 8, "Responses sampled per prompt (>= 2).")
_KEEP = flags.DEFINE_float("keep", None, "Keep this fraction of prompts (lowest SEAM).")
_BAND = flags.DEFINE_string("band", None, "LO,HI: keep the prompts whose SEAM is in [LO, HI].")
_MODE = flags.DEFINE_enum("mode", "low", list(MODES), "--keep: the lowest or highest SEAM.")
_UNDEFINED = flags.DEFINE_string("undefined", "0.5", "An undefined SEAM counts as this, or 'drop'.")
_MAX_NEW_TOKENS = flags.DEFINE_integer("max_new_tokens", 512, "Response length limit.")
_TEMPERATURE = flags.DEFINE_float("temperature", 1.0, "Sampling temperature.")
_TOP_P = flags.DEFINE_float("top_p", 1.0, "Sampling top-p.")
_BATCH_SIZE = flags.DEFINE_integer("batch_size", 16, "Prompts per sampler call and saved chunk.")
_MAX_PROMPT_LEN = flags.DEFINE_integer("max_prompt_len", 0, "Prompt bucket (0: longest, rounded).")
_AGGREGATION = flags.DEFINE_enum(
    "prm_aggregation", "min", ["min", "last", "product"], "PRM step scores -> one reward."
)
_LENGTH_NORMALIZE = flags.DEFINE_bool("length_normalize", True, "Mean (not summed) log-likelihood.")
_METHOD = flags.DEFINE_enum("method", "pairs", list(METHODS), "SEAM's rank disagreement.")
_SEPARATOR = flags.DEFINE_string("step_separator", None, "Step separator (default: dataset's).")
_SEED = flags.DEFINE_integer("seed", 0, "Sampling seed.")
_STEP = flags.DEFINE_integer("step", None, "Workdir checkpoint step (default: latest).")
_OUTPUT = flags.DEFINE_string("output", None, "Output directory (resumable).", required=True)
_TOKENIZER = flags.DEFINE_string("tokenizer", "", "Tokenizer directory (default: the policy's).")
_DTYPE = flags.DEFINE_enum("dtype", "float32", ["float32", "bfloat16"], "Models' dtype.")
_MESH = flags.DEFINE_string("mesh", "1,-1,1", "Mesh shape (data, fsdp, tensor).")
_SHARDING = config_flags.DEFINE_config_file(
    "sharding", "configs/sharding.py", "Mesh rule table (a config file with `rules`)."
)
_DATA_DIR = flags.DEFINE_string("data_dir", None, "TFDS build cache (default: rl.data.paths).")
_TOY_SEED = flags.DEFINE_integer("toy_seed", None, "Toy task seed (default: a workdir's, else 0).")
_TOY_TRAIN = flags.DEFINE_integer("toy_train_size", None, "Toy train size (default: as seed).")
_TOY_TEST = flags.DEFINE_integer("toy_test_size", None, "Toy test size (default: as seed).")
_WORKERS = flags.DEFINE_integer("verifier_workers", 2, "Verifier processes.")


def _fail(message: str) -> None:
    raise SystemExit(f"error: {message}")


def _selection(num_examples: int) -> Selection:
    band = None
    if _BAND.value is not None:
        try:
            lo, hi = (float(x) for x in _BAND.value.split(","))
        except ValueError:
            _fail(f"--band={_BAND.value!r}: must be LO,HI (two numbers)")
        band = (lo, hi)
    undefined = None if _UNDEFINED.value == "drop" else float(_UNDEFINED.value)
    return Selection(_KEEP.value, band, _MODE.value, undefined).check(num_examples)


def _run_config() -> dict:
    path = Path(_POLICY.value)
    if is_hf_dir(path) or not (path / RUN_CONFIG_FILE).exists():
        return {}
    return json.loads((path / RUN_CONFIG_FILE).read_text())


def _rules(run_config: dict) -> tuple:
    """A workdir's own rule table (its config.json), else --sharding's (as rl.evaluate)."""
    saved = (run_config.get("mesh") or {}).get("rules")
    try:
        rules = MeshConfig(rules=saved or _SHARDING.value.rules)
        return rules.validate("mesh" if saved else "sharding").rules
    except ConfigError as e:
        _fail(str(e))


def _reward_model(tokenizer, mesh, rules):
    """None for the verifier; an ORM on the policy's tokens; a PRM (models.prm) in its own."""
    kind, _, path = _REWARD.value.partition(":")
    if kind == "verifier" and not path:
        return None
    if kind not in ("orm", "prm") or not path or not Path(path).is_dir():
        _fail(f"--reward={_REWARD.value!r}: must be verifier, orm:DIR or prm:DIR (a directory)")
    dtype = jnp.dtype(_DTYPE.value)
    if kind == "prm":
        try:
            return load_prm(path, _REWARD_FORMAT.value or None, dtype=dtype, mesh=mesh, rules=rules)
        except PRMFormatError as e:
            _fail(f"--reward={_REWARD.value!r}: {e}")
    if hf_io.load_tokenizer(path).get_vocab() != tokenizer.get_vocab():
        _fail(f"--reward={_REWARD.value!r}: an ORM must share the policy's tokenizer")
    if (Path(path) / reward_io.META_FILE).exists():
        model, info = reward_io.load_reward_model(path, dtype=dtype, mesh=mesh, rules=rules)
        if info["kind"] != "orm":
            _fail(f"--reward={_REWARD.value!r}: {path} is a {info['kind']}, not an ORM")
        return model
    return hf_io.load_causal_lm(path, dtype, mesh=mesh, rules=rules, head=RewardHead("scalar"))


def main(argv):
    del argv
    if not flags.FLAGS["verbosity"].present:
        logging.set_verbosity(logging.WARNING)
    maybe_initialize()
    run_config = _run_config()
    run_data = run_config.get("data", {})
    dataset = _DATASET.value or run_data.get("dataset")
    if dataset is None:
        _fail("--dataset is required for an HF model directory")
    if _SAMPLES.value < 2:
        _fail(f"--samples={_SAMPLES.value}: SEAM ranks a prompt's responses, it needs >= 2")
    # The toy task's seed and sizes: the flags, else a workdir's, else DataConfig's defaults.
    toy = {"toy_seed": _TOY_SEED, "toy_train_size": _TOY_TRAIN, "toy_test_size": _TOY_TEST}
    saved = {k: v for k, v in run_data.items() if k in toy}
    saved.update({k: f.value for k, f in toy.items() if f.value is not None})
    builder_kwargs = DataConfig(**{**saved, "dataset": dataset}).builder_kwargs()
    try:
        examples = data_lib.load(dataset, _SPLIT.value, data_dir=_DATA_DIR.value, **builder_kwargs)
        examples = examples[: _LIMIT.value] if _LIMIT.value else examples
        selection = _selection(len(examples))
        settings = _settings(dataset, builder_kwargs, run_data, examples)
        check_manifest(_OUTPUT.value, settings)
        if missing_chunks(_OUTPUT.value, settings):
            _score(settings, run_config, examples)
        summary = write_outputs(_OUTPUT.value, load_records(_OUTPUT.value, settings), selection)
    except (SeamStageError, data_lib.DataError) as e:
        _fail(str(e))
    print((Path(_OUTPUT.value) / "summary.md").read_text(), flush=True)
    print(f"kept {summary['kept']} of {summary['prompts']} prompts: {_OUTPUT.value}/kept.jsonl")


def _settings(dataset: str, builder_kwargs: dict, run_data: dict, examples) -> SeamSettings:
    """What the scores depend on, from the flags; the policy's tokenizer is read (no weights)."""
    tokenizer = load_policy_tokenizer(_POLICY.value, tokenizer=_TOKENIZER.value or None)
    system = prompts_lib.system_prompt_for(dataset)
    longest = max(prompts_lib.prompt_lengths(examples, tokenizer, system_prompt=system))
    steps = [] if is_hf_dir(_POLICY.value) else checkpoint_steps(_POLICY.value)
    separator = _SEPARATOR.value or run_data.get("step_separator")
    return SeamSettings(
        policy=str(Path(_POLICY.value).resolve()),
        step=_STEP.value if _STEP.value is not None else (steps[-1] if steps else None),
        tokenizer_sha256=tokenizer_sha256(tokenizer),
        reward=_REWARD.value,
        reward_format=_REWARD_FORMAT.value,
        dataset=dataset,
        split=_SPLIT.value,
        builder_kwargs=builder_kwargs,
        limit=_LIMIT.value,
        num_examples=len(examples),
        examples_sha256=examples_sha256(examples),
        samples=_SAMPLES.value,
        max_new_tokens=_MAX_NEW_TOKENS.value,
        temperature=_TEMPERATURE.value,
        top_p=_TOP_P.value,
        batch_size=_BATCH_SIZE.value,
        max_prompt_len=_MAX_PROMPT_LEN.value or 64 * math.ceil(longest / 64),
        seed=_SEED.value,
        prm_aggregation=_AGGREGATION.value,
        length_normalize=_LENGTH_NORMALIZE.value,
        method=_METHOD.value,
        step_separator=separator or default_step_separator(dataset),
    )


def _score(settings: SeamSettings, run_config: dict, examples) -> None:
    mesh = make_mesh(tuple(int(s) for s in _MESH.value.split(",")))
    rules = _rules(run_config)
    loaded = load_policy(
        _POLICY.value,
        tokenizer=_TOKENIZER.value or None,
        step=settings.step,
        dtype=jnp.dtype(_DTYPE.value),
        mesh=mesh,
        rules=rules,
    )
    reward_model = _reward_model(loaded.tokenizer, mesh, rules)
    graphdef, params = nnx.split(loaded.model)
    verifier = Verifier(num_workers=_WORKERS.value) if settings.reward == "verifier" else None
    try:
        score_chunks(
            graphdef,
            params,
            loaded.tokenizer,
            examples,
            settings,
            _OUTPUT.value,
            reward_model=reward_model,
            verifier=verifier,
            mesh=mesh,
            rules=rules,
            progress=True,
        )
    finally:
        if verifier is not None:
            verifier.close()


if __name__ == "__main__":
    app.run(main)
