"""The controls of the visualisation: a scenario's headline parameters as Mesa user inputs.

SolaraViz shows each entry of ``model_params`` whose value is a dict with a ``type`` as an input and
passes the chosen values to the model class on Reset. The headline controls below appear only for
scenarios whose config has that key; every other field is reachable through the free-text
``overrides`` input (``key=value; key=value``), the same dotted keys as ``--set``.
"""

from __future__ import annotations

import typing
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal, get_args, get_origin

from twin.config import flatten, parse_set_options
from twin.errors import ConfigError

ControlType = Literal["SliderInt", "SliderFloat", "Select", "Checkbox"]


@dataclass(frozen=True, slots=True)
class Control:
    """One headline parameter: its dotted config key, label and input (range for sliders)."""

    key: str
    label: str
    input_type: ControlType
    low: float = 0.0
    high: float = 1.0
    step: float = 1.0

    def __post_init__(self) -> None:
        if self.input_type.startswith("Slider") and not (self.low < self.high and self.step > 0):
            raise ValueError(f"control {self.key}: need low < high and step > 0, got {self}")


HEADLINE: tuple[Control, ...] = (
    Control("devices.count", "Devices", "SliderInt", 1, 200, 1),
    Control("area.base_stations", "Base stations", "SliderInt", 1, 16, 1),
    Control("fl.rounds", "Federated rounds", "SliderInt", 1, 100, 1),
    Control("fl.clients_per_round", "Share of devices per round", "SliderFloat", 0.05, 1.0, 0.05),
    Control("fl.strategy", "Aggregation", "Select"),
    Control("fl.deadline_s", "Round deadline (s)", "SliderFloat", 0.5, 20.0, 0.5),
    Control("fl.round_interval_s", "Round interval (s)", "SliderFloat", 1.0, 120.0, 1.0),
    Control("fl.dropout_prob", "Device dropout probability", "SliderFloat", 0.0, 0.5, 0.01),
    Control("fl.wire_dtype", "Model update precision", "Select"),
    Control("radio.load_factor", "Interference load", "SliderFloat", 0.0, 1.0, 0.05),
    Control("inference.enabled", "Two-stage inference", "Checkbox"),
    Control("inference.confidence_threshold", "Escalate below confidence", "SliderFloat", 0.0, 1.0, 0.01),
    Control("qoais.accuracy", "QoAIS target: accuracy", "SliderFloat", 0.0, 1.0, 0.01),
    Control("qoais.round_latency_s", "QoAIS target: round latency (s)", "SliderFloat", 0.5, 30.0, 0.5),
    Control("qoais.coverage", "QoAIS target: coverage", "SliderFloat", 0.0, 1.0, 0.01),
)


def field_type(config: Any, key: str) -> Any:
    """The annotated type of the dotted ``key`` of a (nested) config dataclass."""
    node, *rest = key.split(".")
    hints = typing.get_type_hints(type(config))
    if node not in hints:
        raise ConfigError(f"{key}: no such config field")
    if not rest:
        return hints[node]
    return field_type(getattr(config, node), ".".join(rest))


def _input(control: Control, value: Any, config: Any) -> dict[str, Any]:
    """The Mesa user-input dict of ``control`` showing ``value``."""
    spec: dict[str, Any] = {"type": control.input_type, "label": control.label, "value": value}
    if control.input_type == "Select":
        tp = field_type(config, control.key)
        spec["values"] = list(get_args(tp)) if get_origin(tp) is Literal else [value]
    elif control.input_type.startswith("Slider"):
        cast = int if control.input_type == "SliderInt" else float
        spec.update(
            value=cast(value),
            min=cast(min(control.low, value)),
            max=cast(max(control.high, value)),
            step=cast(control.step),
        )
    return spec


def model_params(
    scenario: str,
    config: Any,
    *,
    seed: int,
    overrides: Mapping[str, str],
    broker: str = "embedded",
    out_dir: str = "",
) -> dict[str, Any]:
    """SolaraViz ``model_params`` of an agent scenario whose resolved config is ``config``.

    ``overrides`` are the ``--set`` values ``config`` was resolved with: those without a headline
    control start the free-text input, so a Reset keeps them.
    """
    values = flatten(config)
    controls = [c for c in HEADLINE if c.key in values and values[c.key] is not None]
    covered = {c.key for c in controls}
    rest = "; ".join(f"{k}={v}" for k, v in overrides.items() if k not in covered)
    params: dict[str, Any] = {
        "scenario_name": scenario,
        "broker": broker,
        "out_dir": out_dir,
        "seed": {"type": "InputText", "label": "Seed", "value": str(seed)},
    }
    params.update({c.key: _input(c, values[c.key], config) for c in controls})
    params["overrides"] = {"type": "InputText", "label": "More settings (key=value; …)", "value": rest}
    return params


def parse_overrides(text: str) -> dict[str, str]:
    """``key=value`` pairs separated by ``;`` or new lines (blank entries are ignored).

    Raises:
        ConfigError: an entry without ``=``.
    """
    items = [part.strip() for line in text.splitlines() for part in line.split(";")]
    return parse_set_options([item for item in items if item])


def as_override(value: Any) -> str:
    """A control's value as ``--set`` text (booleans as true/false)."""
    if isinstance(value, bool):
        return "true" if value else "false"
    return str(value)


def parse_seed(value: int | str) -> int:
    """The seed typed into the seed input.

    Raises:
        ConfigError: not a non-negative integer.
    """
    try:
        seed = int(str(value).strip())
    except ValueError:
        raise ConfigError(f"seed must be a whole number >= 0, got {value!r}") from None
    if seed < 0:
        raise ConfigError(f"seed must be >= 0, got {seed}")
    return seed
