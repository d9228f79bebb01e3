"""Config files: ``twin run <scenario> --config file.toml`` (``--set`` still overrides them).

A config file holds the same dotted keys as ``--set``, in TOML tables (``[fl]`` ``rounds = 5`` is
``--set fl.rounds=5``): the ``config.toml`` of every run directory is one, and so is what
``twin config <scenario> --format toml`` prints. An optional ``[twin]`` table names the scenario and
seed (``scenario = "home-health"``, ``seed = 3``); without it, the ``summary.json`` beside the file (a run
directory's) supplies them, so ``twin run --config runs/<id>/config.toml`` repeats that run.
"""

from __future__ import annotations

import json
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from twin.config import apply_overrides
from twin.errors import ConfigError

RUN_TABLE = "twin"
SUMMARY_FILE = "summary.json"


@dataclass(frozen=True, slots=True)
class ConfigFile:
    """What a config file says: dotted key → value, and the scenario and seed it is for (if it says)."""

    path: Path
    values: dict[str, Any] = field(default_factory=dict)
    scenario: str | None = None
    seed: int | None = None


def read_config_file(path: Path) -> ConfigFile:
    """Read a TOML config file (and the run's ``summary.json`` beside it, for scenario and seed).

    Raises:
        ConfigError: the file is missing or not TOML, or its ``[twin]`` table is malformed.
    """
    try:
        document = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"--config {path}: cannot read it ({exc.strerror or exc})") from None
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--config {path}: not valid TOML ({exc})") from None
    run = document.pop(RUN_TABLE, {})
    if not isinstance(run, dict) or set(run) - {"scenario", "seed"}:
        raise ConfigError(f"--config {path}: the [{RUN_TABLE}] table may only hold scenario and seed")
    scenario, seed = run.get("scenario"), run.get("seed")
    summary = _summary_beside(path)
    scenario = scenario if scenario is not None else summary.get("scenario")
    seed = seed if seed is not None else summary.get("seed")
    if scenario is not None and not isinstance(scenario, str):
        raise ConfigError(f"--config {path}: scenario must be a string, got {scenario!r}")
    if seed is not None and (isinstance(seed, bool) or not isinstance(seed, int) or seed < 0):
        raise ConfigError(f"--config {path}: seed must be a whole number >= 0, got {seed!r}")
    return ConfigFile(path, flatten_tables(document), scenario, seed)


def _summary_beside(path: Path) -> dict[str, Any]:
    """The run summary next to a run's ``config.toml`` (empty when there is none or it is unreadable)."""
    try:
        summary = json.loads((path.parent / SUMMARY_FILE).read_text(encoding="utf-8"))
    except (OSError, ValueError):
        return {}
    return summary if isinstance(summary, dict) else {}


def flatten_tables(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key → value of nested TOML tables (``{"fl": {"rounds": 5}}`` → ``{"fl.rounds": 5}``)."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, dict):
            out.update(flatten_tables(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = value
    return out


def apply_config_file(config: Any, config_file: ConfigFile) -> Any:
    """``config`` with the file's values applied and validated.

    Raises:
        ConfigError: an unknown key or a value of the wrong type or range, as one line naming the file.
    """
    try:
        return apply_overrides(config, config_file.values)
    except ConfigError as exc:
        raise ConfigError(f"--config {config_file.path}: {str(exc).removeprefix('--set ')}") from None


def scenario_and_seed(
    target: str | None, seed: int | None, config_file: ConfigFile | None
) -> tuple[str, int]:
    """The scenario to run (``target``, else the file's) and its seed (given, else the file's, else 0).

    Raises:
        ConfigError: neither ``target`` nor the file names a scenario, or they name different ones.
        UnknownScenarioError: ``target`` designates no scenario (see :func:`usecases.registry.resolve`).
    """
    from usecases import registry

    from_file = config_file.scenario if config_file is not None else None
    if target is None and from_file is None:
        raise ConfigError(
            "give a scenario (see `twin list`), or --config with a [twin] scenario or a run's config.toml"
        )
    name = registry.resolve_one(target) if target is not None else str(from_file)
    if from_file is not None and from_file != name:
        assert config_file is not None
        raise ConfigError(f"--config {config_file.path} is for scenario {from_file!r}, not {name!r}")
    if seed is None:
        seed = config_file.seed if config_file is not None and config_file.seed is not None else 0
    return name, seed


def overrides_with_file(
    scenario: str, config_file: ConfigFile | None, overrides: Mapping[str, Any]
) -> dict[str, Any]:
    """What a run overrides: the file's values (validated first, so errors name the file), then ``--set``'s.

    Raises:
        ConfigError: the file has an unknown key or a bad value.
    """
    if config_file is None:
        return dict(overrides)
    from usecases import registry

    apply_config_file(registry.get(scenario).default_config(), config_file)
    return {**config_file.values, **overrides}
