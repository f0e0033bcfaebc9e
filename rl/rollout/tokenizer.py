"""The run's tokenizer and where its text ends: one place for every entry point and loop.

``load_tokenizer`` picks the tokenizer a run uses (an explicit directory, else the first checkpoint
that carries one, else the toy task's character tokenizer); ``stop_token_ids`` are the ids a
response ends on; ``cut_at_stop`` trims decoded text at a stop string.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from models import hf_io
from rl.config import ConfigError
from rl.data.toy_tokenizer import toy_tokenizer

# The end-of-turn markers of the chat templates the project meets (Qwen2, Llama 3).
CHAT_END_TOKENS = ("<|im_end|>", "<|endoftext|>", "<|eot_id|>")


def load_tokenizer(*paths: str, dataset: str) -> Any:
    """The first non-empty directory of ``paths`` (``config.tokenizer`` first, then checkpoints),
    else the toy task's tokenizer when ``dataset == "toy"``; anything else needs a directory."""
    for path in paths:
        if path:
            return hf_io.load_tokenizer(path)
    if dataset == "toy":
        return toy_tokenizer()
    raise ConfigError(
        f"config.tokenizer='': data.dataset={dataset!r} with no checkpoint path (a random-weight "
        "model) needs a tokenizer directory"
    )


def stop_token_ids(tokenizer: Any) -> tuple[int, ...]:
    """EOS plus the chat end markers a chat-tuned model ends its turn with."""
    ids = {tokenizer.eos_token_id}
    vocab = tokenizer.get_vocab()
    ids.update(vocab[t] for t in CHAT_END_TOKENS if t in vocab)
    return tuple(sorted(i for i in ids if i is not None))


def cut_at_stop(text: str, stop_strings: Sequence[str]) -> str:
    """The text up to the end of the first stop string (the sampler stops on the token completing
    it, whose text may run past it)."""
    ends = [text.find(s) + len(s) for s in stop_strings if s in text]
    return text[: min(ends)] if ends else text
