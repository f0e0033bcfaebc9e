"""`models.prm` against each model card's usage code, run in PyTorch on the same tiny random
checkpoint written by transformers (`tests/models/prm_reference.py`); `own` against the layout its
reward models were trained on (`rl.reward_models.data.encode`). Then the API's edges: format
detection, every mismatch error, a tag inside a step, empty input, truncation, the calling
convention of `score_fn`, and the refusal of inputs longer than Mistral's sliding window."""

import json
import math
import shutil

import jax
import numpy as np
import pytest
import torch
import transformers
from flax import nnx

from models import presets
from models.config import ModelConfig
from models.decoder import CausalLM
from models.heads import RewardModel
from models.prm import PRMFormatError, detect_format, load_prm
from models.reward_io import save_reward_model
from rl.data.toy_tokenizer import toy_tokenizer
from rl.reward_models.data import StepLabelled
from rl.reward_models.data import encode as training_layout
from tests.models import prm_reference as ref
from tests.models.hf_reference import build

TOL = 1e-4  # fp32, max abs over step scores
QUESTIONS = [q for q, _ in ref.EXAMPLES]
STEPS = [s for _, s in ref.EXAMPLES]

PUBLISHED = {
    "qwen_math_prm": (ref.qwen_tokenizer, ref.write_qwen_math_prm, ref.card_qwen_math_prm),
    "math_shepherd": (
        ref.sentencepiece_like_tokenizer,
        ref.write_math_shepherd,
        ref.card_math_shepherd,
    ),
    "rlhflow": (ref.llama3_tokenizer, ref.write_rlhflow, ref.card_rlhflow),
    "value_head": (
        lambda: ref.qwen_tokenizer(tag=None, bos="<|endoftext|>"),
        ref.write_skywork,
        ref.card_skywork,
    ),
}


@pytest.fixture(scope="module")
def published(tmp_path_factory):
    """format → (checkpoint dir, the PyTorch model, its tokenizer, the card's scoring function)."""
    out = {}
    for fmt, (make_tokenizer, write, card) in PUBLISHED.items():
        path = tmp_path_factory.mktemp(fmt)
        tokenizer = make_tokenizer()
        out[fmt] = (path, write(path, tokenizer), tokenizer, card)
    return out


@pytest.fixture(scope="module")
def prms(published):
    return {fmt: load_prm(path, fmt) for fmt, (path, *_) in published.items()}


def _own_checkpoint(path, tokenizer, system_prompt, seed=0):
    """A PRM as the reward-model trainer saves one: sigmoid scalar head with a bias."""
    config = ModelConfig.from_dict(
        presets.tiny(
            vocab_size=len(tokenizer) + 3,
            hidden_size=32,
            intermediate_size=64,
            num_layers=2,
            eos_token_id=tokenizer.eos_token_id,
            pad_token_id=tokenizer.pad_token_id,
            bos_token_id=None,
        ).to_dict()
    )
    model = build(
        lambda: RewardModel(
            config, "scalar", rngs=nnx.Rngs(seed), sigmoid=True, head_bias=True, mlp_head=False
        )
    )
    out = model.score.out
    out.kernel[...] = jax.random.normal(jax.random.key(seed), out.kernel.shape)
    meta = {"step_separator": "\n"} | ({"system_prompt": system_prompt} if system_prompt else {})
    save_reward_model(model, path, kind="prm", tokenizer=tokenizer, **meta)


def _training_layout_scores(path, tokenizer, question, steps, system_prompt):
    """The trainer's row for (question, steps) (`rl.reward_models.data.encode`), scored by
    transformers' Qwen2ForTokenClassification loaded from the saved checkpoint, sigmoid at the
    marked step ends."""
    arrays = training_layout(
        [StepLabelled(question, steps, [1.0] * len(steps))],
        tokenizer,
        max_prompt_len=256,
        max_response_len=256,
        sep="\n",
        system_prompt=system_prompt,
    )
    real = arrays.attention_mask[0]
    ids = torch.tensor(arrays.tokens[0][real][None], dtype=torch.long)
    model = transformers.AutoModelForTokenClassification.from_pretrained(path).eval()
    with torch.no_grad():
        values = torch.sigmoid(model(ids).logits[0, :, 0]).numpy()
    return values[arrays.step_end[0][real]]


@pytest.mark.parametrize("fmt", list(PUBLISHED))
def test_scores_match_the_model_cards_usage_code(published, prms, fmt):
    _, torch_model, tokenizer, card = published[fmt]
    ours = prms[fmt].score_steps(QUESTIONS, STEPS)
    diffs = []
    for (question, steps), got in zip(ref.EXAMPLES, ours):
        want = card(torch_model, tokenizer, question, steps)
        assert len(got) == len(want) == len(steps)
        diffs.append(float(np.max(np.abs(np.asarray(got) - np.asarray(want)))))
    print(f"{fmt}: max |ours - card| = {max(diffs):.3g}")
    assert max(diffs) < TOL
    flat = np.concatenate([np.asarray(s) for s in ours])
    assert ((flat > 0) & (flat < 1)).all() and flat.std() > 1e-3  # probabilities, not constant


@pytest.mark.parametrize("chat", [False, True], ids=["plain_prompt", "chat_prompt"])
def test_own_matches_the_layout_it_was_trained_on(tmp_path, chat):
    tokenizer = ref.qwen_tokenizer(tag=None) if chat else toy_tokenizer()
    system = "Please reason step by step." if chat else None
    _own_checkpoint(tmp_path, tokenizer, system)
    prm = load_prm(tmp_path)
    assert prm.format == "own"
    if chat:
        examples = [(q, s) for q, s in ref.EXAMPLES]
    else:
        examples = [("Q: 67-4+5", ["67-4=63", "63+5=68", "\\boxed{68}"]), ("Q: 1+1", ["1+1=2"])]
    ours = prm.score_steps([q for q, _ in examples], [s for _, s in examples])
    diffs = []
    for (question, steps), got in zip(examples, ours):
        want = _training_layout_scores(tmp_path, tokenizer, question, steps, system)
        assert len(got) == len(want) == len(steps)
        diffs.append(float(np.max(np.abs(np.asarray(got) - want))))
    print(f"own ({'chat' if chat else 'plain'}): max |ours - training layout| = {max(diffs):.3g}")
    assert max(diffs) < TOL


def test_score_fn_calling_convention(prms):
    """f(params, ids, mask, positions) jitted once gives score_steps' numbers at valid entries."""
    prm = prms["qwen_math_prm"]
    enc = prm.encode(QUESTIONS, STEPS, max_len=128, max_steps=8)
    assert enc.ids_BxL.shape == (3, 128) and enc.ids_BxL.dtype == np.int32
    assert enc.mask_BxL.dtype == bool and enc.positions_BxK.dtype == np.int32
    assert enc.valid_BxK.sum(1).tolist() == [3, 2, 4]
    scores = jax.jit(prm.score_fn())(prm.params, enc.ids_BxL, enc.mask_BxL, enc.positions_BxK)
    assert scores.shape == (3, 8) and scores.dtype == np.float32
    for b, want in enumerate(prm.score_steps(QUESTIONS, STEPS)):
        np.testing.assert_allclose(np.asarray(scores)[b][enc.valid_BxK[b]], want, atol=1e-6)


def test_detection(published, tmp_path):
    for fmt in ("qwen_math_prm", "math_shepherd", "value_head"):
        assert detect_format(published[fmt][0]) == fmt
    # A Llama 3.1 PRM is a plain LlamaForCausalLM: never guessed, and the error asks for the format.
    assert detect_format(published["rlhflow"][0]) is None
    with pytest.raises(
        PRMFormatError, match=r"^config\.reward\.format=None: .* set config\.reward"
    ):
        load_prm(published["rlhflow"][0], key="reward")
    _own_checkpoint(tmp_path, toy_tokenizer(), None)
    assert detect_format(tmp_path) == "own"


_TOKENIZER_FILES = ("tokenizer*", "chat_template.*", "special_tokens_map.json", "added_tokens.json")


def _variant(tmp_path, source, tokenizer=None, config=None):
    """Checkpoint `source` (its weights linked, not copied) with another tokenizer and/or changes
    to its config.json."""
    path = tmp_path / "variant"
    shutil.copytree(source, path, ignore=shutil.ignore_patterns("*.safetensors"))
    for weights in source.glob("*.safetensors"):
        (path / weights.name).symlink_to(weights)
    if tokenizer is not None:
        for pattern in _TOKENIZER_FILES:
            for file in path.glob(pattern):
                file.unlink()
        tokenizer.save_pretrained(path)
    if config is not None:
        hf = json.loads((path / "config.json").read_text())
        (path / "config.json").write_text(json.dumps({**hf, **config}))
    return path


def _no_template():
    tokenizer = ref.llama3_tokenizer()
    tokenizer.chat_template = None
    return tokenizer


def _one_class(published, tmp_path):
    ref.write_qwen_math_prm(tmp_path, ref.qwen_tokenizer(), num_labels=1)
    return tmp_path


def _implicit(published, tmp_path):
    config = ModelConfig.from_dict(presets.tiny(num_layers=1).to_dict())
    save_reward_model(CausalLM(config, rngs=nnx.Rngs(0)), tmp_path, kind="implicit_prm")
    toy_tokenizer().save_pretrained(tmp_path)
    return tmp_path


def _checkpoint(fmt, tokenizer=None, config=None):
    """The published checkpoint of `fmt`, or a variant with `tokenizer()` and/or `config`."""

    def make(published, tmp_path):
        if tokenizer is None and config is None:
            return published[fmt][0]
        return _variant(tmp_path, published[fmt][0], tokenizer and tokenizer(), config)

    return make


MISMATCHES = {
    "tag_missing": (
        _checkpoint("qwen_math_prm", tokenizer=lambda: ref.qwen_tokenizer(tag=None)),
        "qwen_math_prm",
        r"step tag '<extra_0>' is \d+ tokens in the PRM's tokenizer, not 1",
    ),
    "signs_not_one_token": (
        _checkpoint(
            "math_shepherd",
            tokenizer=lambda: ref.sentencepiece_like_tokenizer(with_sign_merges=False),
        ),
        "math_shepherd",
        r"good/bad tokens '\+'/'-' must be one token each",
    ),
    "one_class_head": (_one_class, "qwen_math_prm", r"2-way `score` head .* it has 1 output"),
    "no_value_head": (
        _checkpoint("rlhflow"),
        "value_head",
        r"needs Skywork's value head .* the checkpoint has none",
    ),
    "no_lm_head": (
        _checkpoint("qwen_math_prm"),
        "math_shepherd",
        r"reads the LM's logits; the checkpoint has no lm_head\.weight",
    ),
    "no_bos": (
        _checkpoint("value_head", tokenizer=lambda: ref.qwen_tokenizer(tag=None)),
        "value_head",
        r"bos_token; it has none",
    ),
    "no_chat_template": (
        _checkpoint("rlhflow", tokenizer=_no_template),
        "rlhflow",
        r"chat template; it has none",
    ),
    "ids_outside_vocab": (
        _checkpoint("qwen_math_prm", config={"vocab_size": 1000}),
        "qwen_math_prm",
        r"token id\(s\) \[\d+\] are outside the model's vocab_size",
    ),
    "own_without_metadata": (_checkpoint("qwen_math_prm"), "own", r"needs reward_model\.json"),
    "own_implicit_prm": (_implicit, "own", r"an implicit PRM is a policy/reference pair"),
}


@pytest.mark.parametrize("case", list(MISMATCHES))
def test_mismatches_are_format_errors_before_compiling(published, tmp_path, case):
    make, fmt, message = MISMATCHES[case]
    path = make(published, tmp_path)
    with pytest.raises(PRMFormatError, match=rf"^config\.prm\.format={fmt!r}: .*{message}"):
        load_prm(path, fmt)


def test_unknown_format(published):
    with pytest.raises(PRMFormatError, match=r"^config\.prm\.format='orm' is not one of"):
        load_prm(published["qwen_math_prm"][0], "orm")


@pytest.mark.parametrize(
    "fmt,tag", [("qwen_math_prm", "<extra_0>"), ("math_shepherd", "ки"), ("value_head", "\n")]
)
def test_a_tag_inside_a_step_is_replaced_by_a_space(prms, fmt, tag):
    prm = prms[fmt]
    tagged = ["She starts" + tag + "with 16 eggs.", "So 16 - 3 = 13" + tag, "The answer is: 13"]
    plain = [s.replace(tag, " ") for s in tagged]
    enc = prm.encode([QUESTIONS[0]], [tagged], max_len=128, max_steps=4)
    want = prm.encode([QUESTIONS[0]], [plain], max_len=128, max_steps=4)
    np.testing.assert_array_equal(enc.ids_BxL, want.ids_BxL)
    np.testing.assert_array_equal(enc.positions_BxK, want.positions_BxK)
    assert enc.valid_BxK[0].tolist() == [True, True, True, False]
    assert prm.score_steps(QUESTIONS[:1], [tagged]) == prm.score_steps(QUESTIONS[:1], [plain])


@pytest.mark.parametrize("fmt", list(PUBLISHED))
def test_empty_step_lists(prms, fmt):
    prm = prms[fmt]
    assert prm.score_steps([QUESTIONS[0]], [[]]) == [[]]
    assert prm.score_steps([], []) == []
    enc = prm.encode([QUESTIONS[0], QUESTIONS[1]], [[], STEPS[1]], max_len=256, max_steps=4)
    assert not enc.valid_BxK[0].any() and not enc.mask_BxL[0].any()
    assert enc.valid_BxK[1].tolist() == [True, True, False, False]
    # An empty row in the batch changes nothing for the others.
    mixed = prm.score_steps([QUESTIONS[0], QUESTIONS[1]], [[], STEPS[1]])
    np.testing.assert_allclose(mixed[1], prm.score_steps([QUESTIONS[1]], [STEPS[1]])[0], atol=1e-6)


def test_truncation_marks_steps_invalid_never_fails(prms):
    prm = prms["math_shepherd"]
    full = prm.encode(QUESTIONS[:1], STEPS[:1], max_len=64, max_steps=8)
    reads = full.positions_BxK[0][full.valid_BxK[0]]
    cut = prm.encode(QUESTIONS[:1], STEPS[:1], max_len=int(reads[-1]), max_steps=8)
    assert cut.valid_BxK[0].tolist() == [True, True, False] + [False] * 5
    assert cut.mask_BxL.shape == (1, int(reads[-1])) and cut.mask_BxL.all()
    few = prm.encode(QUESTIONS[:1], STEPS[:1], max_len=64, max_steps=1)
    assert few.valid_BxK.tolist() == [[True]]
    f = jax.jit(prm.score_fn())
    kept = np.asarray(f(prm.params, cut.ids_BxL, cut.mask_BxL, cut.positions_BxK))[0, :2]
    whole = np.asarray(f(prm.params, full.ids_BxL, full.mask_BxL, full.positions_BxK))[0, :2]
    np.testing.assert_allclose(kept, whole, atol=1e-6)  # causal: the cut does not move them
    # score_steps past the longest input the model takes: NaN for the steps that do not fit.
    saved, prm.max_len = prm.max_len, int(reads[-1])
    try:
        (scores,) = prm.score_steps(QUESTIONS[:1], STEPS[:1])
    finally:
        prm.max_len = saved
    np.testing.assert_allclose(scores[:2], whole, atol=1e-6)
    assert math.isnan(scores[2])


def test_inputs_longer_than_the_sliding_window_are_refused(prms):
    prm = prms["math_shepherd"]
    assert prm.window == 64 == prm.model.config.sliding_window
    long_steps = [STEPS[0] * 5]  # 15 steps, well past 100 tokens
    n = len(prm._rows(QUESTIONS[:1], long_steps)[0].ids)
    assert n > 100
    message = rf"input of {n} tokens is longer than the model's sliding_window=64"
    with pytest.raises(ValueError, match=message):
        prm.score_steps(QUESTIONS[:1], long_steps)
    with pytest.raises(ValueError, match=r"input of 100 tokens .* sliding_window=64"):
        prm.encode(QUESTIONS[:1], long_steps, max_len=100, max_steps=16)
    # Cut at the window, full attention equals the window's: allowed, later steps invalid.
    enc = prm.encode(QUESTIONS[:1], long_steps, max_len=64, max_steps=16)
    assert 0 < enc.valid_BxK.sum() < 15


def test_llama31_rope_scaling_is_honoured(prms):
    """The rlhflow parity above runs Llama 3.1's frequency-dependent RoPE scaling (original context
    64) on conversations longer than 64 tokens."""
    cfg = prms["rlhflow"].model.config
    assert (cfg.rope_type, cfg.rope_factor, cfg.rope_original_max_position) == ("llama3", 8.0, 64)
    lengths = [len(r.ids) for r in prms["rlhflow"]._rows(QUESTIONS, STEPS)]
    assert min(lengths) > 64
