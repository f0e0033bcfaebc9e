"""Test helpers for `models.prm`: tiny tokenizers carrying each format's special tokens, tiny random
checkpoints of each published PRM's architecture written by transformers, and the reference: each
model card's usage code, in PyTorch, run on the same checkpoint.

The usage code is kept as the authors wrote it, except where transformers 5 changed an API
(`apply_chat_template(tokenize=True)` now returns a BatchEncoding: `["input_ids"]` is taken).
"""

from __future__ import annotations

import json
from pathlib import Path

import torch
import torch.nn.functional as F
import transformers
from safetensors.torch import load_file, save_file
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, processors, trainers
from transformers import PreTrainedTokenizerFast

from models import hf_io
from tests.models.hf_reference import make_hf_model, randomize_

QWEN_TOKENIZER = Path(__file__).resolve().parents[2] / "models" / "assets" / "qwen2_tokenizer"

# (question, steps): 3, 2 and 4 steps, so rows differ in length and step count.
EXAMPLES = [
    (
        "Janet has 16 eggs and eats 3 of them. How many eggs are left?",
        ["She starts with 16 eggs.", "She eats 3, so 16 - 3 = 13 remain.", "The answer is: 13"],
    ),
    ("What is 7 * 6?", ["7 * 6 = 42.", "The answer is: 42"]),
    (
        "Compute 2 + 2 + 2.",
        ["First, 2 + 2 = 4.", "Then 4 + 2 = 6.", "Check: 3 * 2 = 6.", "The answer is: 6"],
    ),
]

# Qwen2.5-Math's chat template as it renders without tools (its default system message is the
# boxed instruction); the shipped asset tokenizer carries a later template with <think> blocks.
QWEN25_MATH_TEMPLATE = (
    "{%- if messages[0]['role'] == 'system' %}"
    "{{- '<|im_start|>system\\n' + messages[0]['content'] + '<|im_end|>\\n' }}"
    "{%- else %}{{- '<|im_start|>system\\nPlease reason step by step, and put your final answer "
    "within \\\\boxed{}.<|im_end|>\\n' }}{%- endif %}"
    "{%- for message in messages %}{%- if not (message.role == 'system' and loop.first) %}"
    "{{- '<|im_start|>' + message.role + '\\n' + message.content + '<|im_end|>\\n' }}"
    "{%- endif %}{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|im_start|>assistant\\n' }}{%- endif %}"
)

# Llama 3.1 Instruct's chat template as it renders without tools (default date string).
LLAMA31_TEMPLATE = (
    "{{- bos_token }}"
    "{%- if messages[0]['role'] == 'system' %}"
    "{%- set system_message = messages[0]['content']|trim %}{%- set messages = messages[1:] %}"
    "{%- else %}{%- set system_message = '' %}{%- endif %}"
    "{{- '<|start_header_id|>system<|end_header_id|>\\n\\n' }}"
    "{{- 'Cutting Knowledge Date: December 2023\\n' }}{{- 'Today Date: 26 Jul 2024\\n\\n' }}"
    "{{- system_message }}{{- '<|eot_id|>' }}"
    "{%- for message in messages %}"
    "{{- '<|start_header_id|>' + message['role'] + '<|end_header_id|>\\n\\n'"
    " + message['content'] | trim + '<|eot_id|>' }}"
    "{%- endfor %}"
    "{%- if add_generation_prompt %}{{- '<|start_header_id|>assistant<|end_header_id|>\\n\\n' }}"
    "{%- endif %}"
)
LLAMA3_SPECIALS = ["<|begin_of_text|>", "<|end_of_text|>", "<|start_header_id|>"]
LLAMA3_SPECIALS += ["<|end_header_id|>", "<|eot_id|>"]


# --- Tokenizers -----------------------------------------------------------------------------------


def qwen_tokenizer(*, tag: str | None = "<extra_0>", bos: str | None = None):
    """The shipped Qwen2 tokenizer with Qwen2.5-Math's template, `tag` added as a special token and,
    for Skywork's format, a bos_token (Qwen's own has none)."""
    tok = hf_io.load_tokenizer(QWEN_TOKENIZER)
    if tag is not None:
        tok.add_special_tokens({"additional_special_tokens": [tag]})
    if bos is not None:
        tok.bos_token = bos
    tok.chat_template = QWEN25_MATH_TEMPLATE
    return tok


def _corpus(extra: list[str], *, signs: bool = True) -> list[str]:
    texts = [q + " " + " ".join(s) for q, s in EXAMPLES] + extra
    if not signs:
        texts = [t.replace("+", "plus").replace("-", "minus") for t in texts]
    return texts * 10


def sentencepiece_like_tokenizer(*, with_sign_merges: bool = True) -> PreTrainedTokenizerFast:
    """A Mistral/Llama-2-like tokenizer: "▁" word prefix (Metaspace), BOS added by `encode`, "\\n"
    its own token; trained BPE on the examples, so "ки", "+" and "-" after a space are one token
    each ("▁ки", "▁+", "▁-") unless `with_sign_merges=False` (then "+"/"-" stay two pieces)."""
    tok = Tokenizer(models.BPE(unk_token="<unk>"))
    tok.pre_tokenizer = pre_tokenizers.Sequence(
        [
            pre_tokenizers.Split("\n", "isolated"),
            pre_tokenizers.Metaspace(replacement="▁", prepend_scheme="first"),
        ]
    )
    tok.decoder = decoders.Metaspace(replacement="▁", prepend_scheme="first")
    alphabet = sorted(set("".join(_corpus([]))) | set("+-\nки▁"))
    trainer = trainers.BpeTrainer(
        vocab_size=400,
        special_tokens=["<unk>", "<s>", "</s>"],
        initial_alphabet=alphabet,
        show_progress=False,
    )
    extra = ["ки ки ки ки"] * 5 + ["+ - + -"] * 5
    tok.train_from_iterator(_corpus(extra, signs=with_sign_merges), trainer)
    tok.post_processor = processors.TemplateProcessing(
        single="<s> $A", special_tokens=[("<s>", tok.token_to_id("<s>"))]
    )
    return PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<s>", eos_token="</s>", unk_token="<unk>"
    )


def llama3_tokenizer() -> PreTrainedTokenizerFast:
    """A Llama-3-like tokenizer: byte-level BPE (no BOS added by `encode`), Llama 3's header and
    end-of-turn special tokens, and the Llama 3.1 chat template."""
    tok = Tokenizer(models.BPE())
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    tok.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=500,
        special_tokens=LLAMA3_SPECIALS,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        show_progress=False,
    )
    tok.train_from_iterator(_corpus(["Cutting Knowledge Date: December 2023"]), trainer)
    fast = PreTrainedTokenizerFast(
        tokenizer_object=tok, bos_token="<|begin_of_text|>", eos_token="<|eot_id|>"
    )
    fast.chat_template = LLAMA31_TEMPLATE
    return fast


# --- Checkpoints ----------------------------------------------------------------------------------


def _small(vocab: int, **extra) -> dict:
    return dict(
        vocab_size=vocab,
        hidden_size=32,
        intermediate_size=48,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=512,
        rms_norm_eps=1e-6,
        **extra,
    )


class Qwen2ForProcessRewardModel(transformers.Qwen2PreTrainedModel):
    """Qwen2.5-Math-PRM's architecture (its modeling code ships with the checkpoint, not with
    transformers): Qwen2Model + score = Linear(hidden, hidden) - ReLU - Linear(hidden, num_labels),
    both with bias; the forward returns the per-token logits."""

    def __init__(self, config):
        super().__init__(config)
        self.model = transformers.Qwen2Model(config)
        self.score = torch.nn.Sequential(
            torch.nn.Linear(config.hidden_size, config.hidden_size),
            torch.nn.ReLU(),
            torch.nn.Linear(config.hidden_size, config.num_labels),
        )
        self.post_init()

    def forward(self, input_ids, attention_mask=None):
        hidden = self.model(input_ids=input_ids, attention_mask=attention_mask)[0]
        return (self.score(hidden),)


def write_qwen_math_prm(path: Path, tokenizer, *, num_labels: int = 2, seed: int = 0):
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(**_small(len(tokenizer) + 8), num_labels=num_labels)
    model = Qwen2ForProcessRewardModel(config)
    model.config._attn_implementation = "eager"
    randomize_(model, seed)
    model.eval().save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


def write_math_shepherd(path: Path, tokenizer, *, sliding_window: int = 64, seed: int = 1):
    model = make_hf_model(
        "mistral",
        seed=seed,
        vocab_size=len(tokenizer),
        max_position_embeddings=512,
        sliding_window=sliding_window,
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


def write_rlhflow(path: Path, tokenizer, *, seed: int = 2):
    """A Llama 3.1-style LM (RoPE with llama3 scaling, original context 64, so positions beyond it
    use the scaled frequencies)."""
    model = make_hf_model(
        "llama", seed=seed, vocab_size=len(tokenizer), max_position_embeddings=512
    )
    model.save_pretrained(path)
    tokenizer.save_pretrained(path)
    return model


class SkyworkPRM(torch.nn.Module):
    """skywork-o1-prm-inference model_utils/prm_model.py `PRM_MODEL`: a causal LM whose last hidden
    state feeds `v_head.summary` (Linear(hidden, 1)); `return_probs=True` applies a sigmoid."""

    def __init__(self, lm):
        super().__init__()
        self.pretrained_model = lm
        self.v_head = torch.nn.Module()
        self.v_head.summary = torch.nn.Linear(lm.config.hidden_size, 1)

    def forward(self, input_ids, attention_mask=None, return_probs=False):
        out = self.pretrained_model(
            input_ids=input_ids, attention_mask=attention_mask, output_hidden_states=True
        )
        value = self.v_head.summary(out.hidden_states[-1]).squeeze(-1)
        if return_probs:
            value = torch.nn.functional.sigmoid(value)
        return out.logits, None, value


def write_skywork(path: Path, tokenizer, *, seed: int = 3) -> SkyworkPRM:
    """Checkpoint layout of Skywork-o1-Open-PRM: the LM's tensors plus v_head.summary.*,
    architectures ["Qwen2ForPrmModel"]."""
    torch.manual_seed(seed)
    config = transformers.Qwen2Config(**_small(len(tokenizer) + 8), tie_word_embeddings=True)
    lm = transformers.Qwen2ForCausalLM(config)
    lm.config._attn_implementation = "eager"
    prm = SkyworkPRM(lm)
    randomize_(prm, seed)
    prm.eval()
    lm.save_pretrained(path)
    tensors = load_file(str(path / hf_io.SINGLE_FILE))
    for name, p in prm.v_head.named_parameters():
        tensors[f"v_head.{name}"] = p.detach().clone().contiguous()
    save_file(tensors, str(path / hf_io.SINGLE_FILE), metadata={"format": "pt"})
    hf = json.loads((path / "config.json").read_text())
    hf["architectures"] = ["Qwen2ForPrmModel"]
    (path / "config.json").write_text(json.dumps(hf))
    tokenizer.save_pretrained(path)
    return prm


# --- The authors' usage code ----------------------------------------------------------------------


def card_qwen_math_prm(model, tokenizer, question: str, steps: list[str]) -> list[float]:
    """https://huggingface.co/Qwen/Qwen2.5-Math-PRM-7B, "Hugging Face Transformers"."""

    def make_step_rewards(logits, token_masks):
        probabilities = F.softmax(logits, dim=-1)
        probabilities = probabilities * token_masks.unsqueeze(-1)  # bs, seq_len, num_labels
        all_scores_res = []
        for i in range(probabilities.size(0)):
            sample = probabilities[i]  # seq_len, num_labels
            positive_probs = sample[sample != 0].view(-1, 2)[:, 1]  # valid_tokens, num_labels
            all_scores_res.append(positive_probs.cpu().tolist())
        return all_scores_res

    data = {
        "system": "Please reason step by step, and put your final answer within \\boxed{}.",
        "query": question,
        "response": steps,
    }
    messages = [
        {"role": "system", "content": data["system"]},
        {"role": "user", "content": data["query"]},
        {"role": "assistant", "content": "<extra_0>".join(data["response"]) + "<extra_0>"},
    ]
    conversation_str = tokenizer.apply_chat_template(
        messages, tokenize=False, add_generation_prompt=False
    )
    input_ids = tokenizer.encode(conversation_str, return_tensors="pt")
    with torch.no_grad():
        outputs = model(input_ids=input_ids)
    step_sep_id = tokenizer.encode("<extra_0>")[0]
    token_masks = input_ids == step_sep_id
    return make_step_rewards(outputs[0], token_masks)[0]


def card_math_shepherd(model, tokenizer, question: str, steps: list[str]) -> list[float]:
    """https://huggingface.co/peiyi9979/math-shepherd-mistral-7b-prm, its usage snippet; `output`
    laid out like the card's `"Step 1: ... ки\\nStep 2: ... ки"`."""
    good_token, bad_token, step_tag = "+", "-", "ки"
    candidate_tokens = tokenizer.encode(f"{good_token} {bad_token}")[1:]
    step_tag_id = tokenizer.encode(f"{step_tag}")[-1]
    output = "\n".join(f"{s} {step_tag}" for s in steps)
    input_for_prm = f"{question} {output}"
    input_id = torch.tensor([tokenizer.encode(input_for_prm)])
    with torch.no_grad():
        logits = model(input_id).logits[:, :, candidate_tokens]
        scores = logits.softmax(dim=-1)[:, :, 0]
        step_scores = scores[input_id == step_tag_id]
    return step_scores.tolist()


def card_rlhflow(model, tokenizer, question: str, steps: list[str]) -> list[float]:
    """RLHFlow/RLHF-Reward-Modeling math-rm/prm_evaluate.py, `worker` + `select_sample` for one
    answer (its steps already split): one forward per step prefix, read at -3."""
    plus_tag_id = tokenizer.encode("+")[-1]
    minus_tag_id = tokenizer.encode("-")[-1]
    candidate_tokens = [plus_tag_id, minus_tag_id]
    ans_list = [j.strip() for j in steps]
    conversation, single_step_score = [], []
    for k in range(len(ans_list)):
        text = question + " " + ans_list[0] if k == 0 else ans_list[k]
        conversation.append({"content": text, "role": "user"})
        conversation.append({"content": "+", "role": "assistant"})
        input_ids = tokenizer.apply_chat_template(conversation, return_tensors="pt")["input_ids"]
        with torch.no_grad():
            logits = model(input_ids).logits[:, -3, candidate_tokens]
            scores = logits.softmax(dim=-1)[:, 0]
            single_step_score.append(scores[0].detach().to("cpu", dtype=torch.float32).item())
    return single_step_score


def card_skywork(prm: SkyworkPRM, tokenizer, problem: str, steps: list[str]) -> list[float]:
    """skywork-o1-prm-inference README "huggingface inference": model_utils/io_utils.py
    `prepare_input` (step_token "\\n"), `prepare_batch_input_for_model`, `derive_step_rewards`."""
    step_token = "\n"
    response = step_token.join(steps)
    prompt_ids = tokenizer.encode(tokenizer.bos_token + problem + "\n")
    response_ids, reward_flags = [], [0] * len(prompt_ids)
    step_token_id = tokenizer.encode(step_token)[-1]
    for step in response.split(step_token):
        step_ids = tokenizer.encode(step) if step != "" else []
        step_ids += [step_token_id]
        flag = [0] * len(step_ids)
        flag[-1] = 1
        response_ids.extend(step_ids)
        reward_flags.extend(flag)
    input_ids = torch.LongTensor([prompt_ids + response_ids])
    attention_mask = torch.ones_like(input_ids)
    with torch.no_grad():
        _, _, rewards = prm(input_ids=input_ids, attention_mask=attention_mask, return_probs=True)
    flags = torch.LongTensor(reward_flags)
    indices = torch.nonzero(flags == 1).view(-1)
    return [rewards[0][indices[j]].item() for j in range(len(indices))]
