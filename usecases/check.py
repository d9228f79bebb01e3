"""Checker for user-written use cases (like Gymnasium's ``check_env``): does it honour the contracts?

``twin check <scenario | python.module>`` imports the module (which registers its scenario), builds
the scenario on the in-process bus, runs one federated round and verifies what the engine relies on:
a frozen, overridable config; base stations and uniquely named devices with links; a network agent;
a KPI row with the required columns; and the determinism contract (same seed, same KPIs).
"""

from __future__ import annotations

import dataclasses
import importlib
import math
from collections.abc import Callable
from functools import partial
from typing import Any

from broker.bus import LocalBus
from broker.topics import check_segment
from twin.config import apply_overrides, flatten
from twin.errors import TwinError
from usecases import registry
from usecases.registry import AgentScenario, BuildContext, CalculationResult, CalculationScenario

REQUIRED_KPIS = (
    "round",
    "sim_time_s",
    "round_latency_s",
    "accuracy",
    "service_accuracy",
    "energy_round_j",
    "energy_total_j",
    "co2_total_g",
    "stragglers",
    "selected",
)
MAX_SIM_S = 3600.0


def load(target: str) -> list[str]:
    """Scenario names named by ``target``: a registered name, or a module that registers scenarios."""
    if target in registry.names():
        return [target]
    before = set(registry.names())
    try:
        importlib.import_module(target)
    except ImportError as exc:
        raise TwinError(
            f"{target!r} is neither a scenario ({', '.join(sorted(before))}) nor importable: {exc}"
        ) from None
    added = sorted(set(registry.names()) - before)
    if not added:
        raise TwinError(f"module {target!r} registered no scenario (call usecases.registry.register(...))")
    return added


def check_scenario(name: str) -> list[str]:
    """Problems found with scenario ``name`` (an empty list means it passes)."""
    spec = registry.get(name)
    problems: list[str] = []
    _expect(problems, lambda: check_segment(spec.name, "scenario name"), "name")
    if not spec.summary.strip():
        problems.append("summary is empty")
    config = spec.default_config()
    problems += _check_config(config, agent=isinstance(spec, AgentScenario))
    if isinstance(spec, CalculationScenario):
        result = spec.compute(config)
        if not isinstance(result, CalculationResult) or not result.rows:
            problems.append("compute() must return a CalculationResult with at least one row")
        return problems
    if problems:
        return problems
    return _check_agents(spec, config)


def _check_config(config: Any, *, agent: bool) -> list[str]:
    if not dataclasses.is_dataclass(config):
        return ["default_config() must return a dataclass instance"]
    problems = []
    params = getattr(type(config), "__dataclass_params__", None)
    if params is not None and not params.frozen:
        problems.append(f"config {type(config).__name__} must be a frozen dataclass")
    values = flatten(config)
    try:
        same = apply_overrides(config, {k: _as_text(v) for k, v in values.items() if v is not None})
        if flatten(same) != values:
            problems.append("config values do not survive a --set round trip (check field types)")
    except TwinError as exc:
        problems.append(f"config cannot be overridden from the CLI: {exc}")
    sections = {k.split(".")[0] for k in values}
    for section in ("bus", "fl", "qoais", "carbon", "area", "radio", "link") if agent else ():
        if section not in sections:
            problems.append(f"an agent scenario's config needs a {section!r} section")
    return problems


def _as_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _check_agents(spec: AgentScenario, config: Any) -> list[str]:
    problems: list[str] = []
    rows = []
    for attempt in range(2):
        model = spec.build(config, BuildContext(f"check-{attempt}", 0, LocalBus(), 1))
        if attempt == 0:
            problems += _check_world(model)
            if problems:
                return problems
        while model.running and model.time < MAX_SIM_S:
            model.step()
        if not model.kpi_rows:
            return problems + [f"no federated round completed within {MAX_SIM_S:.0f} simulated seconds"]
        rows.append(model.kpi_rows[0])
    missing = [k for k in REQUIRED_KPIS if k not in rows[0]]
    if missing:
        problems.append(f"KPI rows lack {', '.join(missing)}")
    if rows[0] != rows[1]:
        problems.append("two builds with the same seed gave different KPIs (use model.seeds, no global RNG)")
    return problems


def _check_world(model: Any) -> list[str]:
    problems = []
    if not model.base_stations:
        problems.append("the world has no base station")
    devices = model.devices
    if not devices:
        problems.append("the world has no device (model.add_device)")
    if model.network is None:
        problems.append("no network agent (model.network): nothing aggregates or records KPIs")
    if model.links is None:
        problems.append("model.finish_setup() was not called: devices have no links")
    elif any(not math.isfinite(d.downlink_bps) for d in devices):
        problems.append("some device has a non-finite downlink rate")
    for agent_id in (d.agent_id for d in devices):
        _expect(problems, partial(check_segment, agent_id, "device id"), f"device {agent_id!r}")
    return problems


def _expect(problems: list[str], check: Callable[[], object], what: str) -> None:
    try:
        check()
    except ValueError as exc:
        problems.append(f"{what}: {exc}")
