"""The stop-string automaton against brute-force substring search, and the token bytes of the
shipped Qwen2 tokenizer against its own encoding."""

import pathlib

import numpy as np
import transformers

from rl.rollout.stop_strings import stop_table, token_bytes_from_tokenizer

QWEN = pathlib.Path(__file__).resolve().parents[3] / "models" / "assets" / "qwen2_tokenizer"


def test_stop_table_matches_brute_force():
    rng = np.random.default_rng(0)
    alphabet = [b"a", b"b", b"\n", "é".encode()]
    tb = [b"".join(rng.choice(alphabet, size=rng.integers(0, 4))) for _ in range(40)]
    stops = ("\n\n", "aba", "bé", "aaaa")
    table = stop_table(stops, tb, vocab_size=45)  # ids 40..44 carry no text
    assert table.shape[1] == 45
    match = table.shape[0] - 1
    for _ in range(300):
        seq = rng.integers(0, 45, size=12)
        q, got = 0, None
        for i, tok in enumerate(seq):
            q = table[q, tok]
            if q == match:
                got = i
                break
        text = [b"".join(tb[t] for t in seq[: i + 1] if t < 40) for i in range(len(seq))]
        want = next((i for i, t in enumerate(text) if any(s.encode() in t for s in stops)), None)
        assert got == want, (seq, got, want)


def test_token_bytes_of_qwen2_tokenizer():
    tok = transformers.AutoTokenizer.from_pretrained(QWEN)
    tb = token_bytes_from_tokenizer(tok)
    assert len(tb) == len(tok)
    for text in ["Step 1: 3 + 4 = 7.\n\nStep 2: so x = 7", "Ünïcödé 数学 ∑ 🙂 \t  end"]:
        ids = tok.encode(text, add_special_tokens=False)
        assert b"".join(tb[i] for i in ids) == text.encode()
    assert all(tb[i] == b"" for i in tok.all_special_ids)
