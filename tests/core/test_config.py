import tomllib

import pytest

from twin.config import apply_overrides, flatten, parse_set_options, to_toml
from twin.errors import ConfigError
from usecases.home_health import HomeHealthConfig


def test_override_nested_fields_with_coercion() -> None:
    """Dotted keys reach nested sections; strings become the field's type."""
    cfg = apply_overrides(
        HomeHealthConfig(),
        {
            "fl.rounds": "7",
            "fl.lr": "0.1",
            "radio.scenario": "UMi",
            "link.bs_power_w": "500",
            "radio.fixed_rate_bps": "1e8",
        },
    )
    assert cfg.fl.rounds == 7 and cfg.fl.lr == 0.1
    assert cfg.radio.scenario == "UMi" and cfg.radio.fixed_rate_bps == 1e8
    assert cfg.link.bs_power_w == 500.0
    assert HomeHealthConfig().fl.rounds == 20  # the default is untouched


def test_optional_field_back_to_none() -> None:
    """An optional field can be set back to none."""
    cfg = apply_overrides(HomeHealthConfig(), {"radio.fixed_rate_bps": "1e9"})
    assert apply_overrides(cfg, {"radio.fixed_rate_bps": "none"}).radio.fixed_rate_bps is None


@pytest.mark.parametrize(
    ("key", "value", "message"),
    [
        ("fl.rounds", "2.5", "expected int"),
        ("fl.strategy", "fedsgd", "one of 'fedavg', 'fedprox', 'fedavgm'"),
        ("radio.scenario", "Mars", "expected one of"),
        ("fl.clients_per_round", "1.5", "clients_per_round must be within"),
        ("nope", "1", "unknown key"),
        ("fl.rounds", "0", "rounds must be > 0"),
    ],
)
def test_bad_overrides_name_the_key(key: str, value: str, message: str) -> None:
    """A bad key or value raises ConfigError naming what was wrong."""
    with pytest.raises(ConfigError, match=message):
        apply_overrides(HomeHealthConfig(), {key: value})


def test_toml_round_trip_holds_every_value() -> None:
    """The resolved config written as TOML holds every leaf value (None left out)."""
    cfg = apply_overrides(HomeHealthConfig(), {"fl.rounds": "9"})
    data = tomllib.loads(to_toml(cfg))
    assert data["fl"]["rounds"] == 9
    for key, value in flatten(cfg).items():
        node = data
        for part in key.split("."):
            node = node.get(part, {}) if isinstance(node, dict) else {}
        if value is not None:
            assert node == (list(value) if isinstance(value, tuple) else value), key


def test_parse_set_options() -> None:
    """--set items split on the first '='; an item without '=' is an error."""
    assert parse_set_options(["a.b=1", "c=x=y"]) == {"a.b": "1", "c": "x=y"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_set_options(["novalue"])
