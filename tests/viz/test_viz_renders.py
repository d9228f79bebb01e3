"""A step of the live page renders again only the panels whose content changed (counts, not timings)."""

from __future__ import annotations

import os
import time
from collections import Counter
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import solara
from mesa.visualization import solara_viz
from viz_helpers import click, image, small_overrides, texts

from twin.viz import app, panels, plots
from twin.viz.feed import LiveFeed
from twin.viz.map import MapImage
from twin.viz.plots import PLOTS, data_version

# Components that no step should render again: the page's frame, the layer buttons, SolaraViz's controls.
STILL = ["Dashboard", "AgentPage", "RunStatus", "LayerChoice", "ModelController", "ModelCreator"]


@pytest.fixture
def renders(monkeypatch: pytest.MonkeyPatch) -> Counter[str]:
    """How often each component of the live page ran, by name (a plot by its name too), and each plot was
    drawn (``drawn`` and its title)."""
    counts: Counter[str] = Counter()

    def count(component: Any, name: Callable[..., str]) -> None:
        render = component.f

        def counted(*args: Any, **kwargs: Any) -> Any:
            counts[name(*args, **kwargs)] += 1
            return render(*args, **kwargs)

        monkeypatch.setattr(component, "f", counted)

    components: list[Any] = [app.Dashboard, app.AgentPage, panels.RunStatus, panels.StatusLines]
    components += [panels.LayerChoice, panels.QoaisCard, MapImage]
    components += [solara_viz.ModelController, solara_viz.ModelCreator]
    for component in components:
        count(component, lambda *_, c=component, **__: c.name)
    count(plots.PlotImage, lambda name, png: f"PlotImage {name}")
    draw = plots.PlotCanvas.png

    def drawn(canvas: plots.PlotCanvas, figure: Any) -> bytes:
        counts[f"drawn {figure.axes[0].get_title()}"] += 1
        return draw(canvas, figure)

    monkeypatch.setattr(plots.PlotCanvas, "png", drawn)
    return counts


@pytest.fixture
def live_page(monkeypatch: pytest.MonkeyPatch) -> Iterator[tuple[Any, LiveFeed]]:
    """The page of a small home-health run, rendered, and the feed of its panels."""
    feeds: list[LiveFeed] = []
    follow = LiveFeed.follow

    def followed(feed: LiveFeed) -> Callable[[], None]:
        feeds.append(feed)
        return follow(feed)

    monkeypatch.setattr(LiveFeed, "follow", followed)
    settings = app.LaunchSettings(scenario="home-health", seed=1, overrides=small_overrides("home-health"))
    for name, value in settings.to_env().items():
        monkeypatch.setenv(name, value)
    _, rc = solara.render(solara.AppLayout(children=[app.Page()]), handle_error=False)
    try:
        (feed,) = feeds
        yield rc, feed
    finally:
        rc.close()


def settle(feed: LiveFeed, timeout_s: float = 30.0) -> None:
    """Wait until the page shows the last update (figures are drawn by a thread, a moment later)."""
    deadline = time.monotonic() + timeout_s
    while not feed.settled():
        assert time.monotonic() < deadline, "the page did not draw the last step"
        time.sleep(0.02)


def shown_data(feed: LiveFeed) -> dict[str, Any]:
    """What each panel's content depends on: the plots' data versions, the QoAIS text, the status."""
    model = feed.model
    return {
        **{f"PlotImage {name}": data_version(model, name) for name in PLOTS},
        "QoaisCard": feed.qoais.peek(),
        "StatusLines": feed.status.peek(),
    }


def test_a_step_renders_again_only_the_panels_whose_content_changed(
    live_page: tuple[Any, LiveFeed], renders: Counter[str]
) -> None:
    """Step 1 of home-health changes the status, the map and the energy plot only: nothing else renders
    again (nor is another plot drawn); step 2 ends a round and has requests, so every plot and the QoAIS
    panel render again, once each, and still not the page around them, the layer buttons or the controls."""
    # Prepare
    rc, feed = live_page
    settle(feed)
    before, map_before, rendered = shown_data(feed), image(rc, "twin-map"), renders.copy()
    # Execute
    click(rc, "Step")
    settle(feed)
    after, after_step_1 = shown_data(feed), renders.copy()
    click(rc, "Step")
    settle(feed)
    after_step_2 = renders.copy()
    # Assert
    step_1, step_2 = after_step_1 - rendered, after_step_2 - after_step_1
    unchanged = [name for name in before if before[name] == after[name]]
    assert "simulated time 2 s" in texts(rc) and image(rc, "twin-map") != map_before
    assert {"PlotImage accuracy", "PlotImage latency", "PlotImage coverage", "QoaisCard"} <= set(unchanged)
    expected = {"StatusLines": 1, "MapImage": 1, "PlotImage energy": 1, "drawn Energy and CO2": 1}
    assert step_1 == Counter(expected), step_1
    assert all(step_2[f"PlotImage {name}"] == 1 for name in PLOTS) and step_2["QoaisCard"] == 1, step_2
    assert not any(step_2[name] for name in STILL), step_2
    assert os.environ.get("REACTON_FAST") == "1"  # the renderer that walks only what changed
