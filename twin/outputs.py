"""The run directory: resolved config (TOML), KPI time series and events (Parquet), summary (JSON)."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import pandas as pd

from twin.qoais import ServiceReport, to_markdown

CONFIG_FILE = "config.toml"
KPI_FILE = "kpi.parquet"
EVENTS_FILE = "events.parquet"
REQUESTS_FILE = "requests.parquet"
SUMMARY_FILE = "summary.json"
QOAIS_JSON = "qoais.json"
QOAIS_MD = "qoais.md"
RESULTS_JSON = "results.json"
RESULTS_PARQUET = "results.parquet"


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
