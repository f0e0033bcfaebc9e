"""What storing a frozen model in bfloat16 saves and changes: the PPO reference's log-probs.

    python bench/frozen_dtype.py [--preset bench] [--batch 8] [--length 512]

A random-weight model of ``models/presets.py``'s preset (computing in float32) scores random token
sequences once with float32 weights and once with the same weights rounded to bfloat16
(``rl.runtime.model_builder.frozen_copy(model, "bfloat16")``, what ``policy.reference_param_dtype``
does). Prints one JSON object: parameter bytes of each, and the difference of the sampled tokens'
log-probs (mean, mean absolute, max absolute, in nats): the bias the rounding adds to the k1 KL
estimate log pi - log pi_ref per token. Random weights make near-uniform distributions; a trained
model's sharper ones may move more, so treat the figures as the size of the effect, not a bound.
"""

import argparse
import json
import pathlib
import sys

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402
from flax import nnx  # noqa: E402

from models import presets  # noqa: E402
from models.config import ModelConfig  # noqa: E402
from models.decoder import CausalLM  # noqa: E402
from rl.runtime.model_builder import frozen_copy  # noqa: E402


def token_logp(model, tokens):
    graphdef, state = nnx.split(model)

    @jax.jit
    def run(state, tokens):
        logits = nnx.merge(graphdef, state)(tokens, jnp.ones_like(tokens, bool))[:, :-1]
        logp = jax.nn.log_softmax(logits.astype(jnp.float32), -1)
        return jnp.take_along_axis(logp, tokens[:, 1:, None], -1)[..., 0]

    return np.asarray(run(state, tokens), np.float64)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--preset", default="bench")
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--length", type=int, default=512)
    args = parser.parse_args()
    cfg = ModelConfig.from_dict(presets.get_config(args.preset).to_dict())
    model = CausalLM(cfg, rngs=nnx.Rngs(0))
    half = frozen_copy(model, "bfloat16")
    tokens = np.random.default_rng(0).integers(0, cfg.vocab_size, (args.batch, args.length))
    tokens = jnp.asarray(tokens, jnp.int32)
    diff = token_logp(half, tokens) - token_logp(model, tokens)
    nbytes = lambda m: sum(x.nbytes for x in jax.tree.leaves(nnx.state(m)))  # noqa: E731
    print(
        json.dumps(
            {
                "preset": args.preset,
                "tokens": int(diff.size),
                "float32_bytes": nbytes(model),
                "bfloat16_bytes": nbytes(half),
                "logp_diff_mean": float(diff.mean()),
                "logp_diff_mean_abs": float(np.abs(diff).mean()),
                "logp_diff_max_abs": float(np.abs(diff).max()),
            }
        )
    )


if __name__ == "__main__":
    main()
