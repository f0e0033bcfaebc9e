"""The toy task's character-level tokenizer, as a Hugging Face tokenizer the rest of the code can
load.

Why a real HF tokenizer for a 27-symbol alphabet: the trainer, the step-end mask code
(``rewards.steps``, which maps character offsets to tokens) and the prompt formatting all talk to
tokenizers through the transformers API; the toy then exercises exactly the code paths a Qwen run
does. One token per character (a ``Split`` pre-tokenizer isolating every character, a ``WordLevel``
vocabulary) gives exact character offsets, and the ``Fuse`` decoder concatenates tokens back into
the exact text.

Vocabulary: ``<pad>`` (id 0), ``<eos>`` (id 1), then the task's characters. No ``<unk>``: encoding a
character outside the alphabet is an error, not a silent unknown token. No BOS is added; the
prompt's first character starts the sequence. There is no chat template, so prompts use the plain
format of ``rl.data.prompts``.
"""

from __future__ import annotations

import os
import pathlib

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers
from transformers import PreTrainedTokenizerFast

PAD, EOS = "<pad>", "<eos>"
SPECIAL_TOKENS = (PAD, EOS)
ALPHABET = "0123456789+-=\\boxed{}Q: \n"
VOCAB = SPECIAL_TOKENS + tuple(ALPHABET)


def toy_tokenizer() -> PreTrainedTokenizerFast:
    """The tokenizer, built in memory (identical to what ``build_toy_tokenizer`` saves)."""
    core = Tokenizer(models.WordLevel(vocab={token: i for i, token in enumerate(VOCAB)}))
    core.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), "isolated")
    core.decoder = decoders.Fuse()
    core.add_special_tokens(list(SPECIAL_TOKENS))
    return PreTrainedTokenizerFast(
        tokenizer_object=core, pad_token=PAD, eos_token=EOS, padding_side="left"
    )


def build_toy_tokenizer(out_dir: str | os.PathLike) -> pathlib.Path:
    """Saves the tokenizer (tokenizer.json, tokenizer_config.json) to ``out_dir`` and returns it;
    ``AutoTokenizer.from_pretrained(out_dir)`` then loads it like any checkpoint's tokenizer."""
    out = pathlib.Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    toy_tokenizer().save_pretrained(out)
    return out
