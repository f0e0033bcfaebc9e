"""SEAM data selection as a resumable stage (``python -m rl.seam``): a dataset's prompts scored
chunk by chunk into an output directory, each finished chunk saved at once, so a killed run
continues at the first chunk it had not saved.

    OUT/seam.json           the settings the scores depend on (``SeamSettings``)
    OUT/chunks/00000.jsonl  one line per prompt of chunk 0: id, question, answer, SEAM, ...

Why chunks: scoring samples N responses per prompt and runs the reward on each, minutes to hours on
a real dataset; a chunk is one sampler batch, the unit of work that finishes or does not. Chunk c
samples with ``fold_in(key(seed), c)``, so a resumed run's scores are the ones an uninterrupted run
would have written. A chunk file is written to a temporary name and renamed: it is there whole or
not at all.

Why the manifest: scores from another policy, tokenizer, reward, dataset or sampling setting are
other scores; continuing into a directory made with any of them would mix two selections silently.
``check_manifest`` refuses, naming the flag that differs. What is kept (``--keep`` / ``--band``) is
not part of it: the selection is redone from the saved scores on every run, which is cheap, so the
filter can be changed without rescoring (``rl.eval.seam_outputs``).

Letters: E prompts, C prompts per chunk (the sampler batch), N samples per prompt.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import math
import os
import pathlib
import sys
from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from tqdm import tqdm

from models.prm import ProcessRewardModel
from rewards.verify import Verifier
from rl.data.example import Example
from rl.data.user_files import SEAM_MANIFEST
from rl.eval.generation import generate
from rl.eval.problems import encode
from rl.eval.reward_scoring import RewardScorer
from rl.eval.seam import REWARDS, score_generations
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.tokenizer import stop_token_ids

CHUNKS = "chunks"


class SeamStageError(ValueError):
    """Bad input to the stage; the message names the command-line flag and its value."""


@dataclasses.dataclass(frozen=True)
class SeamSettings:
    """Everything the scores depend on; ``FLAGS`` maps each field to the flag that sets it."""

    policy: str
    step: int | None  # a workdir's checkpoint step (None: an HF directory)
    tokenizer_sha256: str
    reward: str  # verifier | orm:DIR | prm:DIR
    reward_format: str
    dataset: str
    split: str
    builder_kwargs: dict
    limit: int  # the first N prompts (0: all)
    num_examples: int
    examples_sha256: str  # of the ids, in order (dataset, split, limit)
    samples: int
    max_new_tokens: int
    temperature: float
    top_p: float
    batch_size: int  # prompts per chunk and sampler call
    max_prompt_len: int
    seed: int
    prm_aggregation: str
    length_normalize: bool
    method: str
    step_separator: str

    @property
    def reward_kind(self) -> str:
        return self.reward.split(":", 1)[0]

    @property
    def num_chunks(self) -> int:
        return math.ceil(self.num_examples / self.batch_size)

    def to_json(self) -> str:
        return json.dumps(dataclasses.asdict(self), indent=2, sort_keys=True)


FLAGS = {
    "policy": "policy",
    "step": "step",
    "tokenizer_sha256": "policy",
    "reward": "reward",
    "reward_format": "reward_format",
    "dataset": "dataset",
    "split": "split",
    "builder_kwargs": "dataset",
    "limit": "limit",
    "num_examples": "limit",
    "examples_sha256": "limit",
    "samples": "samples",
    "max_new_tokens": "max_new_tokens",
    "temperature": "temperature",
    "top_p": "top_p",
    "batch_size": "batch_size",
    "max_prompt_len": "max_prompt_len",
    "seed": "seed",
    "prm_aggregation": "prm_aggregation",
    "length_normalize": "length_normalize",
    "method": "method",
    "step_separator": "step_separator",
}


def tokenizer_sha256(tokenizer: Any) -> str:
    """A fingerprint of what a tokenizer turns prompts into: its vocabulary and chat template."""
    vocab = sorted(tokenizer.get_vocab().items())
    template = getattr(tokenizer, "chat_template", None) or ""
    return hashlib.sha256(json.dumps([vocab, template]).encode()).hexdigest()


def examples_sha256(examples: Sequence[Example]) -> str:
    digest = hashlib.sha256()
    for ex in examples:
        digest.update(ex.id.encode() + b"\0")
    return digest.hexdigest()


def check_manifest(out_dir: str | os.PathLike, settings: SeamSettings) -> None:
    """Writes ``seam.json`` into a new output directory; in an existing one, ``SeamStageError``
    naming the first flag whose setting differs from the one the directory was scored with."""
    out = pathlib.Path(out_dir)
    path = out / SEAM_MANIFEST
    current = json.loads(settings.to_json())
    if path.exists():
        saved = json.loads(path.read_text())
        for field, flag in FLAGS.items():
            was, now = saved.get(field), current[field]
            if was == now:
                continue
            fix = "score into a new --output, or repeat that run's flags to continue it"
            if field == "tokenizer_sha256":
                raise SeamStageError(
                    f"--policy={settings.policy!r}: {out} holds SEAM scores made with another "
                    f"tokenizer (vocabulary and chat template sha256 {str(was)[:12]}..., this "
                    f"policy's {now[:12]}...); {fix}"
                )
            raise SeamStageError(
                f"--{flag}={current.get(flag, now)!r}: {out} holds SEAM scores made with "
                f"{field}={was!r} (now {now!r}); {fix}"
            )
        return
    out.mkdir(parents=True, exist_ok=True)
    _write_atomic(path, settings.to_json() + "\n")


def chunk_path(out_dir: str | os.PathLike, chunk: int) -> pathlib.Path:
    return pathlib.Path(out_dir) / CHUNKS / f"{chunk:05d}.jsonl"


def missing_chunks(out_dir: str | os.PathLike, settings: SeamSettings) -> list[int]:
    return [c for c in range(settings.num_chunks) if not chunk_path(out_dir, c).exists()]


def load_records(out_dir: str | os.PathLike, settings: SeamSettings) -> list[dict[str, Any]]:
    """Every prompt's record, in dataset order (all chunks must be there)."""
    records = []
    for c in range(settings.num_chunks):
        text = chunk_path(out_dir, c).read_text()
        records += [json.loads(line) for line in text.splitlines() if line.strip()]
    if len(records) != settings.num_examples:
        raise SeamStageError(
            f"--output={os.fspath(out_dir)!r}: {len(records)} scored prompts in {CHUNKS}/, "
            f"expected {settings.num_examples}; delete the directory and score again"
        )
    return records


def _nan_none(x: float) -> float | None:
    return None if not math.isfinite(x) else float(x)


def chunk_records(examples: Sequence[Example], result: Any, start: int) -> list[dict[str, Any]]:
    """One JSON-able record per prompt of a scored chunk (``rl.eval.seam.SeamResult``)."""
    out = []
    for e, ex in enumerate(examples):
        valid = result.distinct[e] & np.isfinite(result.rewards[e])
        rewards = result.rewards[e][valid]
        correct = None if result.correct is None else float(np.mean(result.correct[e]))
        out.append(
            {
                "index": start + e,
                "id": ex.id,
                "question": ex.question,
                "answer": ex.answer,
                "solution": ex.solution,
                "seam": _nan_none(float(result.scores[e])),
                "responses_ranked": int(valid.sum()),
                "reward_mean": _nan_none(float(np.mean(rewards))) if rewards.size else None,
                "loglik_mean": float(np.mean(result.loglik[e])),
                "correct_fraction": correct,
            }
        )
    return out


def score_chunks(
    graphdef: Any,
    params: Any,
    tokenizer: Any,
    examples: Sequence[Example],
    settings: SeamSettings,
    out_dir: str | os.PathLike,
    *,
    reward_model: Any = None,
    verifier: Verifier | None = None,
    mesh=None,
    rules=None,
    progress: bool = False,
) -> int:
    """Scores the chunks ``out_dir`` does not hold yet and saves each as it finishes; returns how
    many it scored. ``reward_model``: None for the verifier, a ``RewardModel`` (or graphdef and
    state) on the policy's tokens, or a ``models.prm.ProcessRewardModel``."""
    if settings.reward_kind not in REWARDS:
        raise SeamStageError(f"--reward={settings.reward!r}: must be verifier, orm:DIR or prm:DIR")
    todo = missing_chunks(out_dir, settings)
    if not todo:
        return 0
    sampler = Sampler(
        graphdef,
        SamplerConfig(
            max_new_tokens=settings.max_new_tokens,
            temperature=settings.temperature,
            top_p=settings.top_p,
            eos_ids=stop_token_ids(tokenizer),
            samples_per_prompt=settings.samples,
            pad_id=tokenizer.pad_token_id or 0,
        ),
        mesh=mesh,
        rules=rules,
        tokenizer=tokenizer,
    )
    scorer = reward_model
    if reward_model is not None and not isinstance(reward_model, ProcessRewardModel):
        rows = settings.batch_size * settings.samples
        scorer = RewardScorer(reward_model, chunk_rows=rows, mesh=mesh, rules=rules)
    c_size, e = settings.batch_size, settings.num_examples
    done = sum(min(c_size, e - c * c_size) for c in range(settings.num_chunks) if c not in todo)
    bar = tqdm(
        total=e,
        initial=done,
        desc=f"SEAM x{settings.samples}",
        unit="prompt",
        file=sys.stderr,
        disable=not progress,
        dynamic_ncols=True,
    )
    with bar:
        for c in todo:
            part = list(examples[c * c_size : (c + 1) * c_size])
            prompts = encode(part, tokenizer, settings.dataset, settings.max_prompt_len)
            gens = generate(
                sampler,
                params,
                prompts.input_ids,
                prompts.attention_mask,
                tokenizer,
                batch_size=c_size,
                key=jax.random.fold_in(jax.random.key(settings.seed), c),
            )
            result = score_generations(
                gens,
                prompts,
                part,
                tokenizer,
                dataset=settings.dataset,
                reward=settings.reward_kind,
                reward_model=scorer,
                prm_aggregation=settings.prm_aggregation,
                length_normalize=settings.length_normalize,
                method=settings.method,
                step_separator=settings.step_separator,
                batch_size=c_size,
                mesh=mesh,
                rules=rules,
                verifier=verifier,
            )
            records = chunk_records(part, result, c * c_size)
            lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in records)
            _write_atomic(chunk_path(out_dir, c), lines)
            bar.update(len(part))
    return len(todo)


def _write_atomic(path: pathlib.Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(path.name + ".tmp")
    tmp.write_text(text)
    os.replace(tmp, path)
