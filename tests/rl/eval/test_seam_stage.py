"""The resumable SEAM stage on a tiny policy with an ORM head on its trunk: chunks saved as they
finish, a run that lost a chunk (killed before saving it) scores only that one and ends with the
scores of an uninterrupted run, and an output directory made with other settings is refused naming
the flag."""

import json

import jax
import numpy as np
import pytest
from flax import nnx

from rl.data.example import Example
from rl.data.toy_tokenizer import toy_tokenizer
from rl.eval import seam
from rl.eval.generation import generate
from rl.eval.problems import encode
from rl.eval.seam_stage import (
    SeamSettings,
    SeamStageError,
    check_manifest,
    chunk_path,
    examples_sha256,
    load_records,
    missing_chunks,
    score_chunks,
    tokenizer_sha256,
)
from rl.rollout.sampler import Sampler
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.tokenizer import stop_token_ids


def _settings(examples, tok, **changes) -> SeamSettings:
    values = dict(
        policy="/policy",
        step=None,
        tokenizer_sha256=tokenizer_sha256(tok),
        reward="orm:/orm",
        reward_format="",
        dataset="toy",
        split="test",
        builder_kwargs={"seed": 0, "train_size": 16, "test_size": 6},
        limit=0,
        num_examples=len(examples),
        examples_sha256=examples_sha256(examples),
        samples=4,
        max_new_tokens=8,
        temperature=1.0,
        top_p=1.0,
        batch_size=4,  # 6 prompts: chunks of 4 and 2
        max_prompt_len=64,
        seed=0,
        prm_aggregation="min",
        length_normalize=True,
        method="pairs",
        step_separator="\n",
    )
    return SeamSettings(**{**values, **changes})


def test_chunks_resume_to_the_uninterrupted_scores(tmp_path, toy_tok, policy, prm, toy_examples):
    """`prm` (a two-class head on the policy's trunk) serves as the ORM: any head scores."""
    settings = _settings(toy_examples, toy_tok)
    graphdef, params = nnx.split(policy)
    run = dict(reward_model=prm)
    check_manifest(tmp_path, settings)
    assert settings.num_chunks == 2 and missing_chunks(tmp_path, settings) == [0, 1]
    assert score_chunks(graphdef, params, toy_tok, toy_examples, settings, tmp_path, **run) == 2
    straight = load_records(tmp_path, settings)
    assert [r["id"] for r in straight] == [ex.id for ex in toy_examples]
    assert [r["index"] for r in straight] == list(range(6))
    defined = [r["seam"] for r in straight if r["seam"] is not None]
    assert defined and all(0 <= s <= 1 for s in defined)  # random responses, ORM scores differ
    assert all(r["correct_fraction"] is None and 1 <= r["responses_ranked"] <= 4 for r in straight)

    # Killed after chunk 0 was saved, during chunk 1 (its temporary file half written).
    first = chunk_path(tmp_path, 0).read_text()
    chunk_path(tmp_path, 1).unlink()
    chunk_path(tmp_path, 1).with_name("00001.jsonl.tmp").write_text('{"index": 4')
    check_manifest(tmp_path, settings)  # the same settings continue
    assert missing_chunks(tmp_path, settings) == [1]
    assert score_chunks(graphdef, params, toy_tok, toy_examples, settings, tmp_path, **run) == 1
    assert chunk_path(tmp_path, 0).read_text() == first
    assert load_records(tmp_path, settings) == straight
    assert score_chunks(graphdef, params, toy_tok, toy_examples, settings, tmp_path, **run) == 0
    # Each saved score is SEAM's formula over the prompt's distinct responses, sampled with the
    # chunk's own key: re-derived for chunk 1 from a fresh sampler.
    want = _rescored(settings, policy, prm, toy_examples, 1)
    assert [r["seam"] for r in straight[4:]] == pytest.approx(want, abs=1e-6)


def _rescored(settings, policy, orm, examples, chunk):
    """Chunk `chunk` sampled and scored again through rl.eval.seam's own functions, with the key
    the stage documents: fold_in(key(seed), chunk)."""
    c = settings.batch_size
    part = examples[chunk * c : (chunk + 1) * c]
    tok = toy_tokenizer()
    config = SamplerConfig(
        max_new_tokens=settings.max_new_tokens,
        eos_ids=stop_token_ids(tok),
        samples_per_prompt=settings.samples,
        pad_id=tok.pad_token_id,
    )
    prompts = encode(part, tok, "toy", settings.max_prompt_len)
    gens = generate(
        Sampler(nnx.graphdef(policy), config),
        nnx.state(policy),
        prompts.input_ids,
        prompts.attention_mask,
        tok,
        batch_size=c,
        key=jax.random.fold_in(jax.random.key(settings.seed), chunk),
    )
    result = seam.score_generations(
        gens, prompts, part, tok, dataset="toy", reward="orm", reward_model=orm, batch_size=c
    )
    return [None if np.isnan(x) else float(x) for x in result.scores]


def test_another_dataset_tokenizer_or_setting_is_refused_naming_its_flag(tmp_path, toy_tok):
    examples = [Example(f"toy/test/{i}", f"Q: {i}+1", str(i + 1)) for i in range(3)]
    settings = _settings(examples, toy_tok)
    check_manifest(tmp_path, settings)
    assert json.loads((tmp_path / "seam.json").read_text())["dataset"] == "toy"
    for changes, message in (
        (dict(dataset="gsm8k"), "--dataset='gsm8k': .* made with dataset='toy'"),
        (dict(tokenizer_sha256="0" * 64), "--policy='/policy': .* another tokenizer"),
        (dict(seed=1), "--seed=1: .* seed=0"),
        (dict(reward="verifier"), "--reward='verifier': .* reward='orm:/orm'"),
        (dict(limit=2, num_examples=2), "--limit=2: .* limit=0"),
    ):
        with pytest.raises(SeamStageError, match=message):
            check_manifest(tmp_path, _settings(examples, toy_tok, **changes))
