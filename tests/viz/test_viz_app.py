import re
import socket
import time
from collections.abc import Callable, Iterator
from typing import Any

import ipyvuetify as v
import ipywidgets
import pytest
import solara
from viz_helpers import RunThreads, agent_scenarios, click, html, image, small_overrides, texts, widgets

from twin.errors import ConfigError
from twin.viz import app
from twin.viz.live import LiveScenario
from twin.viz.map import CoverageMapRenderer
from usecases import registry


@pytest.fixture
def page(monkeypatch: pytest.MonkeyPatch, request: pytest.FixtureRequest) -> Iterator[Any]:
    """The page of the scenario named by the test's parameter (home-health by default), rendered."""
    scenario = getattr(request, "param", "home-health")
    settings = app.LaunchSettings(scenario=scenario, seed=1, overrides=small_overrides(scenario))
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    _, rc = solara.render(solara.AppLayout(children=[app.Page()]), handle_error=False)
    yield rc
    rc.close()


def broker_port(rc: Any) -> int:
    """The port of the run's MQTT broker, as the Run panel shows it."""
    (port,) = re.findall(r"MQTT mqtt://127\.0\.0\.1:(\d+)", texts(rc))
    return int(port)


def accepts_connections(port: int) -> bool:
    """Whether something listens on 127.0.0.1:``port``."""
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=1.0):
            return True
    except OSError:
        return False


def wait_for(condition: Callable[[], bool], timeout_s: float = 20.0) -> bool:
    """Whether ``condition`` holds within ``timeout_s`` (held updates are drawn a bit later)."""
    deadline = time.monotonic() + timeout_s
    while not condition():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def test_launch_settings_round_trip() -> None:
    """``twin viz`` hands its arguments to the page through TWIN_VIZ_* variables, read back unchanged."""
    # Prepare
    settings = app.LaunchSettings("robotaxi", 4, {"fl.rounds": "2"}, "local", "/tmp/runs")
    # Execute
    back = app.LaunchSettings.from_env(settings.to_env())
    # Assert
    assert back == settings
    assert app.LaunchSettings.from_env({}) == app.LaunchSettings()
    with pytest.raises(ConfigError, match="JSON object"):
        app.LaunchSettings.from_env({"TWIN_VIZ_SET": "[1, 2]"})
    with pytest.raises(ConfigError, match="seed"):
        app.LaunchSettings.from_env({"TWIN_VIZ_SEED": "x"})


@pytest.mark.parametrize("page", agent_scenarios(), indirect=True)
def test_step_moves_every_agent_scenario(page: Any) -> None:
    """For every agent scenario, Step advances the run one second and redraws the map and the energy plot."""
    # Prepare
    assert "simulated time 0 s" in texts(page)
    map_before, energy_before = image(page, "twin-map"), image(page, "twin-plot-energy")
    # Execute
    click(page, "Step")
    click(page, "Step")
    # Assert
    # another thread may be rendering when Step is clicked: it renders the Step too, a moment later
    assert wait_for(lambda: "simulated time 2 s" in texts(page), timeout_s=60.0)
    assert wait_for(lambda: image(page, "twin-map") != map_before)
    assert wait_for(lambda: image(page, "twin-plot-energy") != energy_before)


@pytest.mark.parametrize(
    "page",
    [n for n in registry.names() if n not in agent_scenarios()],
    indirect=True,
)
def test_every_calculation_scenario_shows_its_result(page: Any, run_threads: RunThreads) -> None:
    """A calculation scenario shows its parameters, its result table, a plot and its QoAIS."""
    # Execute
    inputs = [w for w in widgets(page) if isinstance(w, v.TextField)]
    shown = html(page)
    # Assert
    assert len(inputs) >= 5 and run_threads() == []
    assert "twin-result" in shown and ("PASS" in shown or "FAIL" in shown)
    assert any(isinstance(w, ipywidgets.Image) for w in widgets(page))


def test_reset_and_close_leave_no_broker_thread_or_connection(page: Any, run_threads: RunThreads) -> None:
    """Reset closes the old run (broker, MQTT client) before the new one runs; closing the tab, the last."""
    # Prepare
    first, first_port = run_threads(), broker_port(page)
    click(page, "Step")
    # Execute
    click(page, "Reset")
    after_reset, second_port = run_threads(), broker_port(page)
    reset_text = texts(page)
    page.close()
    # Assert
    assert len(first) == 2 and first[1] == "twin-embedded-broker" and first[0].startswith("paho-mqtt-client")
    assert len(after_reset) == 2 and after_reset[0] != first[0] and "twin-embedded-broker" in after_reset
    assert "simulated time 0 s" in reset_text and second_port != first_port
    assert not accepts_connections(first_port)
    assert run_threads.wait_until_gone() == [] and not accepts_connections(second_port)


def test_a_bad_setting_shows_on_reset(page: Any, run_threads: RunThreads) -> None:
    """A setting typed in "More settings" that does not validate is shown on Reset; nothing keeps running."""
    # Prepare
    inputs = [w for w in widgets(page) if isinstance(w, v.TextField)]
    (field,) = [w for w in inputs if (w.label or "").startswith("More settings")]
    field.v_model = "fl.rounds=many"
    field.fire_event("focusout", None)
    # Execute
    click(page, "Reset")
    # Assert
    assert "Could not start" in texts(page) and "fl.rounds" in texts(page)
    assert run_threads.wait_until_gone() == []
    failed = CoverageMapRenderer(LiveScenario(scenario_name="home-health", **{"fl.rounds": "many"}))
    assert image(page, "twin-map") == failed.frame_png()  # the empty frame, not the last run's map


def test_fast_steps_redraw_the_figures_only_as_often_as_they_can_be_drawn(
    page: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Steps that come faster than the map can be drawn are drawn together; the last one always is."""
    # Prepare
    drawn: list[str] = []
    frame_png = CoverageMapRenderer.frame_png

    def counted(renderer: CoverageMapRenderer) -> bytes:
        drawn.append(renderer.title())
        return frame_png(renderer)

    monkeypatch.setattr(CoverageMapRenderer, "frame_png", counted)
    # Execute
    for _ in range(12):
        click(page, "Step")
    drawn_while_stepping = len(drawn)
    # Assert
    assert wait_for(lambda: "simulated time 12 s" in texts(page))
    assert drawn_while_stepping <= 6, drawn
    assert wait_for(lambda: bool(drawn) and "t = 12 s" in drawn[-1])


@pytest.mark.parametrize("page", ["seed-split-inference"], indirect=True)
def test_calculation_parameters_are_editable(page: Any) -> None:
    """Editing a parameter recomputes the table; a value that does not validate is shown, the table stays."""
    # Prepare
    (rate,) = [w for w in widgets(page) if isinstance(w, v.TextField) and w.label == "link.rate_bps"]
    before = html(page)
    # Execute
    rate.v_model = "1e8"
    rate.fire_event("focusout", None)
    edited = html(page)
    rate.v_model = "fast"
    rate.fire_event("focusout", None)
    # Assert
    assert edited != before and "at 0.1 Gb/s" in texts(page)
    assert "link.rate_bps" in texts(page) and "expected float" in texts(page)
    assert html(page) == edited


@pytest.mark.parametrize("page", ["no-such-scenario"], indirect=True)
def test_an_unknown_scenario_is_an_error_on_the_page(page: Any, run_threads: RunThreads) -> None:
    """A scenario that does not exist is named on the page, with the available ones; nothing runs."""
    # Assert
    assert "no-such-scenario" in texts(page) and "home-health" in texts(page)
    assert run_threads() == []
