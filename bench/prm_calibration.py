"""How the embedded default's PRM scores good and bad steps, on its held-out labelled solutions.

    python bench/prm_calibration.py --workdir=runs/toy          # after `python -m rl.reproduce`

Prints JSON: the PRM's mean and quantiles (10/25/50/75/90%) of step scores for steps whose label is
1 or 0, for steps that are on / off track by the toy task's exact oracle (``rl.data.toy_oracle``),
and for final boxed lines against arithmetic lines. Clip needs good steps to score above eta, or it
charges them and PPO learns to write fewer lines (see the README's embedded-default results).
"""

from __future__ import annotations

import argparse
import json
import pathlib
import sys

import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from models import hf_io  # noqa: E402
from models.reward_io import load_reward_model  # noqa: E402
from rl.data import toy, toy_oracle  # noqa: E402
from rl.reward_models import data as reward_data  # noqa: E402
from rl.reward_models.inference import token_scores  # noqa: E402

QUANTILES = (0.1, 0.25, 0.5, 0.75, 0.9)


def summary(scores: np.ndarray) -> dict[str, float]:
    if scores.size == 0:
        return {"n": 0}
    return {
        "n": int(scores.size),
        "mean": float(scores.mean()),
        **{
            f"q{int(q * 100)}": float(v)
            for q, v in zip(QUANTILES, np.quantile(scores, QUANTILES), strict=True)
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--workdir", required=True, help="a finished rl.reproduce workdir")
    parser.add_argument("--max_response_len", type=int, default=112)  # rollout.max_new_tokens
    args = parser.parse_args()
    wd = pathlib.Path(args.workdir)
    tokenizer = hf_io.load_tokenizer(wd / "tokenizer")
    prm, _ = load_reward_model(wd / "reward_models" / "prm")
    rows = [
        reward_data.StepLabelled(**r)
        for r in json.loads((wd / "reward_models" / "labels.json").read_text())
    ]
    # The pipeline's own split: hard labels, 10% held out with the run's seed (0 by default).
    arrays = reward_data.encode(
        reward_data.hard_labels(rows),
        tokenizer,
        max_prompt_len=24,
        max_response_len=args.max_response_len,
        sep=toy.STEP_SEPARATOR,
    )
    _, held = reward_data.split_heldout(arrays, 0.1, seed=0)
    scores = token_scores(prm, held)[held.label_mask]
    labels = held.step_labels[held.label_mask] >= 0.5
    on_track, boxed = [], []
    for i in held.index:
        problem = toy.parse_question(rows[i].question)
        for k, step in enumerate(rows[i].steps):
            on_track.append(toy_oracle.on_track(problem, rows[i].steps[: k + 1]))
            boxed.append(toy.boxed_value(step) is not None)
    on_track, boxed = np.array(on_track), np.array(boxed)
    if len(on_track) != len(scores):
        raise SystemExit(
            f"{len(scores)} labelled step ends but {len(on_track)} steps: a solution "
            f"was truncated; raise --max_response_len={args.max_response_len}"
        )
    out = {
        "label_1": summary(scores[labels]),
        "label_0": summary(scores[~labels]),
        "on_track": summary(scores[on_track]),
        "off_track": summary(scores[~on_track]),
        "boxed_on_track": summary(scores[boxed & on_track]),
        "boxed_off_track": summary(scores[boxed & ~on_track]),
        "arithmetic_on_track": summary(scores[~boxed & on_track]),
        "arithmetic_off_track": summary(scores[~boxed & ~on_track]),
    }
    print(json.dumps(out, indent=1))


if __name__ == "__main__":
    main()
