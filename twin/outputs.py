"""The run directory: resolved config (TOML), KPI time series and events (Parquet), summary (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd

from twin.qoais import ServiceReport, to_markdown

if TYPE_CHECKING:
    from twin.coverage import CoverageMap

CONFIG_FILE = "config.toml"
KPI_FILE = "kpi.parquet"
EVENTS_FILE = "events.parquet"
REQUESTS_FILE = "requests.parquet"
SUMMARY_FILE = "summary.json"
QOAIS_JSON = "qoais.json"
QOAIS_MD = "qoais.md"
RESULTS_JSON = "results.json"
RESULTS_PARQUET = "results.parquet"
COVERAGE_FILE = "coverage.parquet"


def kpi_frame(rows: Sequence[Mapping[str, Any]]) -> pd.DataFrame:
    """KPI rows as a DataFrame with a stable column order."""
    return pd.DataFrame(list(rows))


def write_run_dir(
    run_dir: Path,
    *,
    config_toml: str,
    kpi_rows: Sequence[Mapping[str, Any]],
    events: Sequence[Mapping[str, Any]],
    summary: Mapping[str, Any],
    requests: Sequence[Mapping[str, Any]] = (),
) -> None:
    """Write (or overwrite) every output file of a run (``requests``: per-request service records)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config_toml)
    kpi_frame(kpi_rows).to_parquet(run_dir / KPI_FILE, index=False)
    pd.DataFrame(list(events)).to_parquet(run_dir / EVENTS_FILE, index=False)
    pd.DataFrame(list(requests)).to_parquet(run_dir / REQUESTS_FILE, index=False)
    (run_dir / SUMMARY_FILE).write_text(json.dumps(summary, indent=2, sort_keys=True, default=str) + "\n")


def read_kpis(run_dir: Path) -> pd.DataFrame:
    """The KPI time series of a run directory."""
    return pd.read_parquet(run_dir / KPI_FILE)


def write_qoais(run_dir: Path, reports: Sequence[ServiceReport], *, title: str) -> None:
    """QoAIS report of every service, as JSON and Markdown."""
    run_dir.mkdir(parents=True, exist_ok=True)
    document = {"services": [r.to_dict() for r in reports]}
    (run_dir / QOAIS_JSON).write_text(json.dumps(document, indent=2, default=str) + "\n")
    (run_dir / QOAIS_MD).write_text(to_markdown(reports, title))


def write_calculation(run_dir: Path, *, config_toml: str, result: Mapping[str, Any]) -> None:
    """Outputs of a calculation scenario: config, the full result (JSON) and its table (Parquet)."""
    run_dir.mkdir(parents=True, exist_ok=True)
    (run_dir / CONFIG_FILE).write_text(config_toml)
    (run_dir / RESULTS_JSON).write_text(json.dumps(result, indent=2, default=str) + "\n")
    pd.DataFrame(list(result["rows"])).to_parquet(run_dir / RESULTS_PARQUET, index=False)


def write_coverage(run_dir: Path, coverage: CoverageMap) -> None:
    """The last service coverage map, one row per grid cell (centre ``x_m``/``y_m``, rates, accuracies)."""
    grid = coverage.grid
    ys, xs = np.meshgrid(grid.ys, grid.xs, indexing="ij")
    frame = pd.DataFrame(
        {
            "row": np.repeat(np.arange(len(grid.ys)), len(grid.xs)),
            "col": np.tile(np.arange(len(grid.xs)), len(grid.ys)),
            "x_m": xs.ravel(),
            "y_m": ys.ravel(),
            "rate_bps": coverage.rate_bps.ravel(),
            "reliability": grid.reliability.ravel(),
            "model_accuracy": coverage.model_accuracy.ravel(),
            "service_accuracy": coverage.service_accuracy.ravel(),
            "covered": coverage.covered.ravel(),
        }
    )
    run_dir.mkdir(parents=True, exist_ok=True)
    frame.to_parquet(run_dir / COVERAGE_FILE, index=False)


def energy_by_kind(model: Any) -> dict[str, float]:
    """Joules per agent kind (``home-health``, ``gnb`` …; the network's share under ``network``), sorted."""
    kinds = {a.agent_id: a.kind for a in [*model.devices, *model.base_stations]}
    out: dict[str, float] = {}
    for agent_id, joules in model.energy.by_agent().items():
        kind = kinds.get(agent_id, agent_id)
        out[kind] = out.get(kind, 0.0) + joules
    return dict(sorted(out.items()))
