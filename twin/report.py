"""``twin report``: one self-contained HTML page of a run, read from its run directory.

The page holds the KPI curves, the energy breakdown by agent kind and by service, the QoAIS table, the
service coverage map of the last round and the resolved config. Plots are PNGs embedded as base64 (the
page needs nothing else) and also written beside the HTML file (``<stem>-kpi.png`` …).

Run directories written before ``energy_by_kind_j``, ``energy_by_service_j`` (``summary.json``) and
``coverage.parquet`` existed still report: energy by kind falls back to devices vs network (from
``energy_by_agent_j``), and the missing parts are named in a note instead of a plot.
"""

from __future__ import annotations

import base64
import html
import math
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from twin.compare import FINAL_KPIS, RunRecord, load_run, plot_curves
from twin.outputs import COVERAGE_FILE

DEVICES_UNKNOWN_KIND = "devices (kind not recorded)"


@dataclass(slots=True)
class Report:
    """What :func:`write_report` wrote: the page, its PNGs, and notes on what could not be shown."""

    html_path: Path
    plots: list[Path] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)


def energy_breakdown(summary: Mapping[str, Any]) -> tuple[dict[str, float], dict[str, float], list[str]]:
    """Joules by agent kind and by service from a run's summary, and notes on what is missing.

    Falls back, for summaries without ``energy_by_kind_j``, to ``network`` vs all devices (one unknown
    kind) from ``energy_by_agent_j``.
    """
    notes: list[str] = []
    by_kind = dict(summary.get("energy_by_kind_j") or {})
    if not by_kind and summary.get("energy_by_agent_j"):
        for agent, joules in summary["energy_by_agent_j"].items():
            kind = "network" if agent == "network" else DEVICES_UNKNOWN_KIND
            by_kind[kind] = by_kind.get(kind, 0.0) + float(joules)
        notes.append("energy by agent kind: this run did not record kinds; devices are shown together")
    by_service = dict(summary.get("energy_by_service_j") or {})
    if not by_kind:
        notes.append("energy by agent kind: not recorded in this run's summary.json")
    if not by_service:
        notes.append("energy by service: not recorded in this run's summary.json")
    return by_kind, by_service, notes


def _plot_energy(by_kind: Mapping[str, float], by_service: Mapping[str, float], path: Path) -> Path:
    from matplotlib.figure import Figure

    panels = [(t, d) for t, d in (("by agent kind", by_kind), ("by service", by_service)) if d]
    fig = Figure(figsize=(5.5 * len(panels), 3.8), layout="constrained")
    for ax, (title, data) in zip(fig.subplots(1, len(panels), squeeze=False)[0], panels, strict=True):
        names, joules = list(data), [float(v) for v in data.values()]
        bars = ax.bar(names, joules, color="tab:orange")
        ax.bar_label(bars, labels=[f"{j:.3g} J" for j in joules], fontsize="small")
        ax.set_title(f"energy {title}")
        ax.set_ylabel("energy (J)")
        ax.tick_params(axis="x", labelrotation=20)
    fig.savefig(path, dpi=100)
    return path


def _plot_coverage(cells: pd.DataFrame, path: Path) -> Path:
    from matplotlib.colors import ListedColormap
    from matplotlib.figure import Figure

    shape = (int(cells["row"].max()) + 1, int(cells["col"].max()) + 1)
    ordered = cells.sort_values(["row", "col"])
    service = ordered["service_accuracy"].to_numpy(dtype=float).reshape(shape)
    covered = ordered["covered"].to_numpy(dtype=bool).reshape(shape)
    half = (
        float(cells["x_m"].iloc[1] - cells["x_m"].iloc[0]) / 2 if shape[1] > 1 else 0.5
    )  # cell centres → edges
    extent = (
        float(cells["x_m"].min()) - half,
        float(cells["x_m"].max()) + half,
        float(cells["y_m"].min()) - half,
        float(cells["y_m"].max()) + half,
    )
    fig = Figure(figsize=(11, 4.6), layout="constrained")
    left, right = fig.subplots(1, 2)
    image = left.imshow(service, origin="lower", extent=extent, vmin=0, vmax=1, cmap="viridis")
    fig.colorbar(image, ax=left, label="service accuracy")
    left.set_title("service accuracy (model × link reliability)")
    right.imshow(
        covered, origin="lower", extent=extent, vmin=0, vmax=1, cmap=ListedColormap(["#ddd", "tab:green"])
    )
    right.set_title(f"covered cells (green): {covered.mean():.1%}")
    for ax in (left, right):
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
    fig.savefig(path, dpi=100)
    return path


def _img(path: Path, alt: str, css_class: str) -> str:
    data = base64.b64encode(path.read_bytes()).decode("ascii")
    return f'<img class="{css_class}" alt="{html.escape(alt)}" src="data:image/png;base64,{data}">'


def _cell(value: Any) -> str:
    if isinstance(value, float):
        if not math.isfinite(value):
            return "n/a"
        return f"{value:.4g}"
    return html.escape("—" if value is None else str(value))


def _qoais_html(record: RunRecord) -> str:
    if not record.qoais:
        return '<p class="note">No QoAIS report (qoais.json) in this run directory.</p>'
    rows = []
    for service in record.qoais:
        for i in service.get("indicators", []):
            op = {"min": "≥", "max": "≤", "level": "≥", "mode": "∈"}.get(i.get("comparator"), "")
            met = "yes" if i.get("passed") else "no"
            rows.append(
                f'<tr class="{"met" if i.get("passed") else "missed"}"><td>{_cell(service["service"])}</td>'
                f"<td>{_cell(i.get('dimension'))}.{_cell(i.get('name'))}</td>"
                f"<td>{_cell(i.get('achieved'))}{_cell(i.get('unit'))}</td>"
                f"<td>{op} {_cell(i.get('target'))}{_cell(i.get('unit'))}</td><td>{met}</td></tr>"
            )
        verdict, limiting = _cell(str(service.get("verdict"))), _cell(service.get("limiting_factor"))
        rows.append(
            f'<tr class="verdict"><td>{_cell(service["service"])}</td>'
            f'<td colspan="4"><b>{verdict}</b> — limiting: {limiting}</td></tr>'
        )
    head = "<tr><th>service</th><th>indicator</th><th>achieved</th><th>target</th><th>met</th></tr>"
    return f'<table id="qoais" class="qoais"><thead>{head}</thead><tbody>{"".join(rows)}</tbody></table>'


STYLE = """
body { font-family: system-ui, sans-serif; margin: 2em auto; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.5em 0 1.5em; }
th, td { border: 1px solid #ccc; padding: 0.25em 0.6em; text-align: left; }
tr.missed td:last-child { color: #b00; } tr.met td:last-child { color: #070; }
tr.verdict td { background: #f4f4f4; }
img.plot { max-width: 100%; display: block; margin: 0.5em 0 1.5em; }
p.note { color: #666; font-style: italic; }
"""


def write_report(run_dir: Path, out: Path | None = None) -> Report:
    """Write the HTML report of ``run_dir`` (default ``run_dir/report.html``) and its PNGs beside it.

    Raises:
        ConfigError: ``run_dir`` is not a run directory.
    """
    record = load_run(run_dir)
    out = out if out is not None else run_dir / "report.html"
    out.parent.mkdir(parents=True, exist_ok=True)
    stem = out.parent / out.stem
    report = Report(out)
    summary = record.summary
    title = f"Run report — {summary.get('run_id', run_dir.name)}"
    sections: list[str] = []

    final = record.final()
    labels = dict(FINAL_KPIS)
    facts = {"scenario": summary.get("scenario"), "seed": summary.get("seed")}
    rows = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in facts.items())
    rows += "".join(f"<tr><th>{_cell(labels[k])}</th><td>{_cell(v)}</td></tr>" for k, v in final.items())
    if summary.get("error"):
        rows += f"<tr><th>error</th><td>{_cell(summary['error'])}</td></tr>"
    sections.append(f'<h2>Summary</h2><table id="summary">{rows}</table>')

    if len(record.kpis):
        path = plot_curves([record], Path(f"{stem}-kpi.png"))
        report.plots.append(path)
        sections.append("<h2>KPI curves</h2>" + _img(path, "KPI curves", "plot kpi"))
    else:
        report.notes.append("KPI curves: the run has no KPI rows (no round completed)")

    by_kind, by_service, notes = energy_breakdown(summary)
    report.notes.extend(notes)
    energy = "<h2>Energy</h2>"
    if by_kind or by_service:
        path = _plot_energy(by_kind, by_service, Path(f"{stem}-energy.png"))
        report.plots.append(path)
        energy += _img(path, "energy breakdown", "plot energy")
    sections.append(energy + "".join(f'<p class="note">{_cell(n)}</p>' for n in notes))

    sections.append("<h2>QoAIS</h2>" + _qoais_html(record))

    coverage = "<h2>Service coverage, last round</h2>"
    coverage_path = run_dir / COVERAGE_FILE
    if coverage_path.is_file():
        path = _plot_coverage(pd.read_parquet(coverage_path), Path(f"{stem}-coverage.png"))
        report.plots.append(path)
        coverage += _img(path, "coverage map", "plot coverage")
    else:
        note = f"coverage map: no {COVERAGE_FILE} in the run directory (no round evaluated, or an older run)"
        report.notes.append(note)
        coverage += f'<p class="note">{_cell(note)}</p>'
    sections.append(coverage)

    config = "".join(f"<tr><th>{_cell(k)}</th><td>{_cell(v)}</td></tr>" for k, v in record.config.items())
    sections.append(f"<details><summary>Config</summary><table id='config'>{config}</table></details>")

    page = (
        f'<!DOCTYPE html>\n<html lang="en"><head><meta charset="utf-8"><title>{_cell(title)}</title>'
        f"<style>{STYLE}</style></head><body><h1>{_cell(title)}</h1>{''.join(sections)}"
        f'<p class="note">Written by twin report from {_cell(str(run_dir))}.</p></body></html>\n'
    )
    out.write_text(page, encoding="utf-8")
    return report
