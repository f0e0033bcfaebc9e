"""Stop strings, exactly: the byte automaton the sampling loop steps through, and the bytes of
every token it is built from.

Stopping, per row: a token in `eos_ids`; or a stop string; or `max_new_tokens`. Stop strings are
matched exactly, inside the loop, on the response's text: the UTF-8 bytes of its tokens
concatenated, special tokens contributing nothing (what `tokenizer.decode(ids,
skip_special_tokens=True)` gives for byte-level BPE), the prompt not included, across any token
boundaries (an automaton over bytes, precomputed per token: see `stop_table`). The row stops at the
token whose bytes complete the first occurrence of any stop string; that token is part of the
response (its text may run past the string's end: `rl.rollout.tokenizer.cut_at_stop` cuts the
decoded text at the string). EOS wins when one token does both.

Host-side NumPy, built once per `rl.rollout.sampler.Sampler` (the table is an argument of the
jitted program, `rl.rollout.sampling_program.decode`).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def stop_table(
    stop_strings: Sequence[str], token_bytes: Sequence[bytes], vocab_size: int
) -> np.ndarray:
    """Transition table [Q, V] int32 of a matcher of `stop_strings` over the response's bytes.

    States 0..Q-2 are those of an Aho-Corasick automaton of the strings' UTF-8 bytes (state 0:
    nothing matched yet); Q-1 is MATCH, absorbing. table[q, tok] is the state after feeding token
    `tok`'s bytes from state q; MATCH as soon as any string ends inside them. So in the loop the
    check is one gather per row per step, exact across token boundaries whatever the tokenization.
    UTF-8 being self-synchronising, a byte match is a match in the decoded text. Ids >=
    len(token_bytes) have no bytes (as special tokens, which decoding with skip_special_tokens
    drops).
    """
    patterns = [s.encode("utf-8") for s in stop_strings]
    goto: list[dict[int, int]] = [{}]
    accept = [False]
    for pat in patterns:
        q = 0
        for byte in pat:
            if byte not in goto[q]:
                goto.append({})
                accept.append(False)
                goto[q][byte] = len(goto) - 1
            q = goto[q][byte]
        accept[q] = True
    n = len(goto)
    delta = np.zeros((n, 256), np.int32)
    fail = [0] * n
    queue = []
    for byte, q in goto[0].items():
        delta[0, byte] = q
        queue.append(q)
    while queue:  # Breadth-first: a state's failure link is finished before its children's.
        q = queue.pop(0)
        accept[q] = accept[q] or accept[fail[q]]
        delta[q] = delta[fail[q]]
        for byte, child in goto[q].items():
            delta[q, byte] = child
            fail[child] = delta[fail[q], byte] if q else 0
            queue.append(child)
    accept_arr = np.asarray(accept)

    lens = np.zeros(vocab_size, np.int64)
    lens[: len(token_bytes)] = [len(t) for t in token_bytes[:vocab_size]]
    order = np.argsort(-lens, kind="stable")  # Longest first: the tokens still active at byte j
    max_len = int(lens.max(initial=0))  # are a prefix of this order.
    buf = np.zeros((vocab_size, max(max_len, 1)), np.uint8)
    for row, tok in enumerate(order[: np.count_nonzero(lens)]):
        buf[row, : lens[tok]] = np.frombuffer(token_bytes[tok], np.uint8)
    sorted_lens = lens[order]
    cur = np.repeat(np.arange(n, dtype=np.int32)[:, None], vocab_size, axis=1)
    matched = np.zeros((n, vocab_size), bool)
    for j in range(max_len):
        active = int(np.count_nonzero(sorted_lens > j))
        nxt = delta[cur[:, :active], buf[None, :active, j]]
        cur[:, :active] = nxt
        matched[:, :active] |= accept_arr[nxt]
    table = np.empty((n + 1, vocab_size), np.int32)
    table[:n, order] = np.where(matched, n, cur)
    table[n] = n
    return table


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte ↔ printable-character map used by byte-level BPE vocabularies (Qwen2, Llama
    3)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    chars = keep[:]
    extra = 0
    for byte in range(256):
        if byte not in keep:
            keep.append(byte)
            chars.append(256 + extra)
            extra += 1
    return dict(zip(keep, map(chr, chars), strict=True))


def token_bytes_from_tokenizer(tokenizer: Any) -> list[bytes]:
    """The UTF-8 bytes every token id contributes to decoded text (skip_special_tokens semantics).

    Byte-level BPE vocabularies (GPT-2 / Qwen2 / Llama 3) map back through the byte alphabet;
    SentencePiece ones through `▁` → space and `<0xNN>` byte tokens. Special tokens give b""; other
    added tokens their content.
    """
    size = len(tokenizer)
    pieces = tokenizer.convert_ids_to_tokens(list(range(size)))
    added = {i: t for i, t in getattr(tokenizer, "added_tokens_decoder", {}).items() if i < size}
    special = set(getattr(tokenizer, "all_special_ids", ()))
    byte_of = {c: b for b, c in _bytes_to_unicode().items()}
    plain = [p for i, p in enumerate(pieces) if i not in added and p is not None]
    byte_level = all(c in byte_of for p in plain for c in p)
    out = []
    for i, piece in enumerate(pieces):
        if i in special or piece is None or (i in added and added[i].special):
            out.append(b"")
        elif i in added:
            out.append(added[i].content.encode("utf-8"))
        elif byte_level:
            out.append(bytes(byte_of[c] for c in piece))
        elif len(piece) == 6 and piece.startswith("<0x") and piece.endswith(">"):
            out.append(bytes([int(piece[3:5], 16)]))
        else:
            out.append(piece.replace("\u2581", " ").encode("utf-8"))
    return out
