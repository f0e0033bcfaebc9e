"""SamplerConfig validation: each bad field is named with its value."""

import numpy as np
import pytest

from rl.rollout.sampler_config import SamplerConfig


@pytest.mark.parametrize(
    "bad",
    [
        dict(max_new_tokens=0),
        dict(temperature=-1.0),
        dict(top_p=0.0),
        dict(top_k=-2),
        dict(eos_ids=(1, -3)),
        dict(stop_strings=("",)),
    ],
)
def test_config_errors_name_the_field(bad):
    values = dict(max_new_tokens=4, **bad) if "max_new_tokens" not in bad else bad
    with pytest.raises(ValueError, match=f"SamplerConfig.{next(iter(bad))}="):
        SamplerConfig(**values)


def test_single_values_become_tuples_and_numbers_plain():
    cfg = SamplerConfig(
        max_new_tokens=np.int64(3), temperature=1, eos_ids=np.int32(5), stop_strings="x"
    )
    assert cfg.eos_ids == (5,) and cfg.stop_strings == ("x",)
    assert type(cfg.max_new_tokens) is int and type(cfg.temperature) is float
    assert type(cfg.eos_ids[0]) is int
