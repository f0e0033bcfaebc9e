"""Scoring an evaluation's responses with a frozen reward model, as an ORM or a PRM.

The project's own reward models read prompt + response in the POLICY's tokenizer (``rl.evaluate``
checks that the vocabularies agree): an ORM's score is read at the last response token (as PPO
reads it), a PRM's step scores at the policy's step-end tokens (``rewards.steps``). A published PRM
(``models.prm.ProcessRewardModel``, any tokenizer) scores the question and the response's complete
steps in its own input format (``published_step_scores``), as PPO's ``rl.algo.prm_scorer`` does.
Step scores are aggregated for ranking by ``rl.eval.metrics.aggregate_prm``.

Letters: M response rows, P prompt length, R max new tokens.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from flax import nnx

from models.likelihood_prm import LikelihoodPRM
from models.prm import ProcessRewardModel
from models.sharding import array_sharding, use_mesh
from rewards import steps as steps_lib
from rl.data import prompts as prompts_lib
from rl.eval.generation import Generations
from rl.eval.metrics import aggregate_prm
from rl.rollout.sampling_program import FinishReason

REWARD_KINDS = ("orm", "prm")


def _as_graph_and_state(model: Any) -> tuple[Any, Any]:
    if isinstance(model, tuple):
        return model
    return nnx.split(model)


class RewardScorer:
    """Per-response-token scores of a frozen reward model over prompt + response rows.

    One jitted forward over chunks of exactly `chunk_rows` rows (the last chunk padded with
    repeats), so every generation mode reuses one compiled program. On a mesh the rows are sharded
    over the batch axes and the model's parameters must already live on the mesh.
    """

    def __init__(self, reward_model: Any, *, chunk_rows: int, mesh=None, rules=None):
        self.graphdef, self.params = _as_graph_and_state(reward_model)
        self.chunk_rows, self.mesh, self.rules = chunk_rows, mesh, rules
        graphdef = self.graphdef
        # A LikelihoodPRM's scores need the step ends and response mask (models.likelihood_prm).
        module = reward_model if not isinstance(reward_model, tuple) else nnx.merge(*reward_model)
        self.needs_step_ends = isinstance(module, LikelihoodPRM)
        if self.needs_step_ends:
            self._forward = jax.jit(
                lambda params, ids, mask, *steps: nnx.merge(graphdef, params).step_scores(
                    ids, mask, *steps
                )
            )
        else:
            self._forward = jax.jit(
                lambda params, ids, mask: nnx.merge(graphdef, params)(ids, mask)
            )

    def __call__(
        self,
        prompt_ids_MxP: np.ndarray,
        prompt_mask_MxP: np.ndarray,
        tokens_MxR: np.ndarray,
        response_MxR: np.ndarray,
        step_end_MxR: np.ndarray | None = None,
    ) -> np.ndarray:
        """scores_MxR (fp32): the model's score at every response position (0 in columns past
        the longest response). ``step_end_MxR``: the responses' step ends, which a
        ``LikelihoodPRM`` needs (``needs_step_ends``)."""
        if self.needs_step_ends and step_end_MxR is None:
            raise ValueError("RewardScorer: a LikelihoodPRM needs step_end_MxR (its step ends)")
        r_full = tokens_MxR.shape[1]
        # Only the columns some row uses: the longest prompt and the longest response, each
        # rounded up to a multiple of WIDTH_MULTIPLE (a few compiled widths). Exact: positions
        # come from the mask, the cut left columns are padding in every row and the cut right
        # ones come after every row's response (causal attention: nothing before reads them).
        p, r = _used_widths(prompt_mask_MxP, response_MxR)
        prompt_ids_MxP, prompt_mask_MxP = prompt_ids_MxP[:, -p:], prompt_mask_MxP[:, -p:]
        tokens_MxR, response_MxR = tokens_MxR[:, :r], response_MxR[:, :r]
        if step_end_MxR is not None:
            step_end_MxR = np.asarray(step_end_MxR)[:, :r]
        seq = np.concatenate([prompt_ids_MxP, tokens_MxR], axis=1).astype(np.int32)
        seq_mask = np.concatenate([prompt_mask_MxP.astype(bool), response_MxR], axis=1)
        arrays = [seq, seq_mask]
        if self.needs_step_ends:
            before = np.zeros_like(prompt_mask_MxP, bool)
            arrays += [
                np.concatenate([before, response_MxR.astype(bool)], axis=1),
                np.concatenate([before, np.asarray(step_end_MxR, bool)], axis=1),
            ]
        m, c = seq.shape[0], self.chunk_rows
        out = []
        for start in range(0, m, c):
            idx = np.minimum(np.arange(start, start + c), m - 1)
            args = [jnp.asarray(a[idx]) for a in arrays]
            if self.mesh is None:
                scores = self._forward(self.params, *args)
            else:
                sharding = array_sharding(("batch", None), args[0].shape, self.mesh, self.rules)
                args = jax.device_put(args, sharding)
                with use_mesh(self.mesh, self.rules):
                    scores = self._forward(self.params, *args)
            out.append(np.asarray(jax.device_get(scores))[: min(c, m - start), p:])
        scores_MxR = np.concatenate(out).astype(np.float32)
        return np.pad(scores_MxR, ((0, 0), (0, r_full - r)))  # 0 past every response


WIDTH_MULTIPLE = 16


def _used_widths(prompt_mask_MxP: np.ndarray, response_MxR: np.ndarray) -> tuple[int, int]:
    """(prompt, response) columns that hold some row's real tokens (left-padded prompts,
    responses real tokens first), each rounded up to ``WIDTH_MULTIPLE`` and at most the array's."""
    p_full, r_full = prompt_mask_MxP.shape[1], response_MxR.shape[1]
    longest_prompt = int(np.asarray(prompt_mask_MxP, bool).sum(axis=1).max(initial=0))
    longest_response = int(np.asarray(response_MxR, bool).sum(axis=1).max(initial=0))
    up = lambda n, full: min(full, WIDTH_MULTIPLE * max(1, -(-n // WIDTH_MULTIPLE)))  # noqa: E731
    return up(longest_prompt, p_full), up(longest_response, r_full)


def orm_scores(scores_MxR: np.ndarray, response_MxR: np.ndarray) -> np.ndarray:
    """[M]: each row's score at its last response token (the EOS when it ended by one)."""
    last = np.maximum(response_MxR.sum(axis=1) - 1, 0)
    return scores_MxR[np.arange(scores_MxR.shape[0]), last]


def prm_step_scores(scores_MxR: np.ndarray, step_end_MxR: np.ndarray) -> list[np.ndarray]:
    """Per row, the scores at its step ends, in order."""
    return [s[e] for s, e in zip(scores_MxR, step_end_MxR.astype(bool), strict=True)]


def published_step_scores(
    prm: ProcessRewardModel,
    questions_M: Sequence[str],
    gens: Generations,
    tokenizer: Any,
    separator: str,
) -> list[list[float]]:
    """A published PRM's score of each complete step of each response (a truncated response's
    trailing fragment is no step), from the same step texts PPO gives it."""
    truncated = np.asarray(gens.finish_reason) == FinishReason.LENGTH
    _, steps = steps_lib.batch_steps_and_ends(
        tokenizer, gens.tokens, gens.response_mask, separator, truncated
    )
    return prm.score_steps(list(questions_M), steps)


def reward_scores(
    scorer: RewardScorer | ProcessRewardModel,
    kind: str,
    gens: Generations,
    prompts: prompts_lib.PromptBatch,
    tokenizer: Any,
    *,
    separator: str,
    aggregation: str,
    questions_M: Sequence[str] | None = None,
) -> tuple[list[float], list[float | None], list[list | None]]:
    """Per response: the reward model's score (ORM: last token; PRM: aggregated steps, NaN without
    steps), the PRM return (sum of step scores; None for an ORM) and the step scores. A published
    PRM needs each response's question (``questions_M``)."""
    n, m = gens.samples_per_prompt, len(gens.texts)
    if isinstance(scorer, ProcessRewardModel):
        if kind != "prm" or questions_M is None:
            raise ValueError(
                f"a published PRM scores steps: reward_kind={kind!r} must be 'prm' and "
                "questions_M given"
            )
        steps = published_step_scores(scorer, questions_M, gens, tokenizer, separator)
        return (
            [aggregate_prm(s, aggregation) for s in steps],
            [float(np.sum(s)) for s in steps],
            steps,
        )
    if kind not in REWARD_KINDS:
        raise ValueError(f"reward_kind={kind!r}: must be one of {REWARD_KINDS}")
    rows = np.repeat(np.arange(prompts.input_ids.shape[0]), n)
    ends = None
    if kind == "prm":
        ends = steps_lib.step_end_masks(tokenizer, gens.tokens, gens.response_mask, separator)
    args = [prompts.input_ids[rows], prompts.attention_mask[rows], gens.tokens, gens.response_mask]
    if getattr(scorer, "needs_step_ends", False):  # a LikelihoodPRM (RewardScorer)
        args.append(ends)
    scores = scorer(*args)
    if kind == "orm":
        return [float(x) for x in orm_scores(scores, gens.response_mask)], [None] * m, [None] * m
    steps = [s.astype(float).tolist() for s in prm_step_scores(scores, ends)]
    return (
        [aggregate_prm(s, aggregation) for s in steps],
        [float(np.sum(s)) for s in steps],
        steps,
    )
