"""Batched reward-model forwards: the padded last batch changes no row, and the per-token scores
and log-probs are the model's own."""

import jax
import numpy as np
from flax import nnx

from models.decoder import CausalLM
from rl.algo import losses as ppo
from rl.reward_models import inference, modeling
from tests.rl.reward_models.toy_rm import toy_arrays


def test_batch_size_changes_no_row(tok, model_config):
    arrays = toy_arrays(tok, "test", 7, seed=3)
    prm = modeling.new_reward_model(model_config, seed=1)
    out = prm.score.out
    out.kernel[...] = jax.random.normal(jax.random.key(0), out.kernel.shape)
    whole = inference.token_scores(prm, arrays, batch_size=len(arrays))
    assert whole.shape == arrays.tokens.shape and 0 <= whole.min() and whole.max() <= 1
    # 7 rows in batches of 3: the last batch is padded with row 0, and the padding is dropped.
    np.testing.assert_allclose(inference.token_scores(prm, arrays, batch_size=3), whole, atol=1e-6)
    direct = jax.jit(lambda state, t, m: nnx.merge(nnx.graphdef(prm), state)(t, m))
    np.testing.assert_allclose(
        whole, direct(nnx.state(prm), arrays.tokens, arrays.attention_mask), atol=1e-6
    )


def test_token_logps_are_the_next_token_log_probs(tok, model_config):
    arrays = toy_arrays(tok, "test", 5, seed=4)
    model = CausalLM(model_config, rngs=nnx.Rngs(2))
    logp = inference.token_logps(model, arrays, batch_size=2)
    graphdef = nnx.graphdef(model)
    logits = jax.jit(lambda state, t, m: nnx.merge(graphdef, state)(t, m))(
        nnx.state(model), arrays.tokens, arrays.attention_mask
    )
    want = np.asarray(ppo.token_logp(logits[:, :-1], arrays.tokens[:, 1:]))
    assert (logp[:, 0] == 0).all()
    np.testing.assert_allclose(logp[:, 1:], want, atol=1e-5)
