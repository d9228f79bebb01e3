"""The Python API for notebooks and scripts: run a scenario, read a run back, list the scenarios.

>>> import twin
>>> result = twin.run("home-health", seed=0, rounds=2, overrides={"devices.count": 30})
>>> result.kpis[["round", "accuracy"]]          # doctest: +SKIP
>>> twin.load_run(result.run_dir).summary["status"]  # doctest: +SKIP
'finished'

Everything here is what ``twin run`` does, without its console output: the same run directory
(``runs/<id>/``) is written, and :func:`load_run` reads any run directory back (one of ``twin run`` too).
"""

from __future__ import annotations

import json
import re
import tomllib
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from twin import outputs
from twin.config_doc import ConfigKey, describe_config
from twin.config_file import (
    flatten_tables,
    overrides_with_file,
    read_config_file,
    scenario_and_seed,
)
from twin.errors import ConfigError
from twin.qoais import Indicator, ServiceReport
from usecases.catalog import CatalogEntry

_RUN_ID = re.compile(r"^(.+)-s\d+-[0-9a-f]{8}$")  # what twin.runner.new_run_id makes


@dataclass(frozen=True, slots=True)
class Run:
    """A finished (or aborted) run: its tables, its QoAIS reports and where it was written.

    For a calculation scenario (``seed-*``) ``kpis`` is the computed table, ``summary`` the full result
    and ``requests`` and ``events`` are empty.
    """

    run_id: str
    run_dir: Path
    scenario: str
    status: str
    summary: dict[str, Any]
    kpis: pd.DataFrame
    """One row per federated round (``kpi.parquet``)."""
    requests: pd.DataFrame
    """One row per inference request of the services (``requests.parquet``)."""
    events: pd.DataFrame
    """Selections, stragglers, handovers, alerts … (``events.parquet``)."""
    qoais: list[ServiceReport] = field(default_factory=list)
    """QoAIS report of every service: ``.passed``, ``.verdict``, ``.limiting_factor``, ``.indicators``."""
    config: dict[str, Any] = field(default_factory=dict)
    """The resolved config as dotted key → value (``config.toml``; unset keys left out)."""

    @property
    def passed(self) -> bool:
        """Whether every service met its QoAIS targets."""
        return bool(self.qoais) and all(report.passed for report in self.qoais)


def run(
    scenario: str | None = None,
    *,
    seed: int | None = None,
    rounds: int | None = None,
    overrides: Mapping[str, Any] | None = None,
    config: str | Path | None = None,
    broker: str = "local",
    out: str | Path = "runs",
    until: float | None = None,
    run_id: str | None = None,
) -> Run:
    """Run a scenario to its end, write its run directory and return it.

    Args:
        scenario: A scenario name (see :func:`scenarios`), a ``.py`` file or module that registers one
            (``path.py:name`` picks one of several); ``None`` to take it from ``config``.
        seed: Seed of every random stream (default: the config file's, else 0).
        rounds: Federated rounds (``fl.rounds``).
        overrides: Dotted key → value, like ``--set`` (``{"devices.count": 30}``); over the file's.
        config: A TOML config file (``twin config <scenario> --format toml``, or a run's ``config.toml``
            to repeat that run).
        broker: ``local`` (in-process, the default here), ``embedded`` or ``mqtt[s]://host:port``.
        out: Parent folder of run directories.
        until: Stop at this simulated time (s).
        run_id: Run id (default: generated).

    Returns:
        The run, as :func:`load_run` reads it back.

    Raises:
        TwinError: an unknown scenario, a bad config key or value, an unreachable broker.
    """
    from twin.runner import RunOptions, run_calculation, run_scenario
    from usecases import registry
    from usecases.registry import CalculationScenario

    config_file = read_config_file(Path(config)) if config is not None else None
    name, seed = scenario_and_seed(scenario, seed, config_file)
    options = RunOptions(
        scenario=name,
        seed=seed,
        overrides=overrides_with_file(name, config_file, dict(overrides or {})),
        broker=broker,
        out_dir=Path(out),
        until_s=until,
        rounds=rounds,
        run_id=run_id,
    )
    if isinstance(registry.get(name), CalculationScenario):
        return load_run(run_calculation(options).run_dir)
    return load_run(run_scenario(options).run_dir)


def load_run(run_dir: str | Path) -> Run:
    """Read a run directory back (``runs/<id>``, written by ``twin run`` or :func:`run`).

    Raises:
        ConfigError: ``run_dir`` is not a run directory.
    """
    path = Path(run_dir)
    config = _read_config(path / outputs.CONFIG_FILE)
    qoais = _read_qoais(path / outputs.QOAIS_JSON)
    if (path / outputs.SUMMARY_FILE).is_file():
        summary = json.loads((path / outputs.SUMMARY_FILE).read_text(encoding="utf-8"))
        return Run(
            run_id=str(summary.get("run_id", path.name)),
            run_dir=path,
            scenario=str(summary.get("scenario", "")),
            status=str(summary.get("status", "")),
            summary=summary,
            kpis=_read_table(path / outputs.KPI_FILE),
            requests=_read_table(path / outputs.REQUESTS_FILE),
            events=_read_table(path / outputs.EVENTS_FILE),
            qoais=qoais,
            config=config,
        )
    if (path / outputs.RESULTS_JSON).is_file():
        result = json.loads((path / outputs.RESULTS_JSON).read_text(encoding="utf-8"))
        return Run(
            run_id=path.name,
            run_dir=path,
            scenario=match.group(1) if (match := _RUN_ID.match(path.name)) else "",
            status="finished",
            summary=result,
            kpis=_read_table(path / outputs.RESULTS_PARQUET),
            requests=pd.DataFrame(),
            events=pd.DataFrame(),
            qoais=qoais,
            config=config,
        )
    raise ConfigError(f"{path} is not a run directory (no {outputs.SUMMARY_FILE} or {outputs.RESULTS_JSON})")


def scenarios() -> list[CatalogEntry]:
    """Every scenario ``twin list`` shows (built-in, installed, registered): name, summary, paper §, kind."""
    from usecases import registry

    return registry.entries()


def config_keys(scenario: str) -> list[ConfigKey]:
    """Every config key of a scenario with its default, type, unit and meaning (``twin config``)."""
    from usecases import registry

    return describe_config(registry.get(registry.resolve_one(scenario)).default_config())


def _read_table(path: Path) -> pd.DataFrame:
    return pd.read_parquet(path) if path.is_file() else pd.DataFrame()


def _read_config(path: Path) -> dict[str, Any]:
    if not path.is_file():
        return {}
    return flatten_tables(tomllib.loads(path.read_text(encoding="utf-8")))


def _read_qoais(path: Path) -> list[ServiceReport]:
    if not path.is_file():
        return []
    document = json.loads(path.read_text(encoding="utf-8"))
    return [_report(item) for item in document.get("services", [])]


def _report(item: Mapping[str, Any]) -> ServiceReport:
    """A QoAIS report from its JSON form (:meth:`ServiceReport.to_dict`)."""
    names = ("dimension", "name", "achieved", "target", "unit", "comparator", "detail")
    indicators = tuple(Indicator(**{k: i[k] for k in names if k in i}) for i in item.get("indicators", []))
    verdict = str(item.get("verdict", ""))
    incomplete = verdict[len("incomplete (") : -1] if verdict.startswith("incomplete (") else None
    return ServiceReport(
        service=str(item["service"]),
        kind=str(item.get("kind", "")),
        indicators=indicators,
        notes=tuple(item.get("notes", ())),
        incomplete=incomplete,
    )
