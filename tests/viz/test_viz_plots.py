import math
from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from viz_helpers import small_overrides

from twin.viz.live import LiveScenario
from twin.viz.plots import (
    PLOTS,
    accuracy_figure,
    coverage_figure,
    data_version,
    energy_figure,
    inference_series,
    latency_figure,
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
