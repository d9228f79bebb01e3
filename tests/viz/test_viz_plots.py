import io
import math
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from PIL import Image
from viz_helpers import small_overrides

from twin.viz.live import LiveScenario
from twin.viz.plots import (
    PLOTS,
    PlotCanvas,
    accuracy_figure,
    coverage_figure,
    data_version,
    energy_figure,
    figure_png,
    inference_series,
    latency_figure,
    time_axis_end,
)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveScenario]:
    model = LiveScenario(scenario_name="home-health", seed=3, **small_overrides("home-health"))
    yield model
    model.close()


def _record(tick: int, time_s: float, correct: bool, reliability: float, latency_s: float) -> dict:
    return {
        "tick": tick,
        "sim_time_s": time_s,
        "correct": correct,
        "reliability": reliability,
        "latency_s": latency_s,
    }


def test_inference_series_is_per_tick() -> None:
    """Requests are summarised per tick: service accuracy, mean and p95 of the finite latencies."""
    # Prepare
    service = SimpleNamespace(
        service="alerts",
        records=[
            _record(0, 2.5, True, 1.0, 0.01),
            _record(0, 2.5, False, 1.0, 0.03),
            _record(1, 7.5, True, 0.5, math.inf),
        ],
    )
    # Execute
    series = inference_series(service)
    # Assert
    assert series is not None and series.service == "alerts"
    assert series.time_s.tolist() == [2.5, 7.5]
    assert series.service_accuracy.tolist() == [0.5, 0.5]
    assert series.latency_mean_s[0] == pytest.approx(0.02) and np.isnan(series.latency_mean_s[1])
    assert inference_series(SimpleNamespace(service="none", records=[])) is None


def test_plots_wait_then_show_rounds_against_targets(live: LiveScenario) -> None:
    """Before any round the plots say so; after one they show its values and the QoAIS target lines."""
    # Prepare
    empty = accuracy_figure(live).axes[0]
    assert "no round" in " ".join(t.get_text() for t in empty.texts)
    twin, session = live.twin, live.session
    assert twin is not None and session is not None
    # Execute
    while len(twin.kpi_rows) < 1 or not twin.services[0].records:
        live.step()
    builders = (accuracy_figure, latency_figure, coverage_figure)
    accuracy, latency, coverage = (build(live).axes[0] for build in builders)
    # Assert
    row = twin.kpi_rows[-1]
    by_label = {line.get_label(): line for line in accuracy.lines}
    assert by_label["model (held-out)"].get_ydata()[-1] == pytest.approx(row["accuracy"])
    assert by_label["training target"].get_ydata()[0] == session.config.qoais.accuracy
    assert "health-alerts (per tick)" in by_label
    assert latency.get_yscale() == "log"
    latency_labels = {line.get_label() for line in latency.lines}
    assert latency_labels >= {"federated round", "health-alerts p95", "round target"}
    assert {line.get_label() for line in coverage.lines} >= {"service coverage", "target"}
    assert all(ax.get_xlim()[0] == 0.0 for ax in (accuracy, latency, coverage))


def test_energy_has_co2_axis_and_grows(live: LiveScenario) -> None:
    """Energy is plotted every step with the CO2 equivalent (the scenario's ECR) on a second axis."""
    # Prepare
    live.step()
    # Execute
    figure = energy_figure(live)
    # Assert
    ax = figure.axes[0]
    line = next(ln for ln in ax.lines if ln.get_label() == "energy, all agents")
    assert len(line.get_xdata()) == len(live.samples) and line.get_ydata()[-1] == live.samples[-1].energy_j
    assert any("kg/kWh" in other.get_ylabel() for other in ax.child_axes)


def test_data_version_tracks_what_each_plot_draws(live: LiveScenario) -> None:
    """Per-round plots change with rounds and requests only; the energy plot changes every step."""
    # Prepare
    before = {name: data_version(live, name) for name in PLOTS}
    twin = live.twin
    assert twin is not None
    rows, requests = len(twin.kpi_rows), sum(len(s.records) for s in twin.services)
    # Execute
    live.step()
    after = {name: data_version(live, name) for name in PLOTS}
    # Assert
    assert after["energy"] != before["energy"]
    unchanged = rows == len(twin.kpi_rows) and requests == sum(len(s.records) for s in twin.services)
    assert (after["accuracy"] == before["accuracy"]) == unchanged


def _latency_live(latencies: list[float], target_s: float) -> SimpleNamespace:
    """A stand-in run with rounds of the given latencies, one every 10 s, and no inference service."""
    rows = [{"sim_time_s": 10.0 * (i + 1), "round_latency_s": v} for i, v in enumerate(latencies)]
    targets = SimpleNamespace(round_latency_s=target_s)
    return SimpleNamespace(
        twin=SimpleNamespace(kpi_rows=rows, services=[], time=10.0 * len(rows) + 3),
        session=SimpleNamespace(config=SimpleNamespace(qoais=targets)),
    )


def _inside(ax: object, values: list[float]) -> bool:
    low, high = ax.get_ylim()  # type: ignore[attr-defined]
    return all(low < v < high for v in values)


def _labelled_ticks(ax: object) -> list[float]:
    """Major y ticks inside the axis that carry a label."""
    low, high = ax.get_ylim()  # type: ignore[attr-defined]
    ticks = ax.yaxis.get_major_ticks()  # type: ignore[attr-defined]
    return [t.get_loc() for t in ticks if low <= t.get_loc() <= high and t.label1.get_text()]


def test_latency_in_a_narrow_range_is_linear_with_readable_ticks() -> None:
    """robotaxi's rounds all last their 1 s deadline: points inside a linear axis with labelled ticks."""
    # Prepare
    live = _latency_live([1.0, 1.0, 1.0], target_s=1.0)
    # Execute
    ax = latency_figure(live).axes[0]  # type: ignore[arg-type]
    figure_png(ax.get_figure(root=True))  # type: ignore[arg-type]  # draws: sets the tick labels
    # Assert
    assert ax.get_yscale() == "linear" and _inside(ax, [1.0])
    assert len(_labelled_ticks(ax)) >= 3


def test_latency_over_decades_is_log_with_readable_ticks() -> None:
    """Latencies spanning decades use a log axis whose limits include every point and at least two decades."""
    # Prepare
    live = _latency_live([0.02, 0.5, 4.0], target_s=1.0)
    # Execute
    ax = latency_figure(live).axes[0]  # type: ignore[arg-type]
    figure_png(ax.get_figure(root=True))  # type: ignore[arg-type]  # draws: sets the tick labels
    # Assert
    assert ax.get_yscale() == "log" and _inside(ax, [0.02, 0.5, 4.0, 1.0])
    assert len(_labelled_ticks(ax)) >= 2


def test_time_axis_end_grows_in_round_steps() -> None:
    """The plots' time axis ends at a round number at or after the clock (at least 10 s)."""
    # Execute / Assert
    assert [time_axis_end(t) for t in (0, 9, 10, 11, 13, 21, 99, 101, 1234)] == [
        10,
        10,
        10,
        12,
        15,
        25,
        100,
        120,
        1500,
    ]


def test_every_plot_shares_the_time_axis(live: LiveScenario) -> None:
    """All four plots show simulated time in seconds from 0 to the same end, before and after rounds."""
    # Prepare
    fresh = LiveScenario(scenario_name="home-health", seed=4, **small_overrides("home-health"))
    try:
        # Execute
        before = [build(fresh).axes[0] for build in PLOTS.values()]
        axes = [build(live).axes[0] for build in PLOTS.values()]
    finally:
        fresh.close()
    # Assert
    assert live.twin is not None and live.twin.kpi_rows
    end = time_axis_end(float(live.twin.time))
    assert all(ax.get_xlim() == (0.0, end) for ax in axes)
    assert all(ax.get_xlim() == (0.0, 10.0) for ax in before)
    assert {ax.get_xlabel() for ax in axes + before} == {"simulated time (s)"}


def _pixels(png: bytes) -> np.ndarray:
    return np.asarray(Image.open(io.BytesIO(png)).convert("RGB"), dtype=int)


def test_plot_canvas_draws_the_picture_savefig_draws(
    live: LiveScenario, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Drawing only the data lines and legend on kept axes gives the same picture as drawing it all, step
    after step; the axes are drawn again only when they change."""
    # Prepare
    backgrounds: list[str] = []
    draw_background = PlotCanvas._draw_background

    def counted(canvas: PlotCanvas, figure: object, key: object) -> None:
        backgrounds.append(figure.axes[0].get_title())  # type: ignore[attr-defined]
        draw_background(canvas, figure, key)  # type: ignore[arg-type]

    monkeypatch.setattr(PlotCanvas, "_draw_background", counted)
    canvases = {name: PlotCanvas() for name in PLOTS}
    differing: list[float] = []
    # Execute
    for _ in range(4):
        live.step()
        for name, build in PLOTS.items():
            kept, full = _pixels(canvases[name].png(build(live))), _pixels(figure_png(build(live)))
            assert kept.shape == full.shape
            differing.append(float((np.abs(kept - full).sum(axis=2) > 30).mean()))
    # Assert
    assert max(differing) < 1e-3  # a few pixels where a line and the legend overlap in another order
    assert backgrounds.count("Energy and CO2") < 4  # drawn every step, its axes only when they change
