"""The map: the area to scale, a coverage layer, base stations, devices by kind and state, serving cells.

:class:`CoverageMapRenderer` is a Mesa :class:`~mesa.visualization.SpaceRenderer` (matplotlib backend)
of the twin's ``ContinuousSpace``; Mesa draws the agents from :func:`portray_agent`. The coverage layer
cannot be a Mesa property layer (``mesa.experimental.continuous_space.ContinuousSpace`` in Mesa 3.5.1
has none), so the renderer draws it, with the cell borders and the power-line corridors or streets the
devices follow, as part of the space's structure.

That structure changes only with the layer (and, for service coverage, with each round), so
:meth:`CoverageMapRenderer.frame_png` draws it once into a cached background (matplotlib's Agg renderer,
as in blitting) and each frame draws only what moves on top of it: the device → serving-cell links, the
agents (Mesa's ``draw_agents``) and the title. :func:`MapView` shows those frames on the page.
"""

from __future__ import annotations

import io
import zlib
from collections.abc import Hashable
from typing import TYPE_CHECKING, Any, Literal

import numpy as np
import reacton.ipywidgets as rw
import solara
from matplotlib.artist import Artist
from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import RendererAgg
from matplotlib.collections import LineCollection
from matplotlib.colors import ListedColormap
from matplotlib.lines import Line2D
from matplotlib.patches import Patch
from mesa.visualization import SpaceRenderer
from mesa.visualization.components import AgentPortrayalStyle
from PIL import Image

from twin.progress import run_progress
from twin.viz.features import draw_features, feature_handles
from twin.viz.frames import reading

if TYPE_CHECKING:
    from twin.model import TwinModel
    from twin.viz.frames import FrameGate
    from twin.viz.live import LiveScenario
    from twin.viz.replay import ReplayScenario, ReplayTwin

    type ShownRun = LiveScenario | ReplayScenario
    """What the page draws: a live run, or a finished one replayed (:mod:`twin.viz.replay`)."""
    type ShownWorld = TwinModel | ReplayTwin

CoverageLayer = Literal["sinr", "rate", "service"]
LAYERS: dict[CoverageLayer, str] = {
    "sinr": "SINR (dB)",
    "rate": "downlink rate, alone in the cell (Mbit/s)",
    "service": "service coverage (rate and service accuracy on target)",
}
coverage_layer: solara.Reactive[CoverageLayer] = solara.reactive("sinr")

STATE_MARKERS = {
    "idle": "o",
    "downloading": "v",
    "training": "s",
    "sending": "^",
    "straggler": "D",
    "offline": "X",
    "escalated": "*",
}
KIND_COLOURS = {
    "home-health": "#e6194b",
    "drone": "#f58231",
    "robotaxi": "#911eb4",
    "robot": "#f032e6",
}
SPARE_COLOURS = ("#e6194b", "#f58231", "#911eb4", "#f032e6", "#9a6324", "#800000", "#000075", "#a9a9a9")
CLUSTER_COLOURS = ("#f032e6", "#3cb44b", "#4363d8", "#9a6324", "#469990", "#e6194b", "#000075", "#808000")
"""Colours of a device's cluster (an industrial robot's production step), by the cluster's index."""
CELL_COLOURS = ("#ffffff", "#ffe119", "#42d4f4", "#bfef45", "#fabed4", "#dcbeff", "#fffac8", "#aaffc3")
BASE_STATION_COLOUR = "#1a1a1a"
CORRIDOR_STYLE: dict[str, Any] = {"colors": "#3b2a1a", "linewidths": 1.6, "linestyles": "-.", "alpha": 0.9}
STREET_STYLE: dict[str, Any] = {"colors": "#f5f5f5", "linewidths": 1.1, "alpha": 0.75}
_COVERED = ListedColormap(["#d9d9d9", "#41ab5d"])


def kind_colour(kind: str) -> str:
    """The colour of a device kind (a fixed one for the known kinds, a stable pick for others)."""
    return KIND_COLOURS.get(kind) or SPARE_COLOURS[zlib.crc32(kind.encode()) % len(SPARE_COLOURS)]


def cluster_of(agent: Any) -> tuple[int, str] | None:
    """The cluster a device belongs to (a robot's production step: index, name), None for most devices."""
    step, name = getattr(agent, "step", None), getattr(agent, "step_name", None)
    if isinstance(step, int) and isinstance(name, str):
        return step, name
    return None


def device_colour(agent: Any) -> str:
    """A device's colour: its cluster's where it has one, else its kind's."""
    cluster = cluster_of(agent)
    if cluster is not None:
        return CLUSTER_COLOURS[cluster[0] % len(CLUSTER_COLOURS)]
    return kind_colour(agent.kind)


def portray_agent(agent: Any) -> AgentPortrayalStyle:
    """Devices: colour by kind (by cluster where they have one), marker by state; a base station: a hexagon.

    A base station is anything without a state.
    """
    state = getattr(agent, "state", None)
    if state is None:
        return AgentPortrayalStyle(
            color=BASE_STATION_COLOUR,
            marker="H",
            size=260,
            zorder=4,
            edgecolors="white",
            linewidths=1.5,
        )
    value = str(state)
    return AgentPortrayalStyle(
        color=device_colour(agent),
        marker=STATE_MARKERS.get(value, "o"),
        size=110 if value == "escalated" else 42,
        zorder=3,
        edgecolors="white",
        linewidths=0.6,
    )


class CoverageMapRenderer(SpaceRenderer):
    """Mesa's space renderer of a live or replayed run, with the coverage layer under the agents."""

    def __init__(self, model: ShownRun, backend: Literal["matplotlib"] = "matplotlib") -> None:
        """Set up the figure, the structure (coverage, cells, routes) and the agents' portrayal.

        Raises:
            ValueError: a backend other than matplotlib.
        """
        if backend != "matplotlib":
            raise ValueError(f"the coverage map draws with matplotlib, got backend {backend!r}")
        super().__init__(model, backend="matplotlib")
        self.live = model
        figure = self.backend_renderer.fig
        figure.set_size_inches(6.4, 6.8)
        self.colorbar_axes = self.backend_renderer.ax.inset_axes((1.03, 0.0, 0.035, 1.0))
        self._agg: RendererAgg | None = None
        self._background: Any = None
        self._background_key: Hashable = None
        self._moving: list[Artist] = []
        self.setup_structure()
        self.setup_agents(portray_agent)

    def draw_structure(self, **kwargs: Any) -> Axes:
        """Mesa's frame of the space, then the coverage layer, cell borders, corridors or streets, legend."""
        ax: Axes = super().draw_structure(**kwargs)
        twin = self.live.twin
        self.colorbar_axes.clear()
        if twin is None:
            ax.set_title(f"{self.live.scenario_name}: could not start", fontsize=10)
            self.colorbar_axes.set_axis_off()
            return ax
        width, height = twin.area.width_m, twin.area.height_m
        draw_coverage_layer(ax, self.colorbar_axes, self.live, coverage_layer.value)
        draw_features(ax, twin)
        draw_routes(ax, twin)
        ax.set_xlim(0.0, width)
        ax.set_ylim(0.0, height)
        ax.set_aspect("equal")
        ax.set_xlabel("x (m)")
        ax.set_ylabel("y (m)")
        ax.set_title(self.title(), fontsize=10)
        ax.legend(
            handles=legend_handles(self.live),
            loc="upper center",
            bbox_to_anchor=(0.5, -0.09),
            ncol=5,
            fontsize=7,
            frameon=False,
        )
        return ax

    def title(self) -> str:
        """``scenario · t = … s · round r/R`` (``tick k/N · round r`` in ticks), or that it did not start."""
        twin = self.live.twin
        if twin is None:
            return f"{self.live.scenario_name}: could not start"
        rounds = f" · {run_progress(twin).text(sep=' · ')}" if twin.network is not None else ""
        return f"{self.live.scenario_name} · t = {float(twin.time):.0f} s{rounds}"

    def structure_key(self) -> Hashable:
        """Changes when the structure must be redrawn: the layer, and each round's service coverage."""
        twin = self.live.twin
        if twin is None:
            return ("could not start",)
        layer = coverage_layer.value
        return (layer, id(twin.last_coverage) if layer == "service" else None)

    def frame_png(self) -> bytes:
        """The map now, as PNG: the cached structure with this instant's links, agents and title on top."""
        figure = self.backend_renderer.fig
        ax = self.canvas
        for artist in self._moving:
            artist.remove()
        self._moving = []
        with reading(self.live):  # a live run may be stepping in another thread
            key = self.structure_key()
            if self._agg is None or key != self._background_key:
                self._draw_background(key)
            if self.live.twin is not None:
                before = set(ax.get_children())
                draw_serving_links(ax, self.live)
                draw_server_queues(ax, self.live)
                self.draw_agents()
                self._moving = [a for a in ax.get_children() if a not in before]
            title = self.title()
        assert self._agg is not None
        self._agg.restore_region(self._background)
        for artist in sorted(self._moving, key=lambda a: a.get_zorder()):
            artist.draw(self._agg)
        ax.title.set_text(title)
        ax.title.set_alpha(None)
        ax.title.draw(self._agg)
        width, height = self._agg.get_canvas_width_height()
        image = Image.frombuffer(
            "RGBA", (int(width), int(height)), self._agg.buffer_rgba(), "raw", "RGBA", 0, 1
        )
        buffer = io.BytesIO()
        image.save(buffer, format="png", compress_level=1)
        figure.stale = False
        return buffer.getvalue()

    def _draw_background(self, key: Hashable) -> None:
        """Draw everything that does not move (title hidden but laid out) and keep the pixels."""
        figure = self.backend_renderer.fig
        ax = self.canvas
        for artist in [*ax.lines, *ax.collections, *ax.patches, *ax.images, *ax.artists]:
            artist.remove()
        self.draw_structure()
        ax.title.set_alpha(0.0)
        width, height = figure.bbox.size
        self._agg = RendererAgg(int(round(width)), int(round(height)), figure.dpi)
        figure.draw(self._agg)
        self._background = self._agg.copy_from_bbox(figure.bbox)
        self._background_key = key


@solara.component
def MapView(renderer: CoverageMapRenderer, frame: int, gate: FrameGate) -> None:
    """The map of ``renderer``'s model, drawn anew on each ``frame`` of the page and on a layer change."""
    layer = coverage_layer.value
    png = solara.use_memo(lambda: gate.timed(renderer.frame_png), dependencies=[renderer, frame, layer])
    rw.Image(value=png, format="png")


@solara.component
def MapImage(png: solara.Reactive[bytes]) -> None:
    """The map as drawn elsewhere (a live page's feed): re-rendered only when ``png`` changes."""
    rw.Image(value=png.value, format="png")


def draw_coverage_layer(ax: Axes, cax: Axes, live: ShownRun, layer: CoverageLayer) -> None:
    """The chosen coverage layer as an image over the area, with its colour bar in ``cax``."""
    twin = live.twin
    assert twin is not None
    grid = twin.coverage_grid()
    extent = (0.0, twin.area.width_m, 0.0, twin.area.height_m)
    style: dict[str, Any] = {"origin": "lower", "extent": extent, "zorder": 0, "interpolation": "nearest"}
    if layer == "service":
        covered, label = service_coverage_cells(live)
        image = ax.imshow(covered.astype(float), cmap=_COVERED, vmin=0.0, vmax=1.0, alpha=0.8, **style)
        bar = ax.figure.colorbar(image, cax=cax, ticks=[0.25, 0.75])
        bar.ax.set_yticklabels(["not covered", "covered"], fontsize=7)
        bar.set_label(label, fontsize=8)
    else:
        values = grid.sinr_db if layer == "sinr" else grid.downlink_bps / 1e6
        limits = (-10.0, 30.0) if layer == "sinr" else (0.0, max(float(np.nanmax(values)), 1e-9))
        image = ax.imshow(values, cmap="viridis", vmin=limits[0], vmax=limits[1], alpha=0.85, **style)
        bar = ax.figure.colorbar(image, cax=cax)
        bar.set_label(LAYERS[layer], fontsize=8)
    bar.ax.tick_params(labelsize=7)
    for index in range(len(twin.base_stations)):
        region = (grid.serving_cell == index).astype(float)
        if 0 < region.sum() < region.size:
            ax.contour(grid.xs, grid.ys, region, levels=[0.5], colors="white", linewidths=0.8, zorder=1)


def service_coverage_cells(live: ShownRun) -> tuple[np.ndarray, str]:
    """Covered grid cells and what they mean: the last round's service coverage, else the radio's alone."""
    twin = live.twin
    assert twin is not None and live.session is not None
    if twin.last_coverage is not None:
        share = twin.last_coverage.share
        return twin.last_coverage.covered, f"service coverage, last round ({share:.0%})"
    min_rate = live.session.config.qoais.min_rate_bps
    covered = twin.coverage_grid().uplink_bps >= min_rate
    when = "no round yet" if not twin.kpi_rows else "no map of this round"
    return covered, f"uplink ≥ {min_rate / 1e6:g} Mbit/s ({when})"


def draw_serving_links(ax: Axes, live: ShownRun) -> None:
    """A thin line from each device to its serving cell, in that cell's colour."""
    twin = live.twin
    assert twin is not None
    where = {bs.agent_id: (i, bs.position) for i, bs in enumerate(twin.base_stations)}
    segments, colours = [], []
    for device in twin.devices:
        if device.serving_cell not in where:
            continue
        index, site = where[device.serving_cell]
        segments.append([tuple(device.position), tuple(site)])
        colours.append(CELL_COLOURS[index % len(CELL_COLOURS)])
    if segments:
        ax.add_collection(LineCollection(segments, colors=colours, linewidths=0.6, alpha=0.7, zorder=2))


def corridor_segments(twin: ShownWorld) -> list[np.ndarray]:
    """The routes devices fly along (``route_m`` polylines, e.g. power-line corridors), each once."""
    routes: dict[bytes, np.ndarray] = {}
    for device in twin.devices:
        route = getattr(device, "route_m", None)
        if route is not None:
            array = np.asarray(route, dtype=float)
            routes.setdefault(array.tobytes(), array)
    return list(routes.values())


def street_segments(twin: ShownWorld) -> list[np.ndarray]:
    """The street grid devices drive on (every ``block_m`` metres, as far as a whole block fits)."""
    width, height = twin.area.width_m, twin.area.height_m
    segments: list[np.ndarray] = []
    for block in sorted({float(b) for d in twin.devices if (b := getattr(d, "block_m", None))}):
        x_end, y_end = np.floor(width / block) * block, np.floor(height / block) * block
        xs, ys = np.arange(0.0, x_end + block / 2, block), np.arange(0.0, y_end + block / 2, block)
        segments += [np.array([[x, 0.0], [x, y_end]]) for x in xs]
        segments += [np.array([[0.0, y], [x_end, y]]) for y in ys]
    return segments


def draw_server_queues(ax: Axes, live: ShownRun) -> None:
    """Each edge server's queue and utilisation beside its base station, for services that schedule jobs."""
    twin = live.twin
    assert twin is not None
    where = {bs.agent_id: bs.position for bs in twin.base_stations}
    for service in getattr(twin, "services", ()):
        load = getattr(service, "server_load", None)
        if load is None:
            continue
        for server, (queued, busy) in load().items():
            if server in where:
                x, y = where[server]
                ax.text(
                    x,
                    y,
                    f"\nqueue {queued} · {busy:.0%}",
                    fontsize=7,
                    ha="center",
                    va="top",
                    zorder=5,
                    bbox={"boxstyle": "round,pad=0.2", "facecolor": "white", "alpha": 0.8, "linewidth": 0},
                )


def draw_routes(ax: Axes, twin: ShownWorld) -> None:
    """Power-line corridors and streets as lines over the coverage layer, under links and agents."""
    corridors, streets = corridor_segments(twin), street_segments(twin)
    if streets:
        ax.add_collection(LineCollection(streets, zorder=1.5, label="street", **STREET_STYLE))
    if corridors:
        ax.add_collection(
            LineCollection(corridors, zorder=1.6, label="power-line corridor", **CORRIDOR_STYLE)
        )


def legend_handles(live: ShownRun) -> list[Line2D | Patch]:
    """Legend entries: device kinds (or clusters) present, every state, the base station, routes, links."""
    twin = live.twin
    assert twin is not None
    clusters = {(d.kind, *c) for d in twin.devices if (c := cluster_of(d)) is not None}
    kinds = sorted({d.kind for d in twin.devices if cluster_of(d) is None})
    handles: list[Line2D | Patch] = [_marker(kind, "o", kind_colour(kind)) for kind in kinds]
    handles += [
        _marker(f"{kind}: {name}", "o", CLUSTER_COLOURS[step % len(CLUSTER_COLOURS)])
        for kind, step, name in sorted(clusters)
    ]
    handles += [_marker(state, marker, "#7f7f7f") for state, marker in STATE_MARKERS.items()]
    handles.append(_marker("base station (gNB)", "H", BASE_STATION_COLOUR, size=10))
    handles.append(Line2D([], [], color="#555555", linewidth=0.8, label="serving-cell link"))
    if street_segments(twin):
        handles.append(Line2D([], [], color="#bdbdbd", linewidth=1.1, label="street"))
    if corridor_segments(twin):
        style = {"color": CORRIDOR_STYLE["colors"], "linestyle": "-.", "linewidth": 1.6}
        handles.append(Line2D([], [], label="power-line corridor", **style))
    handles += feature_handles(twin)
    return handles


def _marker(label: str, marker: str, colour: str, size: float = 7) -> Line2D:
    return Line2D(
        [],
        [],
        linestyle="",
        marker=marker,
        markersize=size,
        markerfacecolor=colour,
        color=colour,
        label=label,
    )
