"""What the sampler samples: `SamplerConfig`, validated on construction.

Its own module because both the jitted program (`rl.rollout.sampling_program`, which bakes every
field in as a compile-time constant) and the host-side `rl.rollout.sampler.Sampler` read it, and
config layers build it without needing either.
"""

from __future__ import annotations

import dataclasses
import math

import numpy as np


@dataclasses.dataclass(frozen=True)
class SamplerConfig:
    """What to sample. Every field is a compile-time constant of the sampling program.

    temperature: 0 means greedy; top_k: 0 means off; top_p: 1 means off. top_p_candidates: how many
    of the largest logits the fast top-p path inspects before falling back to an exact bisection
    over the vocabulary (see `rl.rollout.token_selection`). samples_per_prompt: N rows per prompt
    sharing its prefill. pad_id: the token written after a row stopped. head_dtype: "" computes
    the LM head in the model's compute dtype; "bfloat16" reads a bfloat16 copy of its [V, D] matrix
    (cast once per call, outside the decode loop) with fp32 accumulation: half the bytes of the
    step's largest read, at the price of logits rounded to about bf16 precision (the trainer
    recomputes the log-probs it trains on at full precision).
    """

    max_new_tokens: int
    temperature: float = 1.0
    top_p: float = 1.0
    top_k: int = 0
    eos_ids: tuple[int, ...] = ()
    stop_strings: tuple[str, ...] = ()
    samples_per_prompt: int = 1
    pad_id: int = 0
    top_p_candidates: int = 128
    head_dtype: str = ""

    def __post_init__(self):
        def fail(name, why):
            raise ValueError(f"SamplerConfig.{name}={getattr(self, name)!r}: {why}")

        def whole(name, low):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < low:
                fail(name, f"must be an int >= {low}")
            object.__setattr__(self, name, int(value))

        whole("max_new_tokens", 1)
        whole("top_k", 0)
        whole("samples_per_prompt", 1)
        whole("pad_id", 0)
        whole("top_p_candidates", 1)
        t = self.temperature
        if isinstance(t, bool) or not isinstance(t, (int, float)) or not math.isfinite(t) or t < 0:
            fail("temperature", "must be a finite number >= 0 (0 means greedy)")
        object.__setattr__(self, "temperature", float(t))
        p = self.top_p
        if isinstance(p, bool) or not isinstance(p, (int, float)) or not 0 < p <= 1:
            fail("top_p", "must be in (0, 1]")
        object.__setattr__(self, "top_p", float(p))
        eos = (self.eos_ids,) if isinstance(self.eos_ids, (int, np.integer)) else self.eos_ids
        if any(isinstance(i, bool) or not isinstance(i, (int, np.integer)) or i < 0 for i in eos):
            fail("eos_ids", "must be non-negative token ids")
        object.__setattr__(self, "eos_ids", tuple(int(i) for i in eos))
        stops = (self.stop_strings,) if isinstance(self.stop_strings, str) else self.stop_strings
        if any(not isinstance(s, str) or not s for s in stops):
            fail("stop_strings", "must be non-empty strings")
        object.__setattr__(self, "stop_strings", tuple(stops))
        if self.head_dtype not in ("", "bfloat16", "float32"):
            fail("head_dtype", "must be '' (the model's compute dtype), 'bfloat16' or 'float32'")
