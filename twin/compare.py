"""``twin compare``: runs side by side: final KPIs, QoAIS verdicts, config differences, KPI curves.

Everything is read from the run directories (``summary.json``, ``kpi.parquet``, ``qoais.json``,
``config.toml``), so runs from different sweeps, machines or versions compare alike.
"""

from __future__ import annotations

import json
import math
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pandas as pd

from twin.errors import ConfigError
from twin.outputs import CONFIG_FILE, KPI_FILE, QOAIS_JSON, SUMMARY_FILE

FINAL_KPIS: tuple[tuple[str, str], ...] = (
    ("status", "status"),
    ("rounds", "rounds completed"),
    ("accuracy", "accuracy (last round)"),
    ("service_accuracy", "service accuracy (last round)"),
    ("round_latency_s", "mean round latency (s)"),
    ("coverage", "coverage (last round)"),
    ("energy_total_j", "energy, devices + network (J)"),
    ("co2_total_g", "CO2-eq (g)"),
    ("sim_time_s", "simulated time (s)"),
)
"""Key and label of each final KPI in the comparison, in display order."""

CURVES = {
    "accuracy": "accuracy",
    "energy_total_j": "energy, devices + network (J)",
    "round_latency_s": "round latency (s)",
    "coverage": "service coverage",
}
"""KPI columns overlaid by :func:`plot_curves` (those a run has), with their axis labels."""


@dataclass(slots=True)
class RunRecord:
    """What a run directory holds, as read back."""

    label: str
    run_dir: Path
    summary: dict[str, Any]
    kpis: pd.DataFrame
    config: dict[str, Any]
    qoais: list[dict[str, Any]]

    def final(self) -> dict[str, Any]:
        """Final KPIs (see :data:`FINAL_KPIS`); ``None`` where the run has none."""
        kpis = self.kpis
        last = kpis.iloc[-1] if len(kpis) else pd.Series(dtype=float)
        out: dict[str, Any] = {
            "status": self.summary.get("status"),
            "rounds": int(self.summary.get("rounds_completed", len(kpis))),
            "sim_time_s": _number(self.summary.get("sim_time_s")),
        }
        for key in ("accuracy", "service_accuracy", "coverage", "energy_total_j", "co2_total_g"):
            out[key] = _number(last.get(key))
        out["round_latency_s"] = (
            _number(kpis["round_latency_s"].mean()) if "round_latency_s" in kpis else None
        )
        return out

    def verdicts(self) -> dict[str, str]:
        """QoAIS verdict per service."""
        return {s["service"]: str(s.get("verdict")) for s in self.qoais}


def _number(value: Any) -> float | None:
    """A finite float, or ``None`` (missing, NaN)."""
    if value is None:
        return None
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def flatten_toml(document: Mapping[str, Any], prefix: str = "") -> dict[str, Any]:
    """Dotted key → value of a parsed TOML document (lists as ``a,b``, as ``--set`` writes them)."""
    out: dict[str, Any] = {}
    for key, value in document.items():
        if isinstance(value, Mapping):
            out.update(flatten_toml(value, f"{prefix}{key}."))
        else:
            out[f"{prefix}{key}"] = ",".join(map(str, value)) if isinstance(value, list) else value
    return out


def load_run(run_dir: Path, label: str | None = None) -> RunRecord:
    """Read a run directory back.

    Raises:
        ConfigError: not a directory, or no ``summary.json`` in it (not an agent run's directory).
    """
    if not run_dir.is_dir():
        raise ConfigError(f"{run_dir}: no such run directory")
    summary_path = run_dir / SUMMARY_FILE
    if not summary_path.is_file():
        raise ConfigError(f"{run_dir}: no {SUMMARY_FILE}; is it a run directory (runs/<run_id>)?")
    summary = json.loads(summary_path.read_text())
    kpi_path = run_dir / KPI_FILE
    kpis = pd.read_parquet(kpi_path) if kpi_path.is_file() else pd.DataFrame()
    config_path = run_dir / CONFIG_FILE
    config = flatten_toml(tomllib.loads(config_path.read_text())) if config_path.is_file() else {}
    qoais_path = run_dir / QOAIS_JSON
    qoais = json.loads(qoais_path.read_text()).get("services", []) if qoais_path.is_file() else []
    return RunRecord(label or run_dir.name, run_dir, summary, kpis, config, qoais)


def load_runs(run_dirs: Sequence[Path]) -> list[RunRecord]:
    """Read each run directory; labels are the directory names, or the paths where names repeat.

    Raises:
        ConfigError: fewer than two runs, or one is not a run directory.
    """
    if len(run_dirs) < 2:
        raise ConfigError("twin compare needs at least two run directories")
    names = [p.name for p in run_dirs]
    unique = len(set(names)) == len(names)
    return [load_run(p, p.name if unique else str(p)) for p in run_dirs]


def config_diff(records: Sequence[RunRecord]) -> dict[str, list[Any]]:
    """Config keys whose values differ between the runs: key → value in each run (``None``: absent)."""
    keys = sorted(set().union(*(r.config for r in records)))
    diff: dict[str, list[Any]] = {}
    for key in keys:
        values = [r.config.get(key) for r in records]
        if any(v != values[0] for v in values[1:]):
            diff[key] = values
    return diff


def comparison(records: Sequence[RunRecord]) -> dict[str, Any]:
    """The comparison as a JSON-ready document: runs, final KPIs, QoAIS verdicts, config diff."""
    services = list(dict.fromkeys(s for r in records for s in r.verdicts()))
    return {
        "runs": [
            {
                "label": r.label,
                "run_dir": str(r.run_dir),
                "run_id": r.summary.get("run_id"),
                "scenario": r.summary.get("scenario"),
                "seed": r.summary.get("seed"),
            }
            for r in records
        ],
        "final": {key: [r.final()[key] for r in records] for key, _ in FINAL_KPIS},
        "qoais": {s: [r.verdicts().get(s) for r in records] for s in services},
        "config_diff": config_diff(records),
    }


def plot_curves(records: Sequence[RunRecord], path: Path) -> Path:
    """KPI curves of every run overlaid, one panel per KPI of :data:`CURVES`, against the round; a PNG.

    Raises:
        ConfigError: no run has KPI rows.
    """
    from matplotlib.figure import Figure

    columns = [c for c in CURVES if any(c in r.kpis for r in records)]
    if not columns:
        raise ConfigError("--plot: none of the runs has KPI rows to plot")
    ncols = 2 if len(columns) > 1 else 1
    nrows = math.ceil(len(columns) / ncols)
    fig = Figure(figsize=(6.0 * ncols, 3.6 * nrows), layout="constrained")
    axes = fig.subplots(nrows, ncols, squeeze=False).ravel()
    for ax, column in zip(axes, columns, strict=False):
        for record in records:
            kpis = record.kpis
            if column in kpis and len(kpis):
                x = kpis["round"] if "round" in kpis else range(1, len(kpis) + 1)
                ax.plot(x, kpis[column], marker="o", markersize=3, label=record.label)
        ax.set_xlabel("round")
        ax.set_ylabel(CURVES[column])
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in axes[len(columns) :]:
        ax.set_visible(False)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=100)
    return path
