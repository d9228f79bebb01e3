"""The Solara page of ``twin viz``: servable as ``solara run twin.viz.app``.

What to show comes from the environment (``twin viz`` sets it): ``TWIN_VIZ_SCENARIO`` (default
``home-health``; or a ``.py`` file or module that registers it, as for ``twin run``),
``TWIN_VIZ_SEED``, ``TWIN_VIZ_SET`` (a JSON object of ``--set`` overrides),
``TWIN_VIZ_BROKER`` (default ``embedded``), ``TWIN_VIZ_OUT`` (keep run directories there) and
``TWIN_VIZ_REPLAY`` (a finished run's directory: replay it, :mod:`twin.viz.replay`, instead).

An agent scenario runs in Mesa's :func:`~mesa.visualization.SolaraViz` (controls, parameters, play,
step, reset) around a :class:`~twin.viz.live.LiveScenario`; each browser tab has its own run, closed
when the tab closes or Reset replaces it. SolaraViz's own component grid (``GridDraggable``) loads a
Vue 2 library that fails in Solara's Vue 3 front end, so the map and plots are laid out by
:func:`Dashboard` beside SolaraViz rather than passed to it. What they show comes from a
:class:`~twin.viz.feed.LiveFeed`: the status follows every update, and the map and the plots are
redrawn by a thread of their own when their :class:`~twin.viz.frames.FrameGate` admits a frame (or the
steps pause), so that drawing does not slow the run down; each panel re-renders only when what it shows
has changed. A calculation scenario shows :func:`~twin.viz.calculation.CalculationPage`.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace

# Reacton's renderer that walks only the components whose state changed (opt-in, REACTON_FAST=1); the
# default one walks and reconciles the whole page, sidebar included, on every update (tens of ms a step).
# REACTON_FAST=0 in the environment keeps the default one.
os.environ.setdefault("REACTON_FAST", "1")

import solara
from mesa.visualization import SolaraViz

from twin.errors import ConfigError, TwinError
from twin.runner import resolve_config
from twin.viz.calculation import CalculationPage
from twin.viz.feed import LiveFeed
from twin.viz.live import LiveScenario
from twin.viz.map import CoverageMapRenderer, MapImage
from twin.viz.panels import PAGE_CSS, QoaisCard, RunStatus
from twin.viz.params import model_params, parse_seed
from twin.viz.plots import PlotImage
from twin.viz.replay import ReplayPage, ReplayRun, load_replay
from usecases import registry
from usecases.registry import CalculationScenario, Scenario

DEFAULT_SCENARIO = "home-health"


@dataclass(frozen=True, slots=True)
class LaunchSettings:
    """What ``twin viz`` asked to show."""

    scenario: str = DEFAULT_SCENARIO
    seed: int = 0
    overrides: dict[str, str] = field(default_factory=dict)
    broker: str = "embedded"
    out_dir: str = ""
    replay: str = ""
    """A finished run's directory to replay (``twin viz --replay``); empty: run the scenario live."""

    @classmethod
    def from_env(cls, environ: Mapping[str, str] | None = None) -> LaunchSettings:
        """Read the ``TWIN_VIZ_*`` variables.

        Raises:
            ConfigError: a seed that is not a whole number, or ``TWIN_VIZ_SET`` that is not a JSON object.
        """
        env = os.environ if environ is None else environ
        raw = env.get("TWIN_VIZ_SET", "") or "{}"
        try:
            overrides = json.loads(raw)
        except json.JSONDecodeError as exc:
            raise ConfigError(f"TWIN_VIZ_SET must be a JSON object of key: value, got {raw!r}") from exc
        if not isinstance(overrides, dict):
            raise ConfigError(f"TWIN_VIZ_SET must be a JSON object of key: value, got {raw!r}")
        replay = env.get("TWIN_VIZ_REPLAY", "")
        return cls(
            # A replay takes the run's own scenario unless a file or module is named.
            scenario=env.get("TWIN_VIZ_SCENARIO") or ("" if replay else DEFAULT_SCENARIO),
            seed=parse_seed(env.get("TWIN_VIZ_SEED") or 0),
            overrides={str(k): str(v) for k, v in overrides.items()},
            broker=env.get("TWIN_VIZ_BROKER") or "embedded",
            out_dir=env.get("TWIN_VIZ_OUT", ""),
            replay=replay,
        )

    def to_env(self) -> dict[str, str]:
        """The ``TWIN_VIZ_*`` variables that :meth:`from_env` reads back as these settings."""
        return {
            "TWIN_VIZ_SCENARIO": self.scenario,
            "TWIN_VIZ_SEED": str(self.seed),
            "TWIN_VIZ_SET": json.dumps(self.overrides),
            "TWIN_VIZ_BROKER": self.broker,
            "TWIN_VIZ_OUT": self.out_dir,
            "TWIN_VIZ_REPLAY": self.replay,
        }


@solara.component
def Dashboard(model: LiveScenario, renderer: CoverageMapRenderer) -> None:
    """The map (Mesa's space renderer) beside the run and QoAIS panels, the four KPI plots below.

    What they show comes from a :class:`~twin.viz.feed.LiveFeed`: this component renders once per run,
    and each panel renders again only when what it shows has changed.
    """
    feed = solara.use_memo(lambda: LiveFeed(model, renderer), dependencies=[model, renderer])
    solara.use_effect(feed.follow, dependencies=[feed])
    solara.Style(PAGE_CSS)
    with solara.Columns([7, 5]):
        with solara.Column(classes=["twin-map"], style={"min-width": "0"}):
            MapImage(feed.map_png)
        with solara.Column():
            RunStatus(feed.status)
            QoaisCard(feed.qoais)
    with solara.Columns([1, 1]):
        PlotImage("accuracy", feed.plots["accuracy"])
        PlotImage("latency", feed.plots["latency"])
    with solara.Columns([1, 1]):
        PlotImage("energy", feed.plots["energy"])
        PlotImage("coverage", feed.plots["coverage"])


@solara.component
def AgentPage(settings: LaunchSettings) -> None:
    """SolaraViz around a live run of an agent scenario, closed on Reset and when the tab closes."""
    params = solara.use_memo(lambda: _agent_params(settings), dependencies=[settings])
    first = solara.use_memo(lambda: _new_model(params), dependencies=[params])
    model: solara.Reactive[LiveScenario] = solara.use_reactive(first)
    renderer = solara.use_memo(lambda: CoverageMapRenderer(model.value), dependencies=[model.value])

    def close_when_replaced() -> Callable[[], None]:
        return model.value.close

    solara.use_effect(close_when_replaced, dependencies=[model.value])
    SolaraViz(model, components=[], model_params=params, name=f"aiaas-twin · {settings.scenario}")
    Dashboard(model.value, renderer)


@solara.component
def Page() -> None:
    """The page: the scenario named by ``TWIN_VIZ_SCENARIO``, agent-based or calculation."""
    launch = solara.use_memo(_launch, dependencies=[])
    if isinstance(launch, str):
        solara.Error(launch)
        return
    if isinstance(launch, ReplayRun):
        ReplayPage(launch)
        return
    settings, spec = launch
    if isinstance(spec, CalculationScenario):
        CalculationPage(spec, settings.overrides)
    else:
        AgentPage(settings)


def _launch() -> tuple[LaunchSettings, Scenario] | ReplayRun | str:
    """The launch settings and their scenario, the run to replay, or what is wrong with them."""
    try:
        settings = LaunchSettings.from_env()
        if settings.replay:
            return load_replay(settings.replay, settings.scenario or None)
        # A user's .py file or module is imported (again) in this process, which serves the page.
        settings = replace(settings, scenario=registry.resolve_one(settings.scenario))
        spec, _ = resolve_config(settings.scenario, settings.overrides)
    except TwinError as exc:
        return f"Cannot show the scenario: {exc}"
    return settings, spec


def _agent_params(settings: LaunchSettings) -> dict[str, object]:
    _, config = resolve_config(settings.scenario, settings.overrides)
    return model_params(
        settings.scenario,
        config,
        seed=settings.seed,
        overrides=settings.overrides,
        broker=settings.broker,
        out_dir=settings.out_dir,
    )


def _new_model(params: dict[str, object]) -> LiveScenario:
    """The model SolaraViz would build on Reset from the controls' initial values."""
    values = {k: v["value"] if isinstance(v, dict) else v for k, v in params.items()}
    return LiveScenario(**values)  # type: ignore[arg-type]
