"""Steps of a response: text spans, and their end positions in any tokenizer's token space.

This is the host-side text layer that feeds the array code in ``rewards/shaping.py``: it turns a
sampled response into ``step_end_T``, True on the last token of each step.

Why offsets and not re-tokenizing each step: the mask must index the tokens the policy actually
sampled. A sampled sequence need not be the tokenizer's canonical encoding of its own text, and BPE
merges cross step boundaries (Qwen encodes ``".\\n\\n"`` as one token), so step ends are found by
mapping each step's last character to the sampled token that contains it.
"""

from __future__ import annotations

import bisect
import re
from collections.abc import Sequence
from typing import Any

import numpy as np

DEFAULT_SEPARATOR = "\n\n"

Span = tuple[int, int]


def split_steps(text: str, sep: str = DEFAULT_SEPARATOR) -> list[Span]:
    """Character spans ``(start, end)`` of the non-empty steps of ``text``, in order.

    Steps are the pieces between separators with surrounding whitespace trimmed, so ``end - 1`` is
    the step's last visible character. Whitespace-only pieces (doubled separators, trailing
    newlines) are not steps.
    """
    if not sep:
        raise ValueError(f"sep must be a non-empty string, got {sep!r}")
    spans = []
    start = 0
    while start <= len(text):
        cut = text.find(sep, start)
        stop = len(text) if cut < 0 else cut
        piece = text[start:stop]
        lead = len(piece) - len(piece.lstrip())
        trail = len(piece.rstrip())
        if trail > lead:
            spans.append((start + lead, start + trail))
        if cut < 0:
            break
        start = cut + len(sep)
    return spans


def complete_steps(text: str, sep: str = DEFAULT_SEPARATOR, truncated: bool = False) -> list[Span]:
    """``split_steps``, without the trailing fragment of a response cut off by the length limit.

    A response that stopped at ``max_new_tokens`` (``truncated``) ends mid-step unless its text
    ends with the separator: that last piece is not a step, so it gets no step end and no PRM
    score. A response that ended by EOS or a stop string keeps its last step.
    """
    spans = split_steps(text, sep)
    if truncated and spans and sep not in text[spans[-1][1] :]:
        spans = spans[:-1]
    return spans


def step_texts(text: str, sep: str = DEFAULT_SEPARATOR, truncated: bool = False) -> list[str]:
    """The steps' texts (see ``complete_steps`` for ``truncated``)."""
    return [text[a:b] for a, b in complete_steps(text, sep, truncated)]


def _normalize_step(step: str) -> str:
    return re.sub(r"\s+", " ", step).strip()


def repeated_step_fraction(steps: Sequence[str]) -> float:
    """Fraction of steps that repeat an earlier step of the same response (whitespace-normalized).

    The hacking signature of a raw PRM reward: correct but useless steps written again.
    """
    if not steps:
        return 0.0
    seen: set[str] = set()
    repeats = 0
    for step in steps:
        key = _normalize_step(step)
        repeats += key in seen
        seen.add(key)
    return repeats / len(steps)


def token_char_spans(tokenizer: Any, ids: Sequence[int]) -> tuple[str, list[Span]]:
    """Decoded text of ``ids`` and each token's character span in it.

    Special tokens (EOS, chat markers) decode to nothing and get empty spans, so they never end a
    step. Fast path: when re-encoding the text reproduces ``ids``, the tokenizer's own offsets are
    used. Otherwise (non-canonical samples) each token's end is found by decoding prefixes, which is
    exact for any tokenizer whose decoding of a prefix is a prefix of the full decoding.
    """
    ids = [int(i) for i in ids]
    special = set(getattr(tokenizer, "all_special_ids", ()))
    kept = [i for i, tok in enumerate(ids) if tok not in special]
    kept_ids = [ids[i] for i in kept]
    text = _decode(tokenizer, kept_ids)
    spans: list[Span] = [(0, 0)] * len(ids)
    kept_spans = _offsets_by_reencoding(tokenizer, text, kept_ids)
    if kept_spans is None:
        kept_spans = _offsets_by_prefix_decoding(tokenizer, text, kept_ids)
    for i, span in zip(kept, kept_spans):
        spans[i] = span
    return text, spans


def _decode(tokenizer: Any, ids: Sequence[int]) -> str:
    return tokenizer.decode(list(ids), skip_special_tokens=True, clean_up_tokenization_spaces=False)


def _offsets_by_reencoding(tokenizer: Any, text: str, ids: list[int]) -> list[Span] | None:
    enc = tokenizer(text, add_special_tokens=False, return_offsets_mapping=True)
    if list(enc["input_ids"]) != ids:
        return None
    return [(int(a), int(b)) for a, b in enc["offset_mapping"]]


def _offsets_by_prefix_decoding(tokenizer: Any, text: str, ids: list[int]) -> list[Span]:
    """Token i ends where the decoding of ids[:i+1] stops agreeing with the full text.

    A token that completes only part of a multi-byte character decodes to U+FFFD, which does not
    agree with the text, so the character is credited to the token that completes it.
    """
    ends = []
    for i in range(len(ids)):
        prefix = _decode(tokenizer, ids[: i + 1])
        if text.startswith(prefix):
            agree = len(prefix)
        else:  # a partial character at the end, or a decoder that rewrites across tokens
            n = min(len(prefix), len(text))
            agree = 0
            while agree < n and prefix[agree] == text[agree]:
                agree += 1
        ends.append(max(agree, ends[-1] if ends else 0))
    starts = [0] + ends[:-1]
    return list(zip(starts, ends))


def step_end_positions(step_spans: Sequence[Span], token_spans: Sequence[Span]) -> list[int]:
    """Index of the token containing each step's last character (deduplicated, in order).

    Two steps ending inside one token (possible only with tokens that swallow a whole short step)
    share that position.
    """
    idx = [i for i, (a, b) in enumerate(token_spans) if b > a]
    ends = [token_spans[i][1] for i in idx]
    positions: list[int] = []
    for _, end in step_spans:
        j = bisect.bisect_right(ends, end - 1)  # first token whose end is past the last character
        if j < len(idx) and (not positions or positions[-1] != idx[j]):
            positions.append(idx[j])
    return positions


def steps_and_ends(
    tokenizer: Any,
    ids_T: Sequence[int],
    response_T: Sequence[bool] | None = None,
    sep: str = DEFAULT_SEPARATOR,
    truncated: bool = False,
) -> tuple[np.ndarray, list[str]]:
    """One response's ``step_end_T`` (True on the last token of each step, in ``ids_T``'s space)
    and the texts of those steps, from one decoding, so that step k of the text is the k-th step
    end (a PRM with its own tokenizer scores the texts; its score k lands on that end).

    ``response_T`` marks real response tokens; padding (False) is excluded before decoding and is
    always False in the result. A ``truncated`` response's trailing fragment is no step
    (``complete_steps``).
    """
    ids_T = np.asarray(ids_T)
    if response_T is None:
        response_T = np.ones(ids_T.shape, bool)
    response_T = np.asarray(response_T, bool)
    if ids_T.ndim != 1 or response_T.shape != ids_T.shape:
        raise ValueError(
            f"ids_T and response_T must be [T] arrays of one shape, got "
            f"{ids_T.shape} and {response_T.shape}"
        )
    where = np.flatnonzero(response_T)
    text, spans = token_char_spans(tokenizer, ids_T[where])
    step_spans = complete_steps(text, sep, truncated)
    positions = step_end_positions(step_spans, spans)
    mask_T = np.zeros(ids_T.shape, bool)
    mask_T[where[positions]] = True
    if len(positions) < len(step_spans):
        # Steps that end inside one token share its end: they are one step to every reader, so
        # the texts merge too and step k of the text stays the k-th step end.
        step_spans = _merge_shared_ends(step_spans, spans)
    return mask_T, [text[a:b] for a, b in step_spans]


def _merge_shared_ends(step_spans: Sequence[Span], token_spans: Sequence[Span]) -> list[Span]:
    idx = [i for i, (a, b) in enumerate(token_spans) if b > a]
    ends = [token_spans[i][1] for i in idx]
    merged: list[Span] = []
    last_token = None
    for a, b in step_spans:
        j = bisect.bisect_right(ends, b - 1)
        if j >= len(idx):
            continue
        if merged and idx[j] == last_token:
            merged[-1] = (merged[-1][0], b)
        else:
            merged.append((a, b))
        last_token = idx[j]
    return merged


def step_end_mask(
    tokenizer: Any,
    ids_T: Sequence[int],
    response_T: Sequence[bool] | None = None,
    sep: str = DEFAULT_SEPARATOR,
    truncated: bool = False,
) -> np.ndarray:
    """``step_end_T`` of ``steps_and_ends``."""
    return steps_and_ends(tokenizer, ids_T, response_T, sep, truncated)[0]


def step_end_masks(
    tokenizer: Any,
    ids_BxT: np.ndarray,
    response_BxT: np.ndarray,
    sep: str = DEFAULT_SEPARATOR,
    truncated_B: Sequence[bool] | None = None,
) -> np.ndarray:
    """``step_end_mask`` row by row: ``[B, T]`` bool."""
    return batch_steps_and_ends(tokenizer, ids_BxT, response_BxT, sep, truncated_B)[0]


def batch_steps_and_ends(
    tokenizer: Any,
    ids_BxT: np.ndarray,
    response_BxT: np.ndarray,
    sep: str = DEFAULT_SEPARATOR,
    truncated_B: Sequence[bool] | None = None,
) -> tuple[np.ndarray, list[list[str]]]:
    """``steps_and_ends`` row by row: ``[B, T]`` bool and each row's step texts."""
    ids_BxT = np.asarray(ids_BxT)
    response_BxT = np.asarray(response_BxT, bool)
    if truncated_B is None:
        truncated_B = np.zeros(ids_BxT.shape[0], bool)
    out_BxT = np.zeros(ids_BxT.shape, bool)
    texts = []
    for b in range(ids_BxT.shape[0]):
        out_BxT[b], row = steps_and_ends(
            tokenizer, ids_BxT[b], response_BxT[b], sep, truncated=bool(truncated_B[b])
        )
        texts.append(row)
    return out_BxT, texts


def place_step_scores(
    scores_BxK: np.ndarray, valid_BxK: np.ndarray, step_end_BxT: np.ndarray
) -> np.ndarray:
    """Scores of steps 1..K (from a PRM that read the steps in its own token space) placed on the
    policy's step ends: row b's k-th True of ``step_end_BxT`` gets ``scores_BxK[b, k]``.

    Steps the PRM did not score (``valid`` False: cut by its input bucket) get 0 there, as do step
    ends beyond K. Everything off a step end is 0. Returns ``[B, T]`` float32.
    """
    scores_BxK = np.asarray(scores_BxK, np.float32)
    valid_BxK = np.asarray(valid_BxK, bool)
    step_end_BxT = np.asarray(step_end_BxT, bool)
    out_BxT = np.zeros(step_end_BxT.shape, np.float32)
    for b in range(step_end_BxT.shape[0]):
        ends = np.flatnonzero(step_end_BxT[b])[: scores_BxK.shape[1]]
        k = np.arange(len(ends))
        out_BxT[b, ends] = np.where(valid_BxK[b, k], scores_BxK[b, k], 0.0)
    return out_BxT


def tag_steps(text: str, tag: str, sep: str = DEFAULT_SEPARATOR) -> tuple[str, list[int]]:
    """Rewrite ``text`` for a PRM that scores at a step tag: the tag placed after each step.

    Returns the tagged text (steps joined by ``sep``, each step followed by a space and ``tag``, the
    Math-Shepherd layout) and the character start of every tag, which locates the PRM's score for
    step k in its own token space; score k then goes to the policy's k-th step end.
    """
    parts = []
    tag_starts = []
    pos = 0
    for i, step in enumerate(step_texts(text, sep)):
        piece = (sep if i else "") + step + " "
        parts.append(piece)
        pos += len(piece)
        tag_starts.append(pos)
        parts.append(tag)
        pos += len(tag)
    return "".join(parts), tag_starts
