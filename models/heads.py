"""Heads on the shared `Decoder` backbone: the critic (`ValueModel`) and reward models (ORM/PRM).

The language-model head itself is `models.decoder.CausalLM` (policy and reference). Reward models
come in the three conventions found in published math PRMs/ORMs; all return one fp32 score per
token, and `score_at_positions` keeps only the step-tag (or last-token) positions:

  kind="scalar"      a linear (or Linear-ReLU-Linear) head with one output per token; raw, or
  squashed
                     with a sigmoid when the checkpoint was trained that way. (ORMs; TRL value
                     heads.)
  kind="token_prob"  Math-Shepherd style: at a step tag the LM predicts a "good" or a "bad" token;
                     score = P(good) / (P(good) + P(bad)) = softmax over just those two logits.
  kind="two_class"   Qwen2.5-Math-PRM style: a 2-way head at the step tag; score = softmax(...)[1].

Letters: B batch, T tokens, D model width, C head outputs.
"""

from __future__ import annotations

import dataclasses

import jax
import jax.numpy as jnp
from flax import nnx

from models.config import ModelConfig
from models.decoder import CausalLM, Decoder
from models.layers import Dense, LMHead

REWARD_KINDS = ("scalar", "token_prob", "two_class")


@dataclasses.dataclass(frozen=True)
class RewardHead:
    """Which reward convention a checkpoint follows (what `hf_io.load_causal_lm(head=...)` builds).

    good/bad token ids are needed for "token_prob" only (Math-Shepherd: "+" and "-"). The head's
    layout (one Linear or Linear-ReLU-Linear, with or without bias) is read from the checkpoint when
    loading.
    """

    kind: str
    good_token_id: int | None = None
    bad_token_id: int | None = None
    sigmoid: bool = False

    def __post_init__(self):
        if self.kind not in REWARD_KINDS:
            raise ValueError(f"RewardHead.kind={self.kind!r} is not one of {REWARD_KINDS}")
        if self.kind == "token_prob":
            for name in ("good_token_id", "bad_token_id"):
                value = getattr(self, name)
                if not isinstance(value, int) or value < 0:
                    raise ValueError(
                        f"RewardHead.{name}={value!r} must be a token id for kind='token_prob'"
                    )
            if self.good_token_id == self.bad_token_id:
                raise ValueError(
                    f"RewardHead.good_token_id == bad_token_id == {self.good_token_id}"
                )
        if self.sigmoid and self.kind != "scalar":
            raise ValueError(
                f"RewardHead.sigmoid=True only applies to kind='scalar', not {self.kind!r}"
            )


class ScoreHead(nnx.Module):
    """[B, T, D] → [B, T, C] in fp32: one Linear, or Linear-ReLU-Linear (`mlp=True`).

    Computed in fp32 whatever the backbone's compute dtype: it is tiny and its outputs are rewards.
    """

    def __init__(
        self,
        config: ModelConfig,
        num_outputs: int,
        *,
        mlp: bool,
        bias: bool,
        rngs: nnx.Rngs,
        zero_init: bool = False,
    ):
        d = config.hidden_size
        fp32 = config.replace(dtype=jnp.float32)
        out_init = nnx.initializers.zeros if zero_init else None
        if mlp:
            self.dense = Dense(
                (d,),
                (d,),
                in_axes=("embed",),
                out_axes=("mlp",),
                use_bias=bias,
                config=fp32,
                rngs=rngs,
            )
            self.out = Dense(
                (d,),
                (num_outputs,),
                in_axes=("mlp",),
                out_axes=("classes",),
                use_bias=bias,
                config=fp32,
                rngs=rngs,
                kernel_init=out_init,
            )
        else:
            self.dense = None
            self.out = Dense(
                (d,),
                (num_outputs,),
                in_axes=("embed",),
                out_axes=("classes",),
                use_bias=bias,
                config=fp32,
                rngs=rngs,
                kernel_init=out_init,
            )

    def __call__(self, hidden_BxTxD: jax.Array) -> jax.Array:
        h = hidden_BxTxD.astype(jnp.float32)
        if self.dense is not None:
            h = jax.nn.relu(self.dense(h))
        return self.out(h)


class ValueModel(nnx.Module):
    """Critic: backbone + scalar value head (`v_head`, zero-initialised so initial values are 0)."""

    def __init__(
        self,
        config: ModelConfig,
        *,
        rngs: nnx.Rngs,
        backbone: Decoder | None = None,
        mlp_head: bool = False,
        head_bias: bool = True,
    ):
        self.config = config
        self.backbone = Decoder(config, rngs=rngs) if backbone is None else backbone
        self.v_head = ScoreHead(config, 1, mlp=mlp_head, bias=head_bias, rngs=rngs, zero_init=True)

    def __call__(
        self,
        input_ids_BxT: jax.Array,
        attention_mask_BxT: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
    ) -> jax.Array:
        """values_BxT (fp32)."""
        hidden = self.backbone(input_ids_BxT, attention_mask_BxT, positions_BxT)
        return self.v_head(hidden)[..., 0]

    @classmethod
    def from_policy(cls, policy: CausalLM, *, rngs: nnx.Rngs | None = None) -> ValueModel:
        """A critic whose backbone starts as a copy of `policy`'s (same values, own buffers, same
        shardings), with a fresh value head. Own buffers matter: policy and critic are donated
        together in the train step, and a buffer may be donated only once.

        The head is created on the default device; on a mesh, follow with `sharding.shard_model`.
        """
        backbone = nnx.clone(policy.backbone)
        nnx.update(backbone, jax.tree.map(jnp.copy, nnx.state(backbone)))
        return cls(policy.config, rngs=rngs or nnx.Rngs(0), backbone=backbone)


class RewardModel(nnx.Module):
    """Frozen ORM/PRM: backbone + one of the three heads; `__call__` gives scores_BxT (fp32).

    `backbone` reuses an existing `Decoder` (shared, not copied), e.g. several heads on one trunk.
    """

    def __init__(
        self,
        config: ModelConfig,
        kind: str = "scalar",
        *,
        rngs: nnx.Rngs,
        good_token_id: int | None = None,
        bad_token_id: int | None = None,
        sigmoid: bool = False,
        mlp_head: bool = False,
        head_bias: bool = False,
        backbone: Decoder | None = None,
    ):
        self.config = config
        self.head = RewardHead(kind, good_token_id, bad_token_id, sigmoid)
        self.backbone = Decoder(config, rngs=rngs) if backbone is None else backbone
        if kind == "token_prob":
            for name, token in (("good_token_id", good_token_id), ("bad_token_id", bad_token_id)):
                if token >= config.vocab_size:
                    raise ValueError(
                        f"RewardModel {name}={token} is outside vocab_size={config.vocab_size}"
                    )
            self.lm_head = None if config.tie_word_embeddings else LMHead(config, rngs=rngs)
            self.score = None
        else:
            self.lm_head = None
            self.score = ScoreHead(
                config, 1 if kind == "scalar" else 2, mlp=mlp_head, bias=head_bias, rngs=rngs
            )

    def __call__(
        self,
        input_ids_BxT: jax.Array,
        attention_mask_BxT: jax.Array | None = None,
        positions_BxT: jax.Array | None = None,
    ) -> jax.Array:
        hidden_BxTxD = self.backbone(input_ids_BxT, attention_mask_BxT, positions_BxT)
        kind = self.head.kind
        if kind == "token_prob":
            table_VxD = (
                self.backbone.embed_tokens.embedding
                if self.lm_head is None
                else self.lm_head.embedding
            )[...]
            # Only the two candidate rows of the output embedding: the full-vocab softmax cancels in
            # P(good) / (P(good) + P(bad)).
            rows_2xD = jnp.take(
                table_VxD, jnp.array([self.head.good_token_id, self.head.bad_token_id]), axis=0
            )
            logits_BxTx2 = jnp.einsum(
                "btd,cd->btc", hidden_BxTxD.astype(jnp.float32), rows_2xD.astype(jnp.float32)
            )
            return jax.nn.softmax(logits_BxTx2, axis=-1)[..., 0]
        logits_BxTxC = self.score(hidden_BxTxD)
        if kind == "two_class":
            return jax.nn.softmax(logits_BxTxC, axis=-1)[..., 1]
        scores_BxT = logits_BxTxC[..., 0]
        return jax.nn.sigmoid(scores_BxT) if self.head.sigmoid else scores_BxT


def score_at_positions(
    model: nnx.Module,
    input_ids_BxT: jax.Array,
    attention_mask_BxT: jax.Array | None,
    positions_mask_BxT: jax.Array,
) -> jax.Array:
    """The model's per-token scores where `positions_mask_BxT` is True (step tags), 0 elsewhere.

    Works for `RewardModel` (any kind) and `ValueModel`; pads are never selected because callers
    build the position mask from real tokens.
    """
    scores_BxT = model(input_ids_BxT, attention_mask_BxT)
    return jnp.where(positions_mask_BxT.astype(jnp.bool_), scores_BxT, 0.0)


def last_token_mask(attention_mask_BxT: jax.Array) -> jax.Array:
    """True at each row's last real token (for ORMs scored at the end); works for left or right
    pads."""
    mask = attention_mask_BxT.astype(jnp.bool_)
    next_is_real = jnp.concatenate([mask[:, 1:], jnp.zeros_like(mask[:, :1])], axis=1)
    return mask & ~next_is_real
