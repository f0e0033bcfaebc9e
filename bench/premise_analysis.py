"""Why the embedded default's reward models fail the premise check, on a finished workdir.

    python bench/premise_analysis.py --workdir=runs/toy          # after `python -m rl.reproduce`

Draws the premise stage's samples again (``Pipeline.premise_samples``: the same seed, sampler and
problems, so the same 16 samples per held-out problem, verified and scored with the workdir's ORM
and PRM) and prints JSON:
  * ``within_problem_auc``: per reward model, the probability that a correct sample of a problem
    outscores a wrong sample of the same problem (ties count half), averaged over problems with
    both. Best-of-N needs this; a pooled AUC mostly measures which problems are hard.
    ``pooled_auc`` is the same over all samples at once, for comparison.
  * ``prm_min_picks``: how the PRM-min pick's line count compares with a correct solution's of its
    problem (shorter / same / longer), against a random sample's chance of being shorter.
  * ``likelihood_selectors``: within-problem AUC and best-of-N accuracy (among answered samples,
    as the premise picks) of scores that need no reward model: the initial policy's own summed,
    mean and minimum token log-probability of each sample (the sampler's untempered log-probs),
    and, when the workdir has one, the implicit PRM's outcome reward (beta x its summed log-ratio
    to the policy). They show
    whether the policy's samples carry a usable ranking signal at all, and whether reward-model
    training keeps it.
  * ``labels_by_position``: from ``labels.json``, per step position, the share of labelled
    prefixes still on track by the task's exact oracle (``rl.data.toy_oracle``) and the hard
    label's positive rate among on-track and off-track prefixes.
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import jax
import numpy as np
from flax import nnx

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from configs import toy as toy_config  # noqa: E402
from models import hf_io  # noqa: E402
from models.reward_io import META_FILE, load_reward_model  # noqa: E402
from rl.data import toy, toy_oracle  # noqa: E402
from rl.eval.metrics import aggregate_prm, best_of_index  # noqa: E402
from rl.eval.premise import premise_summary  # noqa: E402
from rl.eval.problems import encode  # noqa: E402
from rl.experiments.toy_pipeline import Pipeline  # noqa: E402
from rl.reward_models.modeling import sequence_logp  # noqa: E402


def within_problem_auc(correct_ExN: np.ndarray, scores_ExN: np.ndarray) -> float:
    """Mean over problems with a correct and a wrong sample of P(correct outscores wrong); NaN
    scores rank lowest."""
    aucs = []
    for y, s in zip(correct_ExN, np.nan_to_num(scores_ExN, nan=-np.inf), strict=True):
        if 0 < y.sum() < y.size:
            diff = s[y][:, None] - s[~y][None, :]
            aucs.append(float(np.mean((diff > 0) + 0.5 * (diff == 0))))
    return float(np.mean(aucs)) if aucs else float("nan")


def labels_by_position(rows: list[dict]) -> list[dict]:
    by: dict[int, list[tuple[bool, bool]]] = {}
    for r in rows:
        problem = toy.parse_question(r["question"])
        for k in range(len(r["steps"])):
            on = toy_oracle.on_track(problem, r["steps"][: k + 1])
            by.setdefault(k + 1, []).append((on, r["labels"][k] > 0))
    out = []
    for pos in sorted(by):
        a = np.asarray(by[pos], bool)
        on, label = a[:, 0], a[:, 1]
        out.append(
            {
                "position": pos,
                "prefixes": int(a.shape[0]),
                "on_track": float(on.mean()),
                "label_1_on_track": float(label[on].mean()) if on.any() else None,
                "label_1_off_track": float(label[~on].mean()) if (~on).any() else None,
            }
        )
    return out


def response_logp(model, pipeline: Pipeline, gens, rows_per_call: int = 128) -> np.ndarray:
    """``model``'s log-probability of every sampled response token ([M, R], 0 off the response),
    scoring each sample after its left-padded prompt."""
    graphdef, state = nnx.split(model)
    prompts = encode(pipeline.test, pipeline.tokenizer, "toy")
    width = prompts.input_ids.shape[1]
    logp = jax.jit(lambda state, ids, mask: sequence_logp(nnx.merge(graphdef, state), ids, mask))
    n, out = gens.samples_per_prompt, []
    for begin in range(0, len(gens.texts), rows_per_call):
        rows = np.arange(begin, min(len(gens.texts), begin + rows_per_call))
        ids = np.concatenate([prompts.input_ids[rows // n], gens.tokens[rows]], axis=1)
        mask = np.concatenate([prompts.attention_mask[rows // n], gens.response_mask[rows]], 1)
        out.append(np.asarray(logp(state, ids, mask))[:, width:])
    return np.where(gens.response_mask, np.concatenate(out), 0.0)


def likelihood_selectors(pipeline: Pipeline, samples, wd: pathlib.Path) -> dict:
    gens, correct = samples.gens, np.asarray(samples.correct_ExN, bool)
    e, n = correct.shape
    mask = gens.response_mask
    own = np.where(mask, gens.logp, 0.0)
    scores = {
        "policy_logp_sum": own.sum(1),
        "policy_logp_mean": own.sum(1) / np.maximum(mask.sum(1), 1),
        "policy_logp_min": np.where(mask, gens.logp, np.inf).min(1),
    }
    implicit = wd / "reward_models" / "implicit_prm"
    if (implicit / META_FILE).exists():  # trained when a variant used it (configs/toy.py)
        pi, info = load_reward_model(implicit)
        reference = hf_io.load_causal_lm(wd / "sft" / "policy")
        ratio = response_logp(pi, pipeline, gens) - response_logp(reference, pipeline, gens)
        scores["implicit_prm_reward"] = info["beta"] * ratio.sum(1)
    out = {}
    for name, v in scores.items():
        v = v.reshape(e, n)
        summary = premise_summary(correct, samples.answers_ExN, samples.greedy_correct_E, v, None)
        out[name] = {
            "within_problem_auc": within_problem_auc(correct, v),
            "best_of_n": summary["best_of_n"]["orm"]["accuracy"],
            "maj@n": summary["maj@n"],
        }
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished rl.reproduce workdir")
    args = parser.parse_args()
    wd = pathlib.Path(args.workdir)
    pipeline = Pipeline(toy_config.get_config(), wd, show_progress=False)
    samples = pipeline.premise_samples(wd / "sft" / "policy")
    correct = np.asarray(samples.correct_ExN, bool)
    n = correct.shape[1]
    scores = {
        "orm": samples.orm_ExN,
        "prm": np.asarray(
            [[aggregate_prm(s, "min") for s in row] for row in samples.prm_steps_ExN]
        ),
    }
    texts = samples.gens.texts
    lines = np.asarray([len(t.strip().split("\n")) for t in texts]).reshape(-1, n)
    # A correct solution's line count per problem (its first correct sample) against the pick's.
    with_correct = [i for i in range(correct.shape[0]) if correct[i].any()]
    need = np.asarray([lines[i][correct[i]][0] for i in with_correct])
    picked = np.asarray([lines[i][best_of_index(scores["prm"][i])] for i in with_correct])
    random_shorter = [float(np.mean(lines[i] < m)) for i, m in zip(with_correct, need)]
    out = {
        "problems": int(correct.shape[0]),
        "samples": n,
        "mean_sample_accuracy": float(correct.mean()),
        "within_problem_auc": {kind: within_problem_auc(correct, s) for kind, s in scores.items()},
        # Pooled over problems (every correct sample against every wrong one), for comparison.
        "pooled_auc": {
            kind: within_problem_auc(correct.reshape(1, -1), s.reshape(1, -1))
            for kind, s in scores.items()
        },
        "prm_min_picks": {
            "problems_with_a_correct_sample": len(with_correct),
            "shorter_than_correct": float(np.mean(picked < need)),
            "same_length": float(np.mean(picked == need)),
            "longer": float(np.mean(picked > need)),
            "random_sample_shorter": float(np.mean(random_shorter)),
        },
        "likelihood_selectors": likelihood_selectors(pipeline, samples, wd),
        "labels_by_position": labels_by_position(
            json.loads((wd / "reward_models" / "labels.json").read_text())
        ),
    }
    print(json.dumps(out, indent=2))


if __name__ == "__main__":
    main()
