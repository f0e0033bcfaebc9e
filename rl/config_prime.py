"""The checks of PRIME's keys: the online implicit PRM (``reward.implicit_prm_*``) and the
accuracy-band prompt filter (``data.accuracy_band``, ``data.filter_rounds``).

Kept apart from ``rl.config`` (whose dataclasses hold the keys and call these) so that file stays
one role and under the size limit; like ``rl.config_batch`` it takes the sections as arguments and
sits below ``rl.config``. Every error names the key and the value, before anything is built.
"""

from __future__ import annotations

from typing import Any

from rl.config_base import _fail, _int_at_least, _positive


def check_band(key: str, band: Any, samples: int) -> None:
    """A band keeps a prompt when k of its N samples are correct with low <= k/N <= high (bounds
    included, as PRIME's filter; ``rl.data.accuracy_band``); a band no k/N meets would keep no
    prompt at all."""
    if band == ():
        return
    numbers = isinstance(band, tuple) and all(
        isinstance(x, (int, float)) and not isinstance(x, bool) for x in band
    )
    if not numbers or len(band) != 2 or not 0 <= band[0] <= band[1] <= 1:
        _fail(key, band, "must be () (no filter) or (low, high) with 0 <= low <= high <= 1")
    if not any(band[0] <= k / samples <= band[1] for k in range(samples + 1)):
        _fail(
            key,
            band,
            f"keeps no prompt: with data.samples_per_prompt={samples} a prompt's sampled "
            f"accuracy is one of {[round(k / samples, 4) for k in range(samples + 1)]}",
        )


def validate_data(data: Any, prefix: str = "data") -> None:
    """``data.accuracy_band`` against ``data.samples_per_prompt``; ``data.filter_rounds`` >= 1."""
    check_band(f"{prefix}.accuracy_band", data.accuracy_band, data.samples_per_prompt)
    _int_at_least(f"{prefix}.filter_rounds", data.filter_rounds, 1)


def validate_reward(reward: Any, prefix: str = "reward") -> None:
    """The online implicit PRM's own values."""
    if not isinstance(reward.implicit_prm_online, bool):
        _fail(f"{prefix}.implicit_prm_online", reward.implicit_prm_online, "must be True or False")
    _positive(f"{prefix}.implicit_prm_lr", reward.implicit_prm_lr)
    _positive(f"{prefix}.implicit_prm_grad_clip", reward.implicit_prm_grad_clip)
    for name in ("implicit_prm_minibatches", "implicit_prm_microbatches"):
        _int_at_least(f"{prefix}.{name}", getattr(reward, name), 1)


def check_online(reward: Any, data: Any, implicit_prm: Any) -> None:
    """``reward.implicit_prm_online`` trains the implicit PRM the reward reads (``implicit_prm``:
    its ModelSpec), in minibatches and microbatches of the iteration's rows."""
    if not reward.implicit_prm_online:
        return
    if not (reward.uses_implicit_prm and implicit_prm.configured):
        _fail(
            "reward.implicit_prm_online",
            True,
            f"updates an implicit PRM, and none is configured (reward.implicit_prm_weight="
            f"{reward.implicit_prm_weight!r}, implicit_prm.path={implicit_prm.path!r}, "
            f"implicit_prm.preset={implicit_prm.preset!r}): set the weight > 0 and a path or "
            "preset",
        )
    rows = data.prompts_per_batch * data.samples_per_prompt
    mini, micro = reward.implicit_prm_minibatches, reward.implicit_prm_microbatches
    if rows % mini or (rows // mini) % micro:
        _fail(
            "reward.implicit_prm_minibatches",
            mini,
            f"with reward.implicit_prm_microbatches={micro}: must divide the {rows} rollout rows "
            "(data.prompts_per_batch x data.samples_per_prompt) evenly",
        )
