"""Published process reward models (and the ones trained here) behind one interface: load, encode
(question, steps) on the host, score every step in one jit-able forward.

    prm = load_prm("ckpts/Qwen2.5-Math-PRM-7B")           # format detected from config.json
    enc = prm.encode(questions, steps, max_len=2048, max_steps=32)
    f = jax.jit(prm.score_fn())                           # graphdef closed over
    scores_BxK = f(prm.params, enc.ids_BxL, enc.mask_BxL, enc.positions_BxK)  # use enc.valid_BxK
    prm.score_steps(["1+1?"], [["1+1=2.", "The answer is 2."]])  # [[p1, p2]]

A format is about input and readout, not the backbone: any architecture `models.hf_io` loads
(Qwen2, Llama, Mistral) may carry any format. How each format builds its input, after its authors'
usage code, is in `models.prm_formats`; the readouts:

  own            the saved head (`models.reward_io`): scalar (sigmoid if so trained), 2-way, ...
  qwen_math_prm  softmax of the 2-way `score` head (Qwen2ForProcessRewardModel) [..., 1]
  math_shepherd  softmax over the LM logits of "+" and "-", P(+)
  rlhflow        likewise, at the position that predicts each assistant "+"
  value_head     sigmoid of the `v_head.summary` value head (Skywork)

Mismatches between the checkpoint and the format (tag token missing, "+" not one token, head of the
wrong shape, no format given where none can be detected) raise `PRMFormatError` before anything is
compiled, its message starting with `config.{key}.format=...` so the config layer can re-raise it
as its own error. Mistral checkpoints: attention here is full, which equals their sliding-window
attention only up to the window, so inputs longer than `config.sliding_window` are refused.
"""

from __future__ import annotations

import contextlib
import dataclasses
import json
import math
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models import hf_io, reward_io
from models.heads import RewardHead, RewardModel, ValueModel
from models.prm_formats import (
    EMPTY,
    FORMATS,
    FormatMismatch,
    MathShepherd,
    Own,
    QwenMathPRM,
    RLHFlow,
    Row,
    ValueHead,
)

_ENCODERS = {
    "qwen_math_prm": QwenMathPRM,
    "math_shepherd": MathShepherd,
    "rlhflow": RLHFlow,
    "value_head": ValueHead,
}
# Architectures (config.json) that name one format; Qwen2ForPrmModel is Skywork's (its vLLM plugin).
_BY_ARCHITECTURE = {"Qwen2ForProcessRewardModel": "qwen_math_prm", "Qwen2ForPrmModel": "value_head"}
_MIN_LEN, _MIN_STEPS = 64, 8


class PRMFormatError(ValueError):
    """The checkpoint, its tokenizer or the data do not fit the PRM format asked for."""


@dataclasses.dataclass(frozen=True)
class EncodedSteps:
    """A batch of (question, steps) encoded for `ProcessRewardModel.score_fn`.

    ids_BxL int32, right-padded with the pad id; mask_BxL bool (real tokens); positions_BxK int32,
    the token index at which step k's score is read (0 where not valid); valid_BxK bool: step k
    exists, is among the first K and its read position is inside the L kept tokens.
    """

    ids_BxL: np.ndarray
    mask_BxL: np.ndarray
    positions_BxK: np.ndarray
    valid_BxK: np.ndarray


def detect_format(path: str | Path) -> str | None:
    """The format a checkpoint directory unambiguously is, else None.

    reward_model.json (written by `models.reward_io`) → own; architectures
    Qwen2ForProcessRewardModel → qwen_math_prm, Qwen2ForPrmModel (or a `v_head.summary` value head)
    → value_head; MistralForCausalLM whose tokenizer holds `ки` → math_shepherd (Math-Shepherd's
    published PRM is the only Mistral PRM the formats know). An RLHFlow PRM is a plain
    LlamaForCausalLM, indistinguishable from a policy, so it is never detected.
    """
    path = Path(path)
    if (path / reward_io.META_FILE).exists():
        return "own"
    config = json.loads((path / "config.json").read_text())
    architecture = (config.get("architectures") or [None])[0]
    if architecture in _BY_ARCHITECTURE:
        return _BY_ARCHITECTURE[architecture]
    with contextlib.ExitStack() as stack:
        if "v_head.summary.weight" in hf_io.Checkpoint(path, stack):
            return "value_head"
    if architecture == "MistralForCausalLM":
        vocab = hf_io.load_tokenizer(path).get_vocab()
        if MathShepherd.TAG in vocab or "▁" + MathShepherd.TAG in vocab:
            return "math_shepherd"
    return None


def _check_checkpoint(path: Path, fmt: str, config: Any, encoder: Any) -> None:
    """The head (or LM head) the format reads exists with the right shape; special ids fit."""
    with contextlib.ExitStack() as stack:
        ckpt = hf_io.Checkpoint(path, stack)
        if fmt == "qwen_math_prm":
            found = hf_io.head_layout(ckpt, "score")
            if found is None or found[2] != 2:
                raise FormatMismatch(
                    "needs a 2-way `score` head (Qwen2ForProcessRewardModel: score.0 / score.2); "
                    + (
                        "the checkpoint has none"
                        if found is None
                        else f"it has {found[2]} output(s)"
                    )
                )
        elif fmt == "value_head":
            found = hf_io.head_layout(ckpt, "v_head.summary")
            if found is None or found[2] != 1:
                raise FormatMismatch(
                    "needs Skywork's value head v_head.summary.weight of shape [1, hidden]; "
                    + ("the checkpoint has none" if found is None else f"it has {found[2]} outputs")
                )
        elif not config.tie_word_embeddings and "lm_head.weight" not in ckpt:
            raise FormatMismatch(
                f"{fmt} reads the LM's logits; the checkpoint has no lm_head.weight"
            )
    bad = [i for i in encoder.special_ids if i >= config.vocab_size]
    if bad:
        raise FormatMismatch(f"token id(s) {bad} are outside the model's vocab_size")


def load_prm(
    path: str | Path,
    format: str | None = None,
    *,
    dtype: Any = jnp.float32,
    mesh: jax.sharding.Mesh | None = None,
    rules: Any = None,
    key: str = "prm",
) -> ProcessRewardModel:
    """The PRM at `path` in `format` (None: `detect_format`), weights in `dtype` (sharded when
    `mesh`/`rules` are given, as `models.hf_io.load_causal_lm`). `key` names the config entry in
    error messages (`config.{key}.format=...`)."""
    path = Path(path)
    fmt = format if format is not None else detect_format(path)
    if fmt is None:
        raise PRMFormatError(
            f"config.{key}.format=None: the format of {path} cannot be detected from its "
            f"config.json and files; set config.{key}.format to one of {FORMATS}"
        )
    if fmt not in FORMATS:
        raise PRMFormatError(f"config.{key}.format={fmt!r} is not one of {FORMATS}")
    try:
        tokenizer = hf_io.load_tokenizer(path)
        if fmt == "own":
            return _load_own(path, tokenizer, dtype, mesh, rules, key)
        encoder = _ENCODERS[fmt](tokenizer)
        config = hf_io.load_config(path)
        _check_checkpoint(path, fmt, config, encoder)
    except FormatMismatch as e:
        raise PRMFormatError(f"config.{key}.format={fmt!r}: {path}: {e}") from e
    if fmt in ("math_shepherd", "rlhflow"):
        head: Any = RewardHead("token_prob", encoder.good_id, encoder.bad_id)
    else:
        head = "two_class" if fmt == "qwen_math_prm" else "value"
    model = hf_io.load_causal_lm(path, dtype, mesh=mesh, rules=rules, head=head)
    return ProcessRewardModel(fmt, tokenizer, model, encoder, key=key)


def _load_own(path: Path, tokenizer: Any, dtype, mesh, rules, key: str) -> ProcessRewardModel:
    meta = path / reward_io.META_FILE
    if not meta.exists():
        raise FormatMismatch(f"needs {reward_io.META_FILE} (models.reward_io.save_reward_model)")
    info = json.loads(meta.read_text())
    if info.get("kind") == "implicit_prm":
        raise FormatMismatch("an implicit PRM is a policy/reference pair, not a step scorer")
    encoder = Own(tokenizer, info.get("step_separator", "\n"), info.get("system_prompt"))
    model, _ = reward_io.load_reward_model(path, dtype=dtype, mesh=mesh, rules=rules)
    return ProcessRewardModel("own", tokenizer, model, encoder, key=key)


def make_score_fn(graphdef: Any, *, sigmoid: bool) -> Callable:
    """The scoring program of a PRM with `graphdef` (see `ProcessRewardModel.score_fn`); also what
    `launch.aot` compiles for a published PRM's input bucket."""

    def score(params, ids_BxL, mask_BxL, positions_BxK):
        model = nnx.merge(graphdef, params)
        per_token_BxL = model(ids_BxL, mask_BxL).astype(jnp.float32)
        if sigmoid:
            per_token_BxL = jax.nn.sigmoid(per_token_BxL)
        return jnp.take_along_axis(per_token_BxL, positions_BxK.astype(jnp.int32), axis=1)

    return score


def abstract_prm(config: Any, fmt: str) -> nnx.Module:
    """A PRM of `config` with the head `fmt` loads (shapes only matter: for `launch.aot`)."""
    if fmt in ("math_shepherd", "rlhflow"):
        return RewardModel(config, "token_prob", rngs=nnx.Rngs(0), good_token_id=0, bad_token_id=1)
    if fmt == "qwen_math_prm":
        return RewardModel(config, "two_class", rngs=nnx.Rngs(0), mlp_head=True, head_bias=True)
    if fmt == "value_head":
        return ValueModel(config, rngs=nnx.Rngs(0), head_bias=True)
    raise ValueError(f"abstract_prm: format {fmt!r} has no published head ({FORMATS})")


def _bucket(n: int, least: int) -> int:
    return max(least, 1 << max(0, math.ceil(math.log2(max(n, 1)))))


class ProcessRewardModel:
    """A loaded PRM: its format, own tokenizer, NNX model, host-side encoder and scoring function.

    `batch_size` (rows per compiled call of `score_steps`) may be changed before scoring.
    """

    def __init__(self, fmt: str, tokenizer: Any, model: nnx.Module, encoder: Any, *, key: str):
        self.format = fmt
        self.tokenizer = tokenizer
        self.model = model
        self.batch_size = 8
        self._encoder = encoder
        self._key = key
        self._sigmoid = fmt == "value_head"
        self._graphdef, self.params = nnx.split(model)
        self.window: int | None = model.config.sliding_window
        self.max_len: int = model.config.max_position_embeddings
        pad = (
            tokenizer.pad_token_id if tokenizer.pad_token_id is not None else tokenizer.eos_token_id
        )
        self._pad_id = int(pad or 0)
        self._jitted: Callable | None = None

    def _rows(self, questions: Sequence[str], steps: Sequence[Sequence[str]]) -> list[Row]:
        if len(questions) != len(steps):
            raise ValueError(f"{len(questions)} questions but {len(steps)} step lists")
        try:
            return [self._encoder.row(q, list(s)) for q, s in zip(questions, steps)]
        except FormatMismatch as e:
            raise PRMFormatError(f"config.{self._key}.format={self.format!r}: {e}") from e

    def _check_window(self, lengths: Sequence[int]) -> None:
        if self.window is None or not lengths or max(lengths) <= self.window:
            return
        raise ValueError(
            f"an input of {max(lengths)} tokens is longer than the model's sliding_window="
            f"{self.window}: sliding-window attention is not implemented here (full attention "
            "equals it only up to the window); shorten the input or lower max_len"
        )

    def _pad(self, rows: Sequence[Row], max_len: int, max_steps: int) -> EncodedSteps:
        b = len(rows)
        ids = np.full((b, max_len), self._pad_id, np.int32)
        mask = np.zeros((b, max_len), bool)
        positions = np.zeros((b, max_steps), np.int32)
        valid = np.zeros((b, max_steps), bool)
        kept = [min(len(r.ids), max_len) for r in rows]
        self._check_window(kept)
        for i, (row, n) in enumerate(zip(rows, kept)):
            ids[i, :n] = row.ids[:n]
            mask[i, :n] = True
            for k, read in enumerate(row.reads[:max_steps]):
                if 0 <= read < n:
                    positions[i, k], valid[i, k] = read, True
        return EncodedSteps(ids, mask, positions, valid)

    def encode(
        self,
        questions: Sequence[str],
        steps: Sequence[Sequence[str]],
        *,
        max_len: int,
        max_steps: int,
    ) -> EncodedSteps:
        """Host-side encoding of B (question, steps) pairs into [B, max_len] / [B, max_steps]
        arrays. Inputs longer than max_len are cut; a step whose read position falls past the cut,
        or that is not among the first max_steps, is marked invalid (not scored), never an error.
        An empty step list gives an all-invalid row."""
        return self._pad(self._rows(questions, steps), max_len, max_steps)

    def score_fn(self) -> Callable[[Any, jax.Array, jax.Array, jax.Array], jax.Array]:
        """`f(params, ids_BxL, mask_BxL, positions_BxK) -> scores_BxK` (fp32), pure and jit-able,
        with the model's graphdef closed over; `params` is `self.params` (the model's nnx state, in
        whatever sharding it was loaded with). Scores where `valid_BxK` is False are meaningless."""
        return make_score_fn(self._graphdef, sigmoid=self._sigmoid)

    def score_steps(
        self, questions: Sequence[str], steps: Sequence[Sequence[str]]
    ) -> list[list[float]]:
        """One score per step of each (question, steps), in order; [] for an empty step list and
        NaN for a step past the longest input the model takes (`max_position_embeddings`).

        Rows are sorted by length and scored `batch_size` at a time, padded to power-of-two
        lengths (at least 64 tokens, 8 steps), so a few shapes are compiled whatever the data.
        """
        rows = self._rows(questions, steps)
        self._check_window([min(len(r.ids), self.max_len) for r in rows])
        if self._jitted is None:
            self._jitted = jax.jit(self.score_fn())
        out: list[list[float]] = [[] for _ in rows]
        order = sorted(range(len(rows)), key=lambda i: len(rows[i].ids))
        for start in range(0, len(order), self.batch_size):
            chunk = order[start : start + self.batch_size]
            picked = [rows[i] for i in chunk]
            length = min(self.max_len, _bucket(max(len(r.ids) for r in picked), _MIN_LEN))
            num_steps = _bucket(max(len(r.reads) for r in picked), _MIN_STEPS)
            picked += [EMPTY] * (self.batch_size - len(picked))
            enc = self._pad(picked, length, num_steps)
            scores = np.asarray(
                self._jitted(self.params, enc.ids_BxL, enc.mask_BxL, enc.positions_BxK)
            )
            for j, i in enumerate(chunk):
                out[i] = [
                    float(scores[j, k]) if enc.valid_BxK[j, k] else math.nan
                    for k in range(len(rows[i].reads))
                ]
        return out
