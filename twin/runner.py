"""Run a named scenario end to end: resolve config, open the bus, build, run, write outputs."""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from broker.connect import open_bus
from broker.topics import Topics
from twin.config import apply_overrides, flatten, to_toml
from twin.errors import ConfigError, RunAbortedError, TwinError
from twin.model import TwinModel
from twin.outputs import kpi_frame, write_run_dir
from twin.telemetry import status_payload
from usecases import registry
from usecases.registry import AgentScenario, BuildContext

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``twin run`` asks for."""

    scenario: str
    seed: int = 0
    overrides: Mapping[str, str] = field(default_factory=dict)
    broker: str = "embedded"
    out_dir: Path = Path("runs")
    until_s: float | None = None
    rounds: int | None = None
    run_id: str | None = None


@dataclass(slots=True)
class RunResult:
    """Outcome of a run."""

    run_id: str
    run_dir: Path
    status: str
    kpis: pd.DataFrame
    summary: dict[str, Any]
    error: str | None = None


def resolve_config(scenario: str, overrides: Mapping[str, str], rounds: int | None = None) -> tuple[Any, Any]:
    """The scenario and its validated config with overrides (and ``--rounds``) applied."""
    spec = registry.get(scenario)
    config = spec.default_config()
    merged = dict(overrides)
    if rounds is not None:
        if not isinstance(spec, AgentScenario):
            raise ConfigError(f"--rounds: scenario {scenario!r} has no rounds")
        if rounds <= 0:
            raise ConfigError(f"--rounds must be > 0, got {rounds}")
        merged[spec.rounds_key] = str(rounds)
    return spec, apply_overrides(config, merged)


def new_run_id(scenario: str, seed: int) -> str:
    """A unique, topic-safe run id: ``{scenario}-s{seed}-{8 hex}``."""
    return f"{scenario}-s{seed}-{uuid.uuid4().hex[:8]}"


def run_scenario(
    options: RunOptions, *, on_step: Callable[[TwinModel], None] | None = None,
    on_model: Callable[[TwinModel], None] | None = None,
) -> RunResult:
    """Run an agent scenario and write its run directory.

    Raises:
        TwinError: bad scenario, config or broker (before anything runs).
    """
    spec, config = resolve_config(options.scenario, options.overrides, options.rounds)
    if not isinstance(spec, AgentScenario):
        raise ConfigError(f"scenario {options.scenario!r} is a calculation; use `twin run` without --broker options")
    if options.seed < 0:
        raise ConfigError(f"--seed must be >= 0, got {options.seed}")
    if options.until_s is not None and options.until_s <= 0:
        raise ConfigError(f"--until must be > 0 seconds, got {options.until_s}")
    run_id = options.run_id or new_run_id(spec.name, options.seed)
    topics = Topics(run_id)
    rounds_limit = int(flatten(config)[spec.rounds_key])
    handle = open_bus(options.broker, will=(topics.status, status_payload(run_id, spec.name, "aborted")),
                      reconnect_timeout_s=config.bus.barrier_timeout_s)
    run_dir = options.out_dir / run_id
    model: TwinModel | None = None
    status, error = "finished", None
    try:
        model = spec.build(config, BuildContext(run_id, options.seed, handle.bus, rounds_limit))
        if on_model is not None:
            on_model(model)
        model.telemetry.meta({"seed": options.seed, "config": _plain(flatten(config)),
                              "devices": len(model.devices), "base_stations": len(model.base_stations),
                              "broker": handle.bus.url})
        model.telemetry.status("running")
        until = options.until_s
        while model.running and (until is None or model.time < until):
            model.step()
            if on_step is not None:
                on_step(model)
    except RunAbortedError as exc:
        status, error = "aborted", str(exc)
        log.error("%s", exc)
    except KeyboardInterrupt:
        status, error = "aborted", "interrupted by the user"
    try:
        result = _finish(model, config, options, run_id, run_dir, status, error, handle.bus)
    finally:
        handle.close()
    return result


def _finish(
    model: TwinModel | None, config: Any, options: RunOptions, run_id: str, run_dir: Path, status: str,
    error: str | None, bus: Any,
) -> RunResult:
    rows = model.kpi_rows if model is not None else []
    summary: dict[str, Any] = {
        "run_id": run_id, "scenario": options.scenario, "seed": options.seed, "status": status, "error": error,
        "sim_time_s": float(model.time) if model is not None else 0.0,
        "rounds_completed": len(rows), "broker": bus.url, "bus": bus.stats.as_dict(),
    }
    if rows:
        last = rows[-1]
        summary["final"] = {k: last[k] for k in ("accuracy", "service_accuracy", "energy_total_j", "co2_total_g")
                            if k in last}
    if model is not None and model.network is not None:
        summary["majority_baseline_accuracy"] = model.network.task.majority_baseline()
        summary["energy_by_agent_j"] = model.energy.by_agent()
    events = model.telemetry.events if model is not None else []
    write_run_dir(run_dir, config_toml=to_toml(config), kpi_rows=rows, events=events, summary=summary)
    if model is not None:
        try:
            model.telemetry.status(status, rounds_completed=len(rows), sim_time_s=summary["sim_time_s"])
            model.pump(0.0)
        except TwinError:
            log.debug("could not publish the final status", exc_info=True)
    return RunResult(run_id, run_dir, status, kpi_frame(rows), summary, error)


def _plain(values: Mapping[str, Any]) -> dict[str, Any]:
    return {k: v for k, v in values.items() if v is not None}
