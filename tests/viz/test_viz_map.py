from collections.abc import Iterator
from types import SimpleNamespace

import numpy as np
import pytest
from matplotlib.collections import LineCollection, PathCollection
from matplotlib.colors import to_rgba
from viz_helpers import small_overrides

from twin.viz.live import LiveScenario
from twin.viz.map import (
    CLUSTER_COLOURS,
    KIND_COLOURS,
    SPARE_COLOURS,
    STATE_MARKERS,
    CoverageMapRenderer,
    coverage_layer,
    kind_colour,
    portray_agent,
)


@pytest.fixture(scope="module")
def live() -> Iterator[LiveScenario]:
    model = LiveScenario(scenario_name="home-health", seed=2, **small_overrides("home-health"))
    yield model
    model.close()


def redraw(renderer: CoverageMapRenderer) -> bytes:
    """What the page's map does on every frame."""
    return renderer.frame_png()


def test_portrayal_by_kind_and_state() -> None:
    """Devices are coloured by kind and marked by state; an agent without a state is a base station."""
    # Prepare
    drone = SimpleNamespace(kind="drone", state="escalated")
    stranger = SimpleNamespace(kind="submarine", state="dreaming")
    # Execute
    styles = [portray_agent(a) for a in (drone, stranger, SimpleNamespace(kind="gnb"))]
    # Assert
    assert (styles[0].color, styles[0].marker) == (KIND_COLOURS["drone"], STATE_MARKERS["escalated"])
    assert styles[0].size is not None and styles[0].size > 100
    assert styles[1].color in SPARE_COLOURS and styles[1].marker == "o"
    assert kind_colour("submarine") == styles[1].color
    assert styles[2].marker == "H" and styles[2].zorder == 4


def test_map_is_to_scale_with_coverage_links_and_agents(live: LiveScenario) -> None:
    """The map spans the area in metres at equal aspect: coverage image, a link per device, every agent."""
    # Prepare
    renderer = CoverageMapRenderer(live)
    twin = live.twin
    assert twin is not None
    # Execute
    live.step()
    redraw(renderer)
    ax = renderer.canvas
    # Assert
    assert ax.get_xlim() == (0.0, twin.area.width_m) and ax.get_ylim() == (0.0, twin.area.height_m)
    assert ax.get_aspect() == 1.0
    assert ax.images[0].get_extent() == [0.0, twin.area.width_m, 0.0, twin.area.height_m]
    links = [c for c in ax.collections if isinstance(c, LineCollection) and len(c.get_segments()) > 0]
    assert len(links[-1].get_segments()) == len(twin.devices)
    drawn = sum(len(c.get_offsets()) for c in ax.collections if isinstance(c, PathCollection))
    assert drawn == len(twin.devices) + len(twin.base_stations)
    assert "t = 1 s" in ax.get_title() and "home-health" in ax.get_title()
    labels = [t.get_text() for t in ax.get_legend().get_texts()]
    assert "home-health" in labels and "straggler" in labels and "base station (gNB)" in labels


@pytest.mark.parametrize(
    ("layer", "label"), [("sinr", "SINR (dB)"), ("rate", "Mbit/s"), ("service", "no round yet")]
)
def test_coverage_layer_is_chosen(live: LiveScenario, layer: str, label: str) -> None:
    """The chosen layer is drawn with its colour bar; service coverage says when no round has ended."""
    # Prepare
    renderer = CoverageMapRenderer(live)
    coverage_layer.set(layer)  # type: ignore[arg-type]
    try:
        # Execute
        redraw(renderer)
    finally:
        coverage_layer.set("sinr")
    # Assert
    assert label in renderer.colorbar_axes.get_ylabel()


def test_service_layer_shows_the_last_round(live: LiveScenario) -> None:
    """Once a round has ended, the service layer is that round's coverage map."""
    # Prepare
    twin = live.twin
    assert twin is not None
    while not twin.kpi_rows:
        live.step()
    renderer = CoverageMapRenderer(live)
    coverage_layer.set("service")
    try:
        # Execute
        redraw(renderer)
    finally:
        coverage_layer.set("sinr")
    # Assert
    assert "last round" in renderer.colorbar_axes.get_ylabel()
    assert twin.last_coverage is not None
    assert (renderer.canvas.images[0].get_array() == twin.last_coverage.covered).all()


def test_a_run_that_could_not_start_draws_its_frame() -> None:
    """A model whose run failed to start is drawn as an empty frame saying so; only matplotlib is offered."""
    # Prepare
    failed = LiveScenario(scenario_name="home-health", **{"fl.rounds": "many"})
    # Execute
    renderer = CoverageMapRenderer(failed)
    redraw(renderer)
    # Assert
    assert "could not start" in renderer.canvas.get_title()
    with pytest.raises(ValueError, match="matplotlib"):
        CoverageMapRenderer(failed, backend="altair")  # type: ignore[arg-type]


def _lines(renderer: CoverageMapRenderer, label: str) -> LineCollection:
    (found,) = [c for c in renderer.canvas.collections if c.get_label() == label]
    assert isinstance(found, LineCollection)
    return found


def test_power_line_corridors_are_drawn_under_the_drones() -> None:
    """grid-inspection: each corridor a drone flies is a line over the coverage, under the agents."""
    # Prepare
    live = LiveScenario(scenario_name="grid-inspection", seed=4, **small_overrides("grid-inspection"))
    try:
        twin = live.twin
        assert twin is not None
        routes = {tuple(map(tuple, getattr(d, "route_m"))) for d in twin.devices}  # noqa: B009
        renderer = CoverageMapRenderer(live)
        # Execute
        redraw(renderer)
        corridors = _lines(renderer, "power-line corridor")
    finally:
        live.close()
    # Assert
    drawn = {tuple(map(tuple, segment)) for segment in corridors.get_segments()}
    assert len(routes) >= 2 and drawn == routes
    agents = [c for c in renderer.canvas.collections if isinstance(c, PathCollection)]
    assert (
        renderer.canvas.images[0].get_zorder() < corridors.get_zorder() < min(a.get_zorder() for a in agents)
    )
    labels = [t.get_text() for t in renderer.canvas.get_legend().get_texts()]
    assert "power-line corridor" in labels and "street" not in labels


def test_streets_are_drawn_and_taxis_drive_on_them() -> None:
    """robotaxi: the street grid (every block, as far as whole blocks fit) is drawn; taxis are on it."""
    # Prepare
    live = LiveScenario(scenario_name="robotaxi", seed=4, **small_overrides("robotaxi"))
    try:
        twin = live.twin
        assert twin is not None
        block = float(getattr(twin.devices[0], "block_m"))  # noqa: B009
        renderer = CoverageMapRenderer(live)
        for _ in range(3):
            live.step()
        # Execute
        redraw(renderer)
        streets = _lines(renderer, "street").get_segments()
        positions = [tuple(d.position) for d in twin.devices]
    finally:
        live.close()
    # Assert
    columns = int(twin.area.width_m // block) + 1
    rows = int(twin.area.height_m // block) + 1
    assert len(streets) == columns + rows
    xs = {s[0][0] for s in streets if s[0][0] == s[1][0]}
    ys = {s[0][1] for s in streets if s[0][1] == s[1][1]}
    assert xs == {i * block for i in range(columns)} and ys == {j * block for j in range(rows)}
    assert all(min(abs(x - v) for v in xs) < 1e-6 or min(abs(y - v) for v in ys) < 1e-6 for x, y in positions)
    labels = [t.get_text() for t in renderer.canvas.get_legend().get_texts()]
    assert "street" in labels and "power-line corridor" not in labels


def test_frames_redraw_only_what_moves(live: LiveScenario, monkeypatch: pytest.MonkeyPatch) -> None:
    """The structure (coverage, cells, legend) is drawn once per layer; frames redraw agents and title."""
    # Prepare
    renderer = CoverageMapRenderer(live)
    structures: list[int] = []
    draw_structure = renderer.draw_structure

    def counted() -> object:
        structures.append(1)
        return draw_structure()

    monkeypatch.setattr(renderer, "draw_structure", counted)
    first = redraw(renderer)
    # Execute
    live.step()
    second = redraw(renderer)
    coverage_layer.set("rate")
    try:
        third = redraw(renderer)
    finally:
        coverage_layer.set("sinr")
    # Assert
    assert len(structures) == 2  # the first frame, then the layer change
    assert first != second != third and first[:8] == b"\x89PNG\r\n\x1a\n"
    twin = live.twin
    assert twin is not None
    assert f"t = {float(twin.time):.0f} s" in renderer.canvas.get_title()
    agents = [c for c in renderer.canvas.collections if isinstance(c, PathCollection)]
    assert sum(np.shape(c.get_offsets())[0] for c in agents) == len(twin.devices) + len(twin.base_stations)


def test_robots_are_coloured_by_their_cluster() -> None:
    """industrial-robots: each robot in its production step's colour; the legend names the steps."""
    # Prepare
    welder = SimpleNamespace(kind="robot", state="idle", step=1, step_name="welding")
    live = LiveScenario(scenario_name="industrial-robots", seed=4, **small_overrides("industrial-robots"))
    try:
        twin = live.twin
        assert twin is not None
        steps = {(d.step, d.step_name) for d in twin.devices}  # type: ignore[attr-defined]
        colours = {d.agent_id: CLUSTER_COLOURS[d.step % len(CLUSTER_COLOURS)] for d in twin.devices}  # type: ignore[attr-defined]
        renderer = CoverageMapRenderer(live)
        # Execute
        redraw(renderer)
        style = portray_agent(welder)
    finally:
        live.close()
    # Assert
    assert style.color == CLUSTER_COLOURS[1] != KIND_COLOURS["robot"]
    assert len(steps) >= 2 and len(set(colours.values())) == len(steps)
    labels = [t.get_text() for t in renderer.canvas.get_legend().get_texts()]
    assert {f"robot: {name}" for _, name in steps} <= set(labels) and "robot" not in labels
    drawn = {
        tuple(np.round(colour, 3))
        for c in renderer.canvas.collections
        if isinstance(c, PathCollection)
        for colour in c.get_facecolors()
    }
    assert {tuple(np.round(to_rgba(c), 3)) for c in colours.values()} <= drawn
