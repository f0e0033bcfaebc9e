"""The config vocabulary, used directly: each check names the key and the value it rejects."""

import math

import pytest

from rl.config_base import (
    ConfigError,
    MeshConfig,
    ModelSpec,
    _int_at_least,
    _one_of,
    _positive,
    _unit_interval,
)


@pytest.mark.parametrize(
    "check, value, message",
    [
        (lambda v: _positive("a.b", v), 0, "config.a.b=0: must be a finite number > 0"),
        (lambda v: _positive("a.b", v), math.inf, "config.a.b=inf: must be a finite number > 0"),
        (lambda v: _positive("a.b", v), True, "config.a.b=True: must be a finite number > 0"),
        (
            lambda v: _positive("a.b", v, allow_zero=True),
            -1e-9,
            "config.a.b=-1e-09: must be a finite number >= 0",
        ),
        (lambda v: _int_at_least("a.n", v, 1), 0, "config.a.n=0: must be an integer >= 1"),
        (lambda v: _int_at_least("a.n", v, 1), 2.0, "config.a.n=2.0: must be an integer >= 1"),
        (lambda v: _unit_interval("a.p", v), 1.5, r"config.a.p=1.5: must be in \[0, 1\]"),
        (
            lambda v: _one_of("a.k", v, ("x", "y")),
            "z",
            r"config.a.k='z': must be one of \('x', 'y'\)",
        ),
    ],
)
def test_each_check_names_key_and_value(check, value, message):
    with pytest.raises(ConfigError, match=message):
        check(value)


@pytest.mark.parametrize("value", [1e-9, 1, 0.5])
def test_checks_accept_values_inside_their_range(value):
    _positive("a", value)
    _unit_interval("a", value if value <= 1 else 1)
    _int_at_least("a", 1, 1)


def test_mesh_rules_from_json_lists_become_tuples():
    mesh = MeshConfig(shape=(1, -1, 1), rules=[["batch", ["data", "fsdp"]], ["embed", None]])
    assert mesh.validate().rules == (("batch", ("data", "fsdp")), ("embed", None))


def test_model_spec_rejects_path_and_preset_together_naming_both():
    with pytest.raises(ConfigError, match=r"config.prm.preset='tiny': give path or preset"):
        ModelSpec.from_section("prm", {"path": "/x", "preset": "tiny"})


def test_model_spec_format_is_checked_per_section():
    assert ModelSpec.from_section("prm", {"format": "math_shepherd"}).published_format
    with pytest.raises(ConfigError, match=r"config.orm.format='math_shepherd'"):
        ModelSpec.from_section("orm", {"format": "math_shepherd"})
