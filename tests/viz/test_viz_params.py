from dataclasses import dataclass, field

import pytest

from twin.errors import ConfigError
from twin.runner import resolve_config
from twin.viz.params import HEADLINE, as_override, field_type, model_params, parse_overrides, parse_seed


def test_controls_follow_the_scenario_config() -> None:
    """Headline controls appear only for keys the scenario has, with its (overridden) values."""
    # Prepare
    overrides = {"fl.rounds": "7", "fl.lr": "0.1"}
    _, config = resolve_config("home-health", overrides)
    # Execute
    params = model_params("home-health", config, seed=3, overrides=overrides)
    # Assert
    assert params["scenario_name"] == "home-health" and params["broker"] == "embedded"
    assert params["seed"] == {"type": "InputText", "label": "Seed", "value": "3"}
    assert params["fl.rounds"]["type"] == "SliderInt" and params["fl.rounds"]["value"] == 7
    assert params["fl.strategy"]["values"] == ["fedavg", "fedprox", "fedavgm"]
    assert params["overrides"]["value"] == "fl.lr=0.1"
    assert "devices.count" in params and all(c.key in params for c in HEADLINE if c.key.startswith("fl."))


@dataclass(frozen=True)
class _Devices:
    count: int = 4
    label: str = "x"


@dataclass(frozen=True)
class _OtherConfig:
    devices: _Devices = field(default_factory=_Devices)
    rate_bps: float = 1e6


def test_only_keys_the_config_has_get_controls() -> None:
    """A scenario with other keys gets controls only for the headline keys it has, plus seed and settings."""
    # Execute
    params = model_params("other", _OtherConfig(), seed=0, overrides={"rate_bps": "2e6"})
    # Assert
    assert {k for k, v in params.items() if isinstance(v, dict)} == {"seed", "devices.count", "overrides"}
    assert params["overrides"]["value"] == "rate_bps=2e6"


def test_slider_range_widens_to_hold_the_value() -> None:
    """A value beyond a slider's usual range widens the range rather than being clamped."""
    # Prepare
    _, config = resolve_config("home-health", {"fl.rounds": "500"})
    # Execute
    spec = model_params("home-health", config, seed=0, overrides={"fl.rounds": "500"})["fl.rounds"]
    # Assert
    assert spec["max"] == 500 and spec["value"] == 500


def test_parse_overrides_accepts_semicolons_and_lines() -> None:
    """Settings are separated by ``;`` or new lines; blanks are ignored; an entry without = is an error."""
    # Prepare
    text = "fl.lr=0.1; devices.count = 5\n\n fl.strategy=fedprox;"
    # Execute
    parsed = parse_overrides(text)
    # Assert
    assert parsed == {"fl.lr": "0.1", "devices.count": "5", "fl.strategy": "fedprox"}
    with pytest.raises(ConfigError, match="key=value"):
        parse_overrides("fl.lr")


@pytest.mark.parametrize("raw", ["-1", "seven", "1.5"])
def test_bad_seed_is_a_config_error(raw: str) -> None:
    """A seed that is not a whole number >= 0 is refused with a message naming it."""
    # Execute / Assert
    with pytest.raises(ConfigError, match="seed"):
        parse_seed(raw)


def test_values_become_set_text() -> None:
    """Control values are turned into ``--set`` text; the field types are read from the config."""
    # Prepare
    _, config = resolve_config("home-health", {})
    # Execute / Assert
    assert as_override(True) == "true" and as_override(0.5) == "0.5" and parse_seed(" 4 ") == 4
    assert field_type(config, "fl.rounds") is int
    with pytest.raises(ConfigError, match="no such"):
        field_type(config, "fl.nothing")
