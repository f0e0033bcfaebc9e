"""The models a reward-model run trains, and the two quantities their losses read.

* ORM / PRM: a ``models.heads.RewardModel`` whose scalar head is squashed by a sigmoid (or a 2-class
  head, whose logit is l1 - l0), so the saved model outputs P(step on track) in [0, 1] at every
  token; ``head_logits`` is the logit under that probability.
* implicit PRM (Yuan et al. 2024): a ``CausalLM`` pi initialised from the frozen reference pi_ref;
  ``sequence_logp`` is its per-token log-probability.

Models are copies with their own buffers: the train step donates its parameters, so a policy whose
backbone a reward model starts from must not share them.

Letters: B batch rows, S sequence (prompt + response) tokens.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
from flax import nnx

from models.config import ModelConfig
from models.decoder import CausalLM, Decoder
from models.heads import RewardModel
from models.likelihood_prm import token_logp
from models.sharding import shard_model

HEADS = ("scalar", "two_class")


def _copy(module):
    """A copy with its own buffers (train steps donate their parameters)."""
    graphdef, state = nnx.split(module)
    return nnx.merge(graphdef, jax.tree.map(jnp.copy, state))


def new_reward_model(
    config: ModelConfig | None = None,
    *,
    head: str = "scalar",
    seed: int = 0,
    policy: CausalLM | None = None,
    extra_layers: int = 0,
    mesh=None,
    rules=None,
) -> RewardModel:
    """An ORM/PRM to train: a scalar head squashed by a sigmoid (or a 2-class head), with a bias.

    With ``policy``, the backbone starts as a copy of the policy's (the usual initialisation: the
    reward model reads the policy's own text well); else a random one of ``config``. The head's
    output layer starts at zero, so every initial score is 0.5.

    ``extra_layers`` (with ``policy``): a reward model deeper than the policy, as published PRMs
    are larger than the policies they score. The policy's layers come first, then this many fresh
    layers whose residual branches (attention ``o_proj`` and MLP ``down_proj``) start at zero, so
    the deeper backbone starts computing exactly the policy's hidden states and training grows the
    new layers from there. Why: at a token, a causal model's last layer holds the prediction of
    the *next* token; a layer above it can compare that prediction with the token actually written
    (how surprising a step's digits are), which the policy's own depth cannot.
    """
    if head not in HEADS:
        raise ValueError(f"head={head!r}: must be one of {HEADS}")
    if (config is None) == (policy is None):
        raise ValueError("new_reward_model: give exactly one of config= or policy=")
    if not isinstance(extra_layers, int) or extra_layers < 0:
        raise ValueError(f"extra_layers={extra_layers!r}: must be an int >= 0")
    if extra_layers and policy is None:
        raise ValueError(f"extra_layers={extra_layers}: needs policy= (layers added above it)")
    backbone = _copy(policy.backbone) if policy is not None else None
    model_config = policy.config if policy is not None else config
    if extra_layers:
        model_config = model_config.replace(num_layers=model_config.num_layers + extra_layers)
        backbone = _deepened(backbone, model_config, seed)
    model = RewardModel(
        model_config,
        head,
        rngs=nnx.Rngs(seed),
        sigmoid=head == "scalar",
        head_bias=True,
        backbone=backbone,
    )
    out = model.score.out
    out.kernel[...] = jnp.zeros_like(out.kernel[...])
    return shard_model(model, mesh, rules) if mesh is not None else model


def _deepened(backbone: Decoder, config: ModelConfig, seed: int) -> Decoder:
    """A ``config``-deep decoder whose first layers, embedding and final norm are ``backbone``'s
    (moved, not copied: ``backbone`` is already a copy) and whose added layers are residual
    identities at initialisation (zero output projections)."""
    deep = Decoder(config, rngs=nnx.Rngs(seed))
    deep.embed_tokens = backbone.embed_tokens
    deep.norm = backbone.norm
    kept = len(backbone.layers)
    for i, layer in enumerate(backbone.layers):
        deep.layers[i] = layer
    for layer in list(deep.layers)[kept:]:
        for dense in (layer.self_attn.o_proj, layer.mlp.down_proj):
            dense.kernel[...] = jnp.zeros_like(dense.kernel[...])
            if dense.bias is not None:
                dense.bias[...] = jnp.zeros_like(dense.bias[...])
    return deep


def new_implicit_prm(reference: CausalLM) -> CausalLM:
    """pi for the implicit PRM: a copy of the (frozen) reference, so r(y) = 0 at the start."""
    return _copy(reference)


def head_logits(
    model: RewardModel, tokens_BxS: jax.Array, attention_mask_BxS: jax.Array
) -> jax.Array:
    """The logit whose sigmoid the model outputs: the scalar head's value, or l1 - l0 of the 2-class
    head (softmax(l)[1] = sigmoid(l1 - l0))."""
    if model.score is None:
        raise ValueError(f"head_logits needs a scalar or two_class head, not {model.head.kind!r}")
    out_BxSxC = model.score(model.backbone(tokens_BxS, attention_mask_BxS))
    if model.head.kind == "two_class":
        return out_BxSxC[..., 1] - out_BxSxC[..., 0]
    return out_BxSxC[..., 0]


def sequence_logp(
    model: CausalLM, tokens_BxS: jax.Array, attention_mask_BxS: jax.Array
) -> jax.Array:
    """log pi(tokens[t] | tokens[<t]) at every position t (0 at t = 0), aligned with the tokens
    (``models.likelihood_prm.token_logp``, which a LikelihoodPRM's language model uses too)."""
    return token_logp(model, tokens_BxS, attention_mask_BxS)
