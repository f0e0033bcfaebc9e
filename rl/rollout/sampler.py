"""The rollout engine's host-side face: `Sampler` compiles the sampling program once per prompt
shape and feeds it prompts, parameters, a key and the stop-string table.

    sampler = Sampler(policy, SamplerConfig(max_new_tokens=512, temperature=1.0, eos_ids=(151643,),
                                            samples_per_prompt=8), mesh=mesh, rules=RULES)
    out = sampler(nnx.state(policy), prompt_ids_BxP, prompt_mask_BxP, jax.random.key(step))
    out.tokens   # [B*N, R]; rows b*N .. b*N+N-1 are prompt b's samples

What is sampled is `rl.rollout.sampler_config.SamplerConfig`; the jitted program (prefill, the
decode loop, outputs, randomness) is `rl.rollout.sampling_program`; stop strings are matched with
the byte automaton of `rl.rollout.stop_strings`.

Letters: B prompts, N samples per prompt, P prompt length, R max new tokens, V vocabulary.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.sharding import Rules, array_sharding, use_mesh
from rl.rollout.sampler_config import SamplerConfig
from rl.rollout.sampling_program import Prefix, SampleOutput, decode, prefill
from rl.rollout.stop_strings import stop_table, token_bytes_from_tokenizer
from rl.runtime.distributed import to_global


class Sampler:
    """Compiled sampling for one model structure and one `SamplerConfig`; parameters are arguments.

    `model` is a `CausalLM` (only its graph is kept) or its `nnx.GraphDef`. Call with the parameters
    (`nnx.state(model)`, or the trainer's current policy state: no rebuild, no recompile),
    left-padded prompts [B, P] (every row's last column real), their mask, and a `jax.random` key.
    One compiled program per (B, P); `num_traces` counts compilations.

    With `mesh`/`rules`, prompts and outputs are sharded over the batch axes and the parameters must
    already live on the mesh (e.g. `hf_io.load_causal_lm(path, mesh=..., rules=...)`). Stop strings
    need the text of every token: pass `tokenizer` (transformers) or `token_bytes` (see
    `stop_table`).
    """

    def __init__(
        self,
        model: Any,
        config: SamplerConfig,
        *,
        mesh: jax.sharding.Mesh | None = None,
        rules: Rules | None = None,
        tokenizer: Any = None,
        token_bytes: Sequence[bytes] | None = None,
    ):
        if (mesh is None) != (rules is None):
            raise ValueError(
                "Sampler: give both mesh= and rules= (e.g. configs.sharding.RULES) or neither"
            )
        self.graphdef = model if isinstance(model, nnx.GraphDef) else nnx.graphdef(model)
        self.config = config
        self.mesh, self.rules = mesh, rules
        self.num_traces = 0
        self._stop_table = None
        self._token_bytes = None
        if config.stop_strings:
            if token_bytes is None:
                if tokenizer is None:
                    raise ValueError(
                        f"SamplerConfig.stop_strings={config.stop_strings!r} needs "
                        "Sampler(tokenizer=...) or token_bytes=..."
                    )
                token_bytes = token_bytes_from_tokenizer(tokenizer)
            self._token_bytes = list(token_bytes)
            if isinstance(model, nnx.Module):
                self._build_stop_table(model.config.vocab_size)
        self._generate = jax.jit(self._generate_fn)
        self._prefill = jax.jit(self._prefill_fn)
        self._decode = jax.jit(self._decode_fn)

    def _build_stop_table(self, vocab_size: int) -> None:
        table = stop_table(
            self.config.stop_strings, self._token_bytes, max(vocab_size, len(self._token_bytes))
        )
        self._stop_table = (
            jnp.asarray(table)
            if self.mesh is None
            else jax.device_put(
                table, array_sharding((None, None), table.shape, self.mesh, self.rules)
            )
        )

    def _stops(self, state) -> jax.Array | None:
        if self._token_bytes is not None and self._stop_table is None:  # built from a GraphDef
            self._build_stop_table(nnx.merge(self.graphdef, state).config.vocab_size)
        return self._stop_table

    # Pure functions (traced under the mesh context in `_call`).

    def _generate_fn(self, state, prompt_ids_BxP, prompt_mask_BxP, key, stop_table_QxV):
        self.num_traces += 1
        model = nnx.merge(self.graphdef, state)
        prefix = prefill(model, prompt_ids_BxP, prompt_mask_BxP, self.config.head_dtype)
        return decode(model, prefix, key, self.config, stop_table_QxV)

    def _prefill_fn(self, state, prompt_ids_BxP, prompt_mask_BxP):
        model = nnx.merge(self.graphdef, state)
        return prefill(model, prompt_ids_BxP, prompt_mask_BxP, self.config.head_dtype)

    def _decode_fn(self, state, prefix, key, stop_table_QxV):
        return decode(nnx.merge(self.graphdef, state), prefix, key, self.config, stop_table_QxV)

    def _call(self, fn, *args):
        if self.mesh is None:
            return fn(*args)
        with use_mesh(self.mesh, self.rules):
            return fn(*args)

    def _prompts(self, prompt_ids_BxP, prompt_mask_BxP):
        if isinstance(prompt_mask_BxP, np.ndarray) and not prompt_mask_BxP[:, -1].all():
            raise ValueError(
                "Sampler: prompts must be left-padded (every row's last column is a real token)"
            )
        as_array = np.asarray if isinstance(prompt_ids_BxP, np.ndarray) else jnp.asarray
        ids = as_array(prompt_ids_BxP).astype(np.int32)
        mask = as_array(prompt_mask_BxP).astype(np.bool_)
        if ids.ndim != 2 or ids.shape != mask.shape:
            raise ValueError(
                f"Sampler: prompt ids {ids.shape} and mask {mask.shape} must be the same "
                "[B, P] shape"
            )
        if self.mesh is not None:  # Host arrays go straight to their shards (on every process).
            sharding = array_sharding(("batch", None), ids.shape, self.mesh, self.rules)
            return to_global((ids, mask), sharding)
        return jnp.asarray(ids), jnp.asarray(mask)

    def __call__(self, state: Any, prompt_ids_BxP, prompt_mask_BxP, key: jax.Array) -> SampleOutput:
        """B prompts → B·N samples (rows b·N .. b·N+N-1 belong to prompt b)."""
        ids, mask = self._prompts(prompt_ids_BxP, prompt_mask_BxP)
        return self._call(self._generate, state, ids, mask, key, self._stops(state))

    def prefill(self, state: Any, prompt_ids_BxP, prompt_mask_BxP) -> Prefix:
        """Only the prefill (separately compiled); `decode` continues from it. For
        benchmarks/tools."""
        return self._call(self._prefill, state, *self._prompts(prompt_ids_BxP, prompt_mask_BxP))

    def decode(self, state: Any, prefix: Prefix, key: jax.Array) -> SampleOutput:
        return self._call(self._decode, state, prefix, key, self._stops(state))
