"""Text panels of the page: the run's status and the QoAIS of its services (each target, met or not)."""

from __future__ import annotations

import html
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

import solara

from twin.progress import run_progress
from twin.qoais import Indicator, ServiceReport
from twin.viz.map import LAYERS, coverage_layer
from twin.viz.plots import data_version

if TYPE_CHECKING:
    from twin.viz.live import LiveScenario
    from twin.viz.map import ShownRun

_OPS = {"min": "≥", "max": "≤", "level": "≥", "mode": "∈"}
_PASS, _FAIL, _PENDING = "#2e7d32", "#c62828", "#757575"


def format_value(value: float | str, unit: str = "") -> str:
    """A QoAIS figure for people: 4 significant digits, ``n/a`` for NaN, text as it is."""
    if isinstance(value, str):
        return value
    if value != value:
        return "n/a"
    text = str(int(value)) if value == int(value) and abs(value) < 1e6 else f"{value:.4g}"
    return text + unit


def indicator_row(indicator: Indicator) -> str:
    """One ``<tr>``: indicator, achieved, target, met."""
    met = indicator.passed
    mark = f'<span style="color:{_PASS if met else _FAIL}">{"✔" if met else "✘"}</span>'
    cells = (
        f"{indicator.dimension}.{indicator.name}",
        format_value(indicator.achieved, indicator.unit),
        f"{_OPS[indicator.comparator]} {format_value(indicator.target, indicator.unit)}",
    )
    escaped = "".join(f"<td>{html.escape(c)}</td>" for c in cells)
    return f'<tr title="{html.escape(indicator.detail)}">{escaped}<td>{mark}</td></tr>'


def verdict_shown(report: ServiceReport, running: bool) -> tuple[str, str]:
    """The colour and words of a report's verdict on the page.

    Nothing assessed yet: ``pending`` while the run goes on (``not assessed`` once it has ended), never a
    PASS. While the run goes on, a verdict holds only so far (``PASS so far``, ``FAIL so far``).
    """
    if not report.indicators:
        return _PENDING, "pending" if running and report.incomplete is None else report.verdict
    colour = _PASS if report.passed else (_FAIL if report.verdict == "FAIL" else _PENDING)
    return colour, f"{report.verdict} so far" if running and report.incomplete is None else report.verdict


def qoais_html(reports: Sequence[ServiceReport], *, running: bool = False) -> str:
    """Every service's verdict, limiting factor and indicator table, as HTML (``running``: run goes on)."""
    if not reports:
        return "<p>No service has a QoAIS report yet.</p>"
    parts = []
    for report in reports:
        colour, verdict = verdict_shown(report, running)
        name = html.escape(f"{report.service} ({report.kind})")
        shown = f'<b style="color:{colour}">{html.escape(verdict)}</b>'
        parts.append(f'<p style="margin:8px 0 2px"><b>{name}</b> — {shown}</p>')
        if report.indicators:
            rows = "".join(indicator_row(i) for i in report.indicators)
            head = "<tr><th>indicator</th><th>achieved</th><th>target</th><th>met</th></tr>"
            parts.append(f'<table class="twin-qoais-table">{head}{rows}</table>')
            limiting = html.escape(report.limiting_factor)
            parts.append(f'<p style="font-size:85%;color:#555;margin:2px 0 6px">limiting: {limiting}</p>')
        parts += [f'<p style="font-size:85%;color:#555;margin:0">{html.escape(n)}</p>' for n in report.notes]
    return "".join(parts)


PAGE_CSS = """
.twin-map img, .twin-plot img { max-width: 100%; height: auto; }
.v-slider-thumb__label-container { display: block !important; }
.v-slider.v-input { margin-top: 26px; }
.twin-qoais-table { border-collapse: collapse; font-size: 82%; width: 100%; }
.twin-qoais-table td, .twin-qoais-table th {
  padding: 1px 6px; border-bottom: 1px solid #e0e0e0; text-align: left;
}
"""


@solara.component
def QoaisPanel(model: ShownRun) -> None:
    """The QoAIS of every service so far, against the targets of the scenario's config (a replay's)."""
    version = data_version(model, "qoais")
    running = model.status == "running"
    content = solara.use_memo(
        lambda: qoais_html(model.qoais_reports(), running=running), dependencies=[model, version, running]
    )
    QoaisCard(content)


@solara.component
def QoaisCard(content: str | solara.Reactive[str]) -> None:
    """The QoAIS panel showing ``content`` (:func:`qoais_html`); a reactive one re-renders it on a change."""
    shown = content.value if isinstance(content, solara.Reactive) else content
    with solara.Card("QoAIS", classes=["twin-qoais"]):
        solara.HTML(tag="div", unsafe_innerHTML=shown)


def status_lines(model: LiveScenario) -> list[str]:
    """What the run is doing: id, seed, time, rounds, device states, broker and message counts."""
    twin = model.twin
    if twin is None:
        return [f"scenario {model.scenario_name}: could not start"]
    network = twin.network
    states = Counter(str(getattr(d, "state", "")) for d in twin.devices)
    lines = [
        f"run {model.run_id} · seed {model.seed_value} · {model.status}",
        f"simulated time {float(twin.time):.0f} s · {len(twin.devices)} devices · "
        f"{len(twin.base_stations)} base stations",
    ]
    if network is not None:
        progress = run_progress(twin)  # as twin run's progress line: ticks, when a service serves in ticks
        accuracy = f" · accuracy {network.last_accuracy:.3f}" if progress.rounds else ""
        lines.append(progress.text(round_word="federated round", sep=" · ") + accuracy)
    lines.append("devices: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    stats = twin.bus.stats
    lines.append(f"MQTT {twin.bus.url}: {stats.published} published, {stats.received} received")
    return lines


@solara.component
def RunStatus(status: solara.Reactive[StatusView]) -> None:
    """The run's status, its error if it could not start, and the map's coverage layer."""
    with solara.Card("Run", classes=["twin-status"]):
        StatusLines(status)
        LayerChoice()


@solara.component
def StatusLines(status: solara.Reactive[StatusView]) -> None:
    """The Run panel's lines (and notice), re-rendered when they change: with every step."""
    shown = status.value
    with solara.Column(gap="0px"):
        if shown.notice is not None:
            kind, text = shown.notice
            (solara.Error if kind == "error" else solara.Warning)(text)
        for line in shown.lines:
            solara.Text(line, style={"display": "block", "font-size": "90%"})


@solara.component
def LayerChoice() -> None:
    """The map's coverage layer: buttons, and what the chosen one shows (beside them)."""
    with solara.Div():
        solara.ToggleButtonsSingle(
            value=coverage_layer.value,
            on_value=coverage_layer.set,
            values=list(LAYERS),
            classes=["twin-layer"],
        )
        solara.Text(f"map layer: {LAYERS[coverage_layer.value]}", style={"font-size": "80%", "color": "#555"})


@dataclass(frozen=True, slots=True)
class StatusView:
    """What the Run panel says: a notice (``error`` or ``warning`` and its text), if any, and the lines."""

    notice: tuple[str, str] | None
    lines: tuple[str, ...]


def status_view(model: LiveScenario) -> StatusView:
    """The Run panel's content for ``model`` now."""
    notice = None
    if model.error is not None:
        notice = ("error", f"Could not start: {model.error} — fix the parameter and press Reset.")
    elif model.session is not None and model.session.error:
        notice = ("warning", f"Run {model.status}: {model.session.error}")
    return StatusView(notice, tuple(status_lines(model)))
