"""Live KPI plots of a running scenario: service accuracy, response latency, energy and CO2, coverage.

Each ``*_figure`` function draws one matplotlib figure from a :class:`LiveScenario` or a replay (no
Solara in them, so they are tested directly); :func:`LivePlot` shows one on the page and redraws it when a new
frame of the page (:class:`~twin.viz.frames.FrameGate`) finds its data changed. Every plot's x axis is
simulated time in seconds from 0 to :func:`time_axis_end` of the run's clock, so the four line up.
"""

from __future__ import annotations

import io
import math
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import reacton.ipywidgets as rw
import solara
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.legend import Legend
from matplotlib.lines import Line2D
from numpy.typing import ArrayLike
from PIL import Image

from twin.kpi import co2_kg

if TYPE_CHECKING:
    from twin.viz.frames import FrameGate
    from twin.viz.map import ShownRun

FIGSIZE_IN = (5.4, 3.1)
TRAINING_COLOUR = "#1f77b4"
INFERENCE_COLOUR = "#d62728"
_INFERENCE_STYLE: dict[str, Any] = {"color": INFERENCE_COLOUR, "ms": 3, "lw": 0.8}
_NICE_ENDS = (1.0, 1.2, 1.5, 2.0, 2.5, 3.0, 4.0, 5.0, 6.0, 8.0, 10.0)
LOG_SCALE_SPAN = 10.0  # latencies spanning more than this factor are drawn on a log axis


def time_axis_end(time_s: float) -> float:
    """The right end of every plot's time axis, at or after ``time_s``.

    The first round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k, at least 10 s) at or after
    ``time_s``, so that the axis grows in steps rather than every second.
    """
    return axis_end(time_s, 10.0)


def axis_end(value: float, least: float) -> float:
    """The first round number (1, 1.2, 1.5, 2, 2.5, 3, 4, 5, 6, 8 × 10^k) at or after ``value`` and ``least``.

    An axis ending there grows in steps rather than with every new value.
    """
    value = max(float(value), least)
    decade = 10.0 ** math.floor(math.log10(value))
    return next(decade * m for m in _NICE_ENDS if decade * m >= value * (1 - 1e-12))


@dataclass(frozen=True, slots=True)
class TickSeries:
    """Per-tick figures of an inference service: time, service accuracy, mean and p95 latency."""

    service: str
    time_s: np.ndarray
    service_accuracy: np.ndarray
    latency_mean_s: np.ndarray
    latency_p95_s: np.ndarray


_REQUEST_FIELDS = frozenset({"tick", "sim_time_s", "correct", "reliability", "latency_s"})


def inference_series(service: Any) -> TickSeries | None:
    """Per-tick figures of a service whose ``records`` are requests (None: no records, or not requests)."""
    records = list(getattr(service, "records", []))
    if not records or not records[0].keys() >= _REQUEST_FIELDS:
        return None
    ticks = np.array([r["tick"] for r in records])
    time_s = np.array([r["sim_time_s"] for r in records], dtype=float)
    served = np.array([float(r["correct"]) * float(r["reliability"]) for r in records])
    latency = np.array([r["latency_s"] for r in records], dtype=float)
    starts, accuracy, mean_s, p95_s = [], [], [], []
    for tick in np.unique(ticks):
        mask = ticks == tick
        finite = latency[mask][np.isfinite(latency[mask])]
        starts.append(float(time_s[mask][0]))
        accuracy.append(float(served[mask].mean()))
        mean_s.append(float(finite.mean()) if len(finite) else np.nan)
        p95_s.append(float(np.percentile(finite, 95)) if len(finite) else np.nan)
    return TickSeries(
        str(service.service), np.array(starts), np.array(accuracy), np.array(mean_s), np.array(p95_s)
    )


DATA_GID = "twin-data"
"""The ``gid`` of a plot's data lines: a :class:`PlotCanvas` redraws only these (and the legend) when only
the data has changed."""


def _plot(ax: Axes, *args: Any, **kwargs: Any) -> list[Line2D]:
    """``ax.plot``, the lines marked as data (:data:`DATA_GID`)."""
    lines = ax.plot(*args, **kwargs)
    for line in lines:
        line.set_gid(DATA_GID)
    return lines


def _new_figure(title: str) -> tuple[Figure, Axes]:
    figure = Figure(figsize=FIGSIZE_IN, layout="constrained")
    ax = figure.add_subplot()
    ax.set_title(title, fontsize=10)
    ax.set_xlabel("simulated time (s)", fontsize=8)
    ax.tick_params(labelsize=7)
    ax.grid(alpha=0.3)
    return figure, ax


def _waiting(ax: Axes, what: str) -> None:
    ax.text(0.5, 0.5, what, transform=ax.transAxes, ha="center", va="center", color="#7f7f7f", fontsize=9)


def _target(ax: Axes, value: float, colour: str, label: str) -> None:
    ax.axhline(value, color=colour, linestyle="--", linewidth=1.0, alpha=0.8, label=label)


def _rows(live: ShownRun) -> list[dict[str, Any]]:
    return list(live.twin.kpi_rows) if live.twin is not None else []


def _services(live: ShownRun) -> list[TickSeries]:
    twin = live.twin
    series = [inference_series(s) for s in twin.services] if twin is not None else []
    return [s for s in series if s is not None]


def _target_of(live: ShownRun, service: str, name: str) -> float | None:
    """The QoAIS target ``name`` of an inference ``service`` (None if it has none)."""
    twin = live.twin
    for s in twin.services if twin is not None else []:
        if s.service == service:
            value = getattr(getattr(s, "targets", None), name, None)
            return float(value) if value is not None else None
    return None


def accuracy_figure(live: ShownRun) -> Figure:
    """Model and service accuracy of each federated round, and each inference tick, against targets."""
    figure, ax = _new_figure("Service accuracy")
    rows = _rows(live)
    services = _services(live)
    if rows:
        t = [r["sim_time_s"] for r in rows]
        accuracy = [r["accuracy"] for r in rows]
        served = [r["service_accuracy"] for r in rows]
        _plot(ax, t, accuracy, "o-", color=TRAINING_COLOUR, ms=3, lw=1, label="model (held-out)")
        served_label = "training service (× reliability)"
        _plot(ax, t, served, "s:", color=TRAINING_COLOUR, ms=3, lw=1, label=served_label)
    for series in services:
        label = f"{series.service} (per tick)"
        _plot(ax, series.time_s, series.service_accuracy, ".-", label=label, **_INFERENCE_STYLE)
        target = _target_of(live, series.service, "accuracy")
        if target is not None:
            _target(ax, target, INFERENCE_COLOUR, f"{series.service} target")
    if live.session is not None and live.twin is not None and live.twin.network is not None:
        _target(ax, live.session.config.qoais.accuracy, TRAINING_COLOUR, "training target")
    if not rows and not services:
        _waiting(ax, "no round or request yet")
    ax.set_ylim(0.0, 1.02)
    ax.set_ylabel("accuracy", fontsize=8)
    _finish(ax, live)
    return figure


def latency_figure(live: ShownRun) -> Figure:
    """Federated round latency and inference response latency (mean, p95), against targets.

    Log scale when the values span more than a factor :data:`LOG_SCALE_SPAN`, linear otherwise.
    """
    figure, ax = _new_figure("Response latency")
    rows = _rows(live)
    services = _services(live)
    if rows:
        latency = [r["round_latency_s"] for r in rows]
        t = [r["sim_time_s"] for r in rows]
        _plot(ax, t, latency, "o-", color=TRAINING_COLOUR, ms=3, lw=1, label="federated round")
        if live.session is not None:
            _target(ax, live.session.config.qoais.round_latency_s, TRAINING_COLOUR, "round target")
    for series in services:
        name = series.service
        _plot(ax, series.time_s, series.latency_p95_s, ".-", label=f"{name} p95", **_INFERENCE_STYLE)
        _plot(ax, series.time_s, series.latency_mean_s, ":", label=f"{name} mean", **_INFERENCE_STYLE)
        target = _target_of(live, name, "latency_s")
        if target is not None:
            _target(ax, target, INFERENCE_COLOUR, f"{name} target")
    if rows or services:
        _latency_axis(ax, [y for line in ax.lines for y in np.asarray(line.get_ydata(), dtype=float)])
    else:
        _waiting(ax, "no round or request yet")
    ax.set_ylabel("latency (s)", fontsize=8)
    _finish(ax, live)
    return figure


def _latency_axis(ax: Axes, values: Sequence[float]) -> None:
    """Latency axis limits (and scale) that show every value inside the frame.

    A log axis when the latencies span more than :data:`LOG_SCALE_SPAN` (padded by a factor of 1.6),
    else a linear one from 0 to 1.15 × the largest value.
    """
    shown = np.array([v for v in values if math.isfinite(v) and v > 0], dtype=float)
    if not len(shown):
        return
    low, high = float(shown.min()), float(shown.max())
    if high / low > LOG_SCALE_SPAN:
        ax.set_yscale("log")
        ax.set_ylim(low / 1.6, high * 1.6)
    else:
        ax.set_ylim(0.0, high * 1.15)


def energy_figure(live: ShownRun) -> Figure:
    """Energy used so far (devices + network), with its CO2 equivalent on the right-hand axis."""
    figure, ax = _new_figure("Energy and CO2")
    samples = live.samples
    if samples:
        t = [s.time_s for s in samples]
        _plot(ax, t, [s.energy_j for s in samples], "-", color="#2ca02c", lw=1.4, label="energy, all agents")
        rows = _rows(live)
        if rows:
            ends = [r["sim_time_s"] for r in rows]
            _plot(
                ax,
                ends,
                [r["energy_total_j"] for r in rows],
                "o",
                color="#2ca02c",
                ms=3,
                label="at round end",
            )
        ecr = live.twin.carbon.ecr_kg_per_kwh if live.twin is not None else 0.0
        if ecr > 0:
            grams_per_joule = 1000.0 * float(co2_kg(1.0, ecr))

            def to_grams(joules: ArrayLike) -> ArrayLike:
                return np.asarray(joules) * grams_per_joule

            def to_joules(grams: ArrayLike) -> ArrayLike:
                return np.asarray(grams) / grams_per_joule

            right = ax.secondary_yaxis("right", functions=(to_grams, to_joules))
            right.set_ylabel(f"CO2-eq (g), {ecr:g} kg/kWh", fontsize=8)
            right.tick_params(labelsize=7)
    else:
        _waiting(ax, "not started")
    # a round top that grows in steps, as the time axis does: the axes need redrawing only then
    most = max((s.energy_j for s in samples), default=0.0)
    ax.set_ylim(0.0, axis_end(most, 1e-12) if most > 0 else 1.0)
    ax.set_ylabel("energy (J)", fontsize=8)
    _finish(ax, live)
    return figure


def coverage_figure(live: ShownRun) -> Figure:
    """Service coverage of each round against its target, and the share the radio alone covers."""
    figure, ax = _new_figure("Coverage")
    rows = [r for r in _rows(live) if "coverage" in r]
    twin, session = live.twin, live.session
    if twin is not None and session is not None:
        targets = session.config.qoais
        radio = float(np.mean(twin.coverage_grid().uplink_bps >= targets.min_rate_bps))
        radio_label = f"radio only: uplink ≥ {targets.min_rate_bps / 1e6:g} Mbit/s"
        ax.axhline(radio, color="#7f7f7f", linestyle=":", linewidth=1.2, label=radio_label)
        if rows:
            shares = [r["coverage"] for r in rows]
            t = [r["sim_time_s"] for r in rows]
            _plot(ax, t, shares, "o-", color="#9467bd", ms=3, lw=1, label="service coverage")
        else:
            _waiting(ax, "no round yet")
        _target(ax, targets.coverage, "#9467bd", "target")
    ax.set_ylim(-0.02, 1.02)
    ax.set_ylabel("share of the area", fontsize=8)
    _finish(ax, live)
    return figure


def _finish(ax: Axes, live: ShownRun) -> None:
    """The shared time axis (0 to :func:`time_axis_end` of the run's clock) and the legend."""
    ax.set_xlim(0.0, time_axis_end(float(live.twin.time) if live.twin is not None else 0.0))
    if ax.get_legend_handles_labels()[0]:
        ax.legend(fontsize=6.5, loc="best", framealpha=0.7)


PLOTS: dict[str, Callable[[ShownRun], Figure]] = {
    "accuracy": accuracy_figure,
    "latency": latency_figure,
    "energy": energy_figure,
    "coverage": coverage_figure,
}
# Plots that change every step; the others change only when a round or a request is recorded.
_PER_STEP = frozenset({"energy"})


def data_version(model: ShownRun, name: str) -> tuple[int, int, int, float]:
    """Changes when what plot ``name`` draws changes.

    Rounds, requests, the time axis's end, and for per-step plots the steps.
    """
    twin = model.twin
    if twin is None:
        return (0, 0, 0, 0.0)
    requests = sum(len(getattr(s, "records", ())) for s in twin.services)
    steps = len(model.samples) if name in _PER_STEP else 0
    return (len(twin.kpi_rows), requests, steps, time_axis_end(float(twin.time)))


def figure_png(figure: Figure) -> bytes:
    """``figure`` as PNG bytes."""
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def structure_key(figure: Figure) -> Hashable:
    """Everything ``figure`` shows except its data lines (:data:`DATA_GID`) and legends.

    Titles, labels, limits, scales, texts, the other lines (targets) with their data, the data lines'
    labels, and the labels of secondary axes: two figures with the same key differ only in their data.
    """
    parts: list[Hashable] = []
    for ax in figure.axes:
        lines = tuple(
            (line.get_label(),)
            if line.get_gid() == DATA_GID
            else (line.get_label(), _values(line.get_xdata()), _values(line.get_ydata()))
            for line in ax.lines
        )
        parts.append(
            (
                (ax.get_title(), ax.get_xlabel(), ax.get_ylabel(), ax.get_xscale(), ax.get_yscale()),
                (tuple(ax.get_xlim()), tuple(ax.get_ylim())),
                lines,
                tuple(text.get_text() for text in ax.texts),
                tuple((child.get_ylabel(), child.get_xlabel()) for child in ax.child_axes),
            )
        )
    return tuple(parts)


def _values(data: Any) -> tuple[float, ...]:
    return tuple(np.asarray(data, dtype=float).ravel().tolist())


class PlotCanvas:
    """Draws the successive figures of one live plot, redrawing only what changed (as in blitting).

    The first figure of a :func:`structure_key` is drawn without its data lines and legends, and those
    pixels are kept. A later figure with the same key only hands its data to that figure's lines, which
    are drawn with the legend on the kept pixels: a fraction of drawing the whole figure.
    """

    def __init__(self) -> None:
        self._key: Hashable = None
        self._figure: Figure | None = None
        self._canvas: FigureCanvasAgg | None = None
        self._background: Any = None

    def png(self, figure: Figure) -> bytes:
        """``figure`` as PNG bytes, drawn as described above."""
        key = structure_key(figure)
        if self._figure is None or key != self._key:
            self._draw_background(figure, key)
        else:
            for kept, new in zip(_data_lines(self._figure), _data_lines(figure), strict=True):
                kept.set_data(new.get_xdata(), new.get_ydata())
        assert self._figure is not None and self._canvas is not None
        canvas = self._canvas
        canvas.restore_region(self._background)
        renderer = canvas.get_renderer()
        for line in _data_lines(self._figure):
            line.draw(renderer)
        for legend in _legends(self._figure):
            legend.draw(renderer)
        width, height = canvas.get_width_height(physical=True)
        image = Image.frombuffer("RGBA", (width, height), canvas.buffer_rgba(), "raw", "RGBA", 0, 1)
        buffer = io.BytesIO()
        image.save(buffer, format="png", compress_level=1)
        return buffer.getvalue()

    def _draw_background(self, figure: Figure, key: Hashable) -> None:
        """Draw ``figure`` without its data lines and legends and keep the pixels."""
        canvas = FigureCanvasAgg(figure)
        moving: list[Artist] = [*_data_lines(figure), *_legends(figure)]
        for artist in moving:
            artist.set_visible(False)
        canvas.draw()
        self._background = canvas.copy_from_bbox(figure.bbox)
        for artist in moving:
            artist.set_visible(True)
        self._figure, self._canvas, self._key = figure, canvas, key


def _data_lines(figure: Figure) -> list[Line2D]:
    return [line for ax in figure.axes for line in ax.lines if line.get_gid() == DATA_GID]


def _legends(figure: Figure) -> list[Legend]:
    return [legend for ax in figure.axes if (legend := ax.get_legend()) is not None]


@solara.component
def LivePlot(model: ShownRun, name: str, frame: int, gate: FrameGate) -> None:
    """One of :data:`PLOTS`, redrawn on a new ``frame`` of the page if its data has changed since."""
    version = solara.use_memo(lambda: data_version(model, name), dependencies=[model, name, frame])
    build = PLOTS[name]
    png = solara.use_memo(
        lambda: gate.timed(lambda: figure_png(build(model))), dependencies=[model, name, version]
    )
    with solara.Column(classes=["twin-plot", f"twin-plot-{name}"], style={"min-width": "0"}):
        rw.Image(value=png, format="png")


@solara.component
def PlotImage(name: str, png: solara.Reactive[bytes]) -> None:
    """Plot ``name`` as drawn elsewhere (a live page's feed): re-rendered only when ``png`` changes."""
    with solara.Column(classes=["twin-plot", f"twin-plot-{name}"], style={"min-width": "0"}):
        rw.Image(value=png.value, format="png")
