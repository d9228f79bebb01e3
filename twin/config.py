"""Scenario configuration: frozen dataclasses validated on construction, TOML out, ``--set`` in.

Every field of a scenario's config is addressable with a dotted key (``fl.rounds``,
``devices.count``) and overridable from the CLI: ``twin run home-health --set fl.rounds=30``.
"""

from __future__ import annotations

import dataclasses
import math
import types
import typing
from collections.abc import Mapping
from typing import Any, Literal, get_args, get_origin

import tomli_w

from twin.errors import ConfigError


def flatten(config: Any, prefix: str = "") -> dict[str, Any]:
    """Dotted key → value for every leaf field of a (nested) config dataclass."""
    out: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        key = f"{prefix}{f.name}"
        if dataclasses.is_dataclass(value):
            out.update(flatten(value, key + "."))
        else:
            out[key] = value
    return out


def to_toml(config: Any) -> str:
    """The resolved config as TOML text (``None`` values are left out)."""

    def clean(value: Any) -> Any:
        if isinstance(value, dict):
            return {k: clean(v) for k, v in value.items() if v is not None}
        if isinstance(value, tuple | list):
            return [clean(v) for v in value]
        return value

    return tomli_w.dumps(clean(dataclasses.asdict(config)))


def _type_name(tp: Any) -> str:
    if get_origin(tp) is Literal:
        return "one of " + ", ".join(repr(a) for a in get_args(tp))
    if get_origin(tp) in (types.UnionType, typing.Union):
        return " or ".join(_type_name(a) for a in get_args(tp))
    return getattr(tp, "__name__", str(tp))


def _number(text: str) -> int | float:
    """``text`` as an exact int when it is one (``12``), else as a float (``1e3``, ``nan``)."""
    try:
        return int(text)
    except ValueError:
        return float(text)


def _coerce(key: str, raw: Any, tp: Any) -> Any:
    """Convert ``raw`` (a string from the CLI or a TOML value) to the field type ``tp``."""
    origin = get_origin(tp)
    if origin in (types.UnionType, typing.Union):
        args = get_args(tp)
        if type(None) in args and (
            raw is None or (isinstance(raw, str) and raw.lower() in ("none", "null", ""))
        ):
            return None
        for arg in args:
            if arg is type(None):
                continue
            try:
                return _coerce(key, raw, arg)
            except ConfigError:
                continue
        raise ConfigError(f"--set {key}: expected {_type_name(tp)}, got {raw!r}")
    if origin is Literal:
        allowed = get_args(tp)
        if raw in allowed:
            return raw
        raise ConfigError(f"--set {key}: expected {_type_name(tp)}, got {raw!r}")
    if tp is bool:
        if isinstance(raw, bool):
            return raw
        if isinstance(raw, str) and raw.lower() in ("true", "1", "yes", "on", "false", "0", "no", "off"):
            return raw.lower() in ("true", "1", "yes", "on")
        raise ConfigError(f"--set {key}: expected bool (true/false), got {raw!r}")
    if tp is int:
        if isinstance(raw, bool):
            raise ConfigError(f"--set {key}: expected int, got {raw!r}")
        try:
            value = _number(raw) if isinstance(raw, str) else raw
            if isinstance(value, float) and not value.is_integer():
                raise ValueError
            return int(value)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"--set {key}: expected int, got {raw!r}") from exc
    if tp is float:
        try:
            if isinstance(raw, bool):
                raise ValueError
            number = float(raw)
        except (TypeError, ValueError, OverflowError) as exc:
            raise ConfigError(f"--set {key}: expected float, got {raw!r}") from exc
        if not math.isfinite(number):
            raise ConfigError(f"--set {key}: expected float, got {raw!r} (not finite)")
        return number
    if tp is str:
        return str(raw)
    if origin is tuple:
        item = get_args(tp)[0]
        items = raw if isinstance(raw, list | tuple) else [s for s in str(raw).split(",") if s.strip()]
        return tuple(_coerce(key, x.strip() if isinstance(x, str) else x, item) for x in items)
    raise ConfigError(f"--set {key}: fields of type {_type_name(tp)} cannot be set")


def apply_overrides(config: Any, overrides: Mapping[str, Any]) -> Any:
    """Return a copy of ``config`` with dotted-key overrides applied and validated.

    Raises:
        ConfigError: unknown key (listing the valid ones) or a value of the wrong type or range.
    """
    valid = flatten(config)
    grouped: dict[str, Any] = {}
    for key, raw in overrides.items():
        if key not in valid:
            close = [k for k in valid if k.split(".")[-1] == key.split(".")[-1]]
            hint = f" (did you mean {', '.join(close)}?)" if close else ""
            raise ConfigError(f"--set {key}: unknown key{hint}; valid keys: {', '.join(sorted(valid))}")
        grouped[key] = raw
    return _replace(config, grouped, "")


def _replace(config: Any, overrides: Mapping[str, Any], prefix: str) -> Any:
    hints = typing.get_type_hints(type(config))
    changes: dict[str, Any] = {}
    for f in dataclasses.fields(config):
        key = f"{prefix}{f.name}"
        value = getattr(config, f.name)
        if dataclasses.is_dataclass(value):
            sub = {k: v for k, v in overrides.items() if k.startswith(key + ".")}
            if sub:
                changes[f.name] = _replace(value, sub, key + ".")
        elif key in overrides:
            changes[f.name] = _coerce(key, overrides[key], hints[f.name])
    if not changes:
        return config
    try:
        return dataclasses.replace(config, **changes)
    except (ValueError, TypeError, OverflowError) as exc:
        raise ConfigError(f"--set {prefix.rstrip('.') or 'config'}: {exc}") from exc


def parse_set_options(items: list[str]) -> dict[str, str]:
    """Parse ``key=value`` strings from ``--set``."""
    out: dict[str, str] = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key.strip():
            raise ConfigError(f"--set {item!r}: expected key=value")
        out[key.strip()] = value.strip()
    return out


def _finite(value: float) -> bool:
    """Whether ``value`` is a finite number (an int too large for a float is not)."""
    try:
        return math.isfinite(value)
    except OverflowError:
        return False


def check_positive(owner: str, **values: float) -> None:
    """Raise ``ValueError`` naming the first value that is not a finite number > 0 (NaN and ±inf fail)."""
    for name, value in values.items():
        if not (value > 0 and _finite(value)):
            raise ValueError(f"{owner}.{name} must be > 0 and finite, got {value}")


def check_range(owner: str, name: str, value: float, low: float, high: float) -> None:
    """Raise ``ValueError`` unless ``low <= value <= high`` and ``value`` is finite (NaN and ±inf fail)."""
    if not (low <= value <= high and _finite(value)):
        raise ValueError(f"{owner}.{name} must be within [{low}, {high}], got {value}")
