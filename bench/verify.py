"""Throughput of the success reward on the shipped GSM8K and MATH500 reference solutions.

    python bench/verify.py [--workers 2] [--repeats 3]

Prints one JSON object. Per dataset, the checks are each reference solution against its own answer
and against the next problem's answer (half correct, half not, like a policy's mixed batch);
``in_process_checks_per_s`` is ``is_correct`` in this process, ``pool_checks_per_s`` is a warm
``Verifier`` with ``--workers`` processes (median of ``--repeats`` batches).
``pool_start_s`` is the time from creating the pool to its first graded batch.
"""

import argparse
import json
import pathlib
import sys
import time

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

from rewards.verify import Verifier, is_correct  # noqa: E402

DATA = pathlib.Path(__file__).resolve().parents[1] / "rl" / "data" / "files"


def _pairs(solutions: list[str], answers: list[str]) -> tuple[list[str], list[str]]:
    shifted = answers[1:] + answers[:1]
    return solutions + solutions, answers + shifted


def _load() -> dict[str, tuple[list[str], list[str]]]:
    def rows(name):
        with (DATA / name / "test.jsonl").open() as f:
            return [json.loads(line) for line in f]

    gsm8k, math500 = rows("gsm8k"), rows("math500")
    return {
        "gsm8k": _pairs(
            [r["answer"] for r in gsm8k], [r["answer"].split("####")[-1].strip() for r in gsm8k]
        ),
        "math500": _pairs([r["solution"] for r in math500], [r["answer"] for r in math500]),
    }


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--workers", type=int, default=2)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    datasets = _load()

    result = {"workers": args.workers}
    start = time.perf_counter()
    with Verifier(num_workers=args.workers) as pool:
        pool.check_batch(["\\boxed{1}"] * args.workers, ["1"] * args.workers)
        result["pool_start_s"] = time.perf_counter() - start
        for name, (responses, answers) in datasets.items():
            t0 = time.perf_counter()
            for response, answer in zip(responses, answers, strict=True):
                is_correct(response, answer)
            in_process_s = time.perf_counter() - t0
            pool_times = []
            for _ in range(args.repeats):
                t0 = time.perf_counter()
                batch = pool.check_batch(responses, answers)
                pool_times.append(time.perf_counter() - t0)
            pool_s = sorted(pool_times)[len(pool_times) // 2]
            result[name] = {
                "checks": len(responses),
                "accuracy": sum(batch.correct) / len(responses),
                "timeouts": batch.num_timeouts,
                "in_process_checks_per_s": len(responses) / in_process_s,
                "pool_checks_per_s": len(responses) / pool_s,
            }
    print(json.dumps(result))


if __name__ == "__main__":
    main()
