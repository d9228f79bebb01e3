"""Replay a finished run in the page (``twin viz --replay runs/<id>``): no model is built, no broker used.

A run directory holds what the page needs: ``telemetry.parquet`` (every agent's position, state and
serving cell every ``bus.telemetry_interval_s`` simulated seconds), ``kpi.parquet``, ``requests.parquet``,
``coverage.parquet`` (the last round's service coverage map), ``config.toml``, ``summary.json`` and the
QoAIS report. :func:`load_replay` reads and checks them once; :class:`ReplayScenario` is a Mesa model
whose agents sit where the telemetry puts them at the replay time, and which shows the same surface as a
:class:`~twin.viz.live.LiveScenario` (``twin``, ``session``, ``samples``, ``qoais_reports`` …), so the
map, the plots and the QoAIS panel of the live page draw it unchanged.

At replay time ``t``: every agent is where its latest sample at or before ``t`` puts it (devices appear
with their first sample; base stations, which do not move, are always shown), the plots hold the rounds
and requests recorded up to ``t``, and the QoAIS panel is *pending* until ``t`` reaches the end of the run,
then shows the final report. The SINR and rate layers are recomputed from ``config.toml`` and the base
stations' recorded positions (the radio over the grid is deterministic); the service coverage layer is the
recorded map of the last round, shown once the replay has reached that round. :meth:`ReplayScenario.seek`
costs well under a millisecond for a few hundred agents: it only moves the agents that changed sample.
"""

from __future__ import annotations

import math
import threading
from collections.abc import Callable, Hashable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import solara
from mesa import Model
from mesa.experimental.continuous_space import ContinuousSpace, ContinuousSpaceAgent

from twin import outputs
from twin.api import load_run
from twin.config import flatten
from twin.config_file import overrides_with_file, read_config_file
from twin.coverage import CoverageMap
from twin.errors import ConfigError, TwinError, UnknownScenarioError
from twin.links import CoverageGrid, LinkModel
from twin.progress import limit_unit
from twin.qoais import ServiceReport
from twin.telemetry import TELEMETRY_FILE
from twin.viz.frames import FrameGate
from twin.viz.live import Sample
from twin.viz.map import LAYERS, CoverageLayer, CoverageMapRenderer, MapView, coverage_layer
from twin.viz.panels import PAGE_CSS, QoaisPanel
from twin.viz.plots import LivePlot

DEFAULT_PLAY_INTERVAL_MS = 400
_INFERENCE_TARGETS = {"service_accuracy": "accuracy", "response_latency_p95": "latency_s"}


@dataclass(frozen=True, slots=True, eq=False)
class ReplayRun:
    """What a run directory holds for a replay, read and checked once (:func:`load_replay`)."""

    path: Path
    run_id: str
    scenario: str
    seed: int
    status: str
    end_s: float
    """Simulated time at the end of the run (s)."""
    config: Any
    """The scenario's config as the run resolved it (``config.toml`` over the scenario's defaults)."""
    rounds_limit: int | None
    """Training rounds the run was to do (``None``: no limit, or its limit counts ticks)."""
    telemetry: pd.DataFrame
    kpis: list[dict[str, Any]]
    requests: pd.DataFrame
    qoais: list[ServiceReport]
    coverage: pd.DataFrame | None
    final_energy_j: float | None = None
    final_co2_g: float | None = None


def load_replay(run_dir: str | Path, scenario: str | None = None) -> ReplayRun:
    """Read a run directory for a replay.

    Args:
        run_dir: ``runs/<run_id>`` of an agent scenario's run (``twin run`` or ``twin viz --out``).
        scenario: the scenario's file or module when it is not known by name here (a user's own); its
            name must be the run's. None: the name in ``summary.json``.

    Raises:
        ConfigError: not a directory, not a run, a calculation's run, a run without ``telemetry.parquet``
            (from before telemetry was kept) or without any sample, a table that cannot be read, or a
            ``scenario`` other than the run's.
        UnknownScenarioError: the run's scenario is not known here (the message says how to name it).
    """
    from twin.runner import resolve_config
    from usecases import registry
    from usecases.registry import AgentScenario

    path = Path(run_dir).expanduser()
    if not path.is_dir():
        raise ConfigError(f"--replay {path}: no such run directory")
    summary_file = path / outputs.SUMMARY_FILE
    if not summary_file.is_file():
        if (path / outputs.RESULTS_JSON).is_file():
            raise ConfigError(f"--replay {path}: a calculation scenario's run has no agents to replay")
        raise ConfigError(f"--replay {path}: not a run directory (no {outputs.SUMMARY_FILE})")
    if not (path / TELEMETRY_FILE).is_file():
        raise ConfigError(
            f"--replay {path}: no {TELEMETRY_FILE} (a run from before telemetry was kept); "
            f"run it again: twin run --config {path / outputs.CONFIG_FILE}"
        )
    try:
        recorded = load_run(path)
        summary = recorded.summary
        telemetry = pd.read_parquet(path / TELEMETRY_FILE)
        coverage = (
            pd.read_parquet(path / outputs.COVERAGE_FILE)
            if (path / outputs.COVERAGE_FILE).is_file()
            else None
        )
    except (OSError, ValueError) as exc:  # pyarrow's errors are ValueErrors (ArrowInvalid …)
        raise ConfigError(f"--replay {path}: cannot read the run ({exc})") from None
    if not recorded.scenario:
        raise ConfigError(f"--replay {path}: {outputs.SUMMARY_FILE} names no scenario")
    name = recorded.scenario
    if scenario is not None:
        given = registry.resolve_one(scenario)
        if given != name:
            raise ConfigError(f"--replay {path} is a run of scenario {name!r}, not {given!r}")
    elif name not in registry.names():
        try:
            registry.get(name)  # an installed one is imported here
        except TwinError:
            raise UnknownScenarioError(
                f"--replay {path}: the run's scenario {name!r} is not known here; name the file or module "
                f"that registers it: twin viz my_usecase.py --replay {path}"
            ) from None
    spec = registry.get(name)
    if not isinstance(spec, AgentScenario):
        raise ConfigError(f"--replay {path}: {name!r} is a calculation scenario; it has no agents to replay")
    config_file = read_config_file(path / outputs.CONFIG_FILE)
    _, config = resolve_config(name, overrides_with_file(name, config_file, {}))
    missing = {"agent_id", "sim_time_s", "x_m", "y_m"} - set(telemetry.columns)
    if telemetry.empty or missing:
        raise ConfigError(
            f"--replay {path}: {TELEMETRY_FILE} holds no agent sample (the run ended before its first "
            "one, at bus.telemetry_interval_s)"
        )
    rounds = flatten(config).get(spec.rounds_key)
    final = summary.get("final")
    final = final if isinstance(final, dict) else {}
    kpis = recorded.kpis
    kpi_rows = kpis.sort_values("sim_time_s", kind="stable").to_dict("records") if len(kpis) else []
    end_s = _end_time(summary, telemetry, kpi_rows)

    return ReplayRun(
        path=path,
        run_id=recorded.run_id,
        scenario=name,
        seed=int(summary.get("seed", 0)),
        status=recorded.status,
        end_s=end_s,
        config=config,
        # a limit in ticks (disease-diagnosis) is not one of training rounds: the replay has no tick count
        rounds_limit=int(rounds) if rounds is not None and limit_unit(spec.rounds_key) == "round" else None,
        telemetry=telemetry,
        kpis=[{str(k): v for k, v in row.items()} for row in kpi_rows],
        requests=recorded.requests,
        qoais=recorded.qoais,
        coverage=coverage,
        final_energy_j=_float_or_none(final.get("energy_total_j")),
        final_co2_g=_float_or_none(final.get("co2_total_g")),
    )


def _float_or_none(value: Any) -> float | None:
    return float(value) if isinstance(value, int | float) and math.isfinite(value) else None


def _end_time(summary: dict[str, Any], telemetry: pd.DataFrame, kpis: Sequence[dict[str, Any]]) -> float:
    """The run's last simulated second: the summary's, else the latest time recorded."""
    recorded = [float(telemetry["sim_time_s"].max()), *(float(r["sim_time_s"]) for r in kpis)]
    end = _float_or_none(summary.get("sim_time_s"))
    return max(end, *recorded) if end is not None else max(recorded)


class ReplayAgent(ContinuousSpaceAgent):
    """An agent as its telemetry records it: a device (with a state) or a base station (without)."""

    def __init__(self, model: ReplayScenario, agent_id: str, kind: str, position: Sequence[float]) -> None:
        """Place the agent ``agent_id`` of ``kind`` at ``position`` (m) in the replay's space."""
        super().__init__(model.space, model)
        self.agent_id = agent_id
        self.kind = kind
        self.state: str | None = None
        self.serving_cell: str | None = None
        self.position = np.asarray(position, dtype=float)


@dataclass(slots=True)
class ReplayNetwork:
    """The federated training at the replay time: rounds recorded and the last round's accuracy."""

    rounds_done: int = 0
    last_accuracy: float = float("nan")


@dataclass(frozen=True, slots=True)
class ReplayTargets:
    """An inference service's QoAIS targets, from its final report."""

    accuracy: float | None = None
    latency_s: float | None = None


@dataclass(slots=True)
class ReplayService:
    """An inference service at the replay time: its requests recorded so far (``records``) and targets."""

    service: str
    targets: ReplayTargets
    records: list[dict[str, Any]] = field(default_factory=list)


@dataclass(frozen=True, slots=True)
class ReplaySession:
    """What the page reads of a run's session: its resolved config."""

    config: Any


class ReplayTwin:
    """The world at the replay time, as the map and plots read a :class:`~twin.model.TwinModel`."""

    def __init__(
        self, replay: ReplayScenario, grid: CoverageGrid, final_coverage: CoverageMap | None
    ) -> None:
        """The world of ``replay``: ``grid`` is the radio over the area, ``final_coverage`` the last map."""
        config = replay.run.config
        self.area = config.area
        self.carbon = config.carbon
        self.rounds_limit = replay.run.rounds_limit
        self.time = 0.0
        self.base_stations: list[ReplayAgent] = []
        self.devices: list[ReplayAgent] = []
        self.kpi_rows: list[dict[str, Any]] = []
        self.services: list[ReplayService] = []
        self.network: ReplayNetwork | None = None
        self.last_coverage: CoverageMap | None = None
        self.final_coverage = final_coverage
        self._grid = grid

    def coverage_grid(self) -> CoverageGrid:
        """The radio over the area's grid (recomputed from the config and the base stations' positions)."""
        return self._grid


class ReplayScenario(Model):
    """A recorded run, shown at a replay time that :meth:`seek` sets; what the page draws, like a live run."""

    def __init__(self, run: ReplayRun) -> None:
        """Lay out the recorded samples for fast seeking and place the base stations; the time is 0."""
        super().__init__(rng=run.seed)
        self.run = run
        self.scenario_name = run.scenario
        self.error: str | None = None
        self.session = ReplaySession(run.config)
        area = run.config.area
        self.space = ContinuousSpace([[0.0, area.width_m], [0.0, area.height_m]], random=self.random)
        self.time_s = 0.0
        self._index = -2  # the sample shown (-1: before the first)
        telemetry = run.telemetry.drop_duplicates(["sim_time_s", "agent_id"], keep="last")
        placed = telemetry[telemetry["x_m"].notna() & telemetry["y_m"].notna()]
        has_state = placed["state"].notna() if "state" in placed else pd.Series(False, index=placed.index)
        devices, stations = placed[has_state], placed[~has_state]
        self.sample_times = np.unique(telemetry["sim_time_s"].to_numpy(dtype=float))
        rounds_done = telemetry["rounds_done"] if "rounds_done" in telemetry else pd.Series(dtype=float)
        self._has_network = bool(run.kpis) or bool(rounds_done.notna().any())
        with_coverage = [
            float(r["sim_time_s"]) for r in run.kpis if _float_or_none(r.get("coverage")) is not None
        ]
        self._final_round_s = with_coverage[-1] if with_coverage else None
        self._layout_devices(devices)
        first = stations.groupby("agent_id", sort=False).first()
        self._stations = [
            ReplayAgent(self, str(agent_id), str(row.get("kind", "")), (row["x_m"], row["y_m"]))
            for agent_id, row in first.iterrows()
        ]
        heights = first["z_m"].to_numpy(dtype=float) if "z_m" in first else np.zeros(len(first))
        grid = self._radio_grid(
            np.column_stack([first["x_m"], first["y_m"], np.nan_to_num(heights)]), devices
        )
        self.twin = ReplayTwin(self, grid, self._final_coverage(grid))
        self.twin.base_stations = list(self._stations)
        self._kpi_times = np.array([float(r["sim_time_s"]) for r in run.kpis])
        self._services = self._layout_services(run)
        self.seek(0.0)

    # ---- what the page shows (as a LiveScenario) ---------------------------------------------------
    @property
    def end_s(self) -> float:
        """The run's last simulated second."""
        return self.run.end_s

    @property
    def finished(self) -> bool:
        """Whether the replay has reached the end of the run."""
        return self.time_s >= self.end_s

    @property
    def status(self) -> str:
        """``running`` until the replay reaches the run's end, then the run's final status."""
        return self.run.status if self.finished else "running"

    @property
    def run_id(self) -> str:
        """The replayed run's id."""
        return self.run.run_id

    @property
    def seed_value(self) -> int:
        """The replayed run's seed."""
        return self.run.seed

    @property
    def sample_time(self) -> float | None:
        """Simulated time of the telemetry sample shown (None: before the first)."""
        return float(self.sample_times[self._index]) if self._index >= 0 else None

    @property
    def samples(self) -> list[Sample]:
        """Energy and CO2 so far: 0 at the start, at each round's end, and the run's total at its end."""
        points = [Sample(0.0, 0.0, 0.0)]
        for row in self.twin.kpi_rows:
            energy = _float_or_none(row.get("energy_total_j"))
            if energy is not None:
                co2 = _float_or_none(row.get("co2_total_g")) or 0.0
                points.append(Sample(float(row["sim_time_s"]), energy, co2))
        energy_j = self.run.final_energy_j
        if self.finished and energy_j is not None and points[-1].time_s < self.end_s:
            points.append(Sample(self.end_s, energy_j, self.run.final_co2_g or 0.0))
        return points

    def qoais_reports(self) -> list[ServiceReport]:
        """The run's final QoAIS once the replay reaches its end; before, every service pending."""
        if self.finished:
            return list(self.run.qoais)
        note = f"the final report is shown at the end of the run (t = {self.end_s:.0f} s)"
        return [ServiceReport(r.service, r.kind, indicators=(), notes=(note,)) for r in self.run.qoais]

    # ---- replay time --------------------------------------------------------------------------------
    def seek(self, time_s: float) -> None:
        """Show the run at simulated time ``time_s`` (clamped to the run): agents, rounds, requests."""
        time_s = min(max(float(time_s), 0.0), self.end_s)
        self.time_s = time_s
        twin = self.twin
        twin.time = time_s
        index = int(np.searchsorted(self.sample_times, time_s, side="right")) - 1
        if index != self._index:
            self._show_sample(index)
            self._index = index
        rounds = int(np.searchsorted(self._kpi_times, time_s, side="right"))
        if rounds != len(twin.kpi_rows):
            twin.kpi_rows = self.run.kpis[:rounds]
            if twin.network is not None:
                last = twin.kpi_rows[-1] if rounds else {}
                twin.network.rounds_done = rounds
                twin.network.last_accuracy = _float_or_none(last.get("accuracy")) or float("nan")
        for service, times, records in self._services:
            service.records = records[: int(np.searchsorted(times, time_s, side="right"))]
        covered_from = self._final_round_s
        twin.last_coverage = (
            twin.final_coverage if covered_from is not None and time_s >= covered_from else None
        )

    def step(self) -> None:
        """One simulated second on (Mesa's step)."""
        self.seek(self.time_s + 1.0)

    # ---- set-up -------------------------------------------------------------------------------------
    def _layout_devices(self, devices: pd.DataFrame) -> None:
        """Each device's position, state and serving cell at every sample time (the last one carried on)."""
        ids = sorted(devices["agent_id"].unique())
        times = pd.Index(self.sample_times)

        def table(column: str) -> np.ndarray:
            if column not in devices:
                return np.full((len(times), len(ids)), None, dtype=object)
            wide = devices.pivot(index="sim_time_s", columns="agent_id", values=column)
            return wide.reindex(index=times, columns=ids).ffill().to_numpy()

        seen = devices.pivot(index="sim_time_s", columns="agent_id", values="x_m").reindex(
            index=times, columns=ids
        )
        self._device_ids = ids
        self._device_kind = devices.groupby("agent_id")["kind"].first().reindex(ids).astype(str).tolist()
        self._seen = seen.notna().cummax().to_numpy(dtype=bool)
        self._x, self._y = table("x_m").astype(float), table("y_m").astype(float)
        self._state, self._cell = table("state"), table("serving_cell")
        self._devices: list[ReplayAgent | None] = [None] * len(ids)

    def _show_sample(self, index: int) -> None:
        """Put the devices where sample ``index`` has them (creating and removing devices as they appear)."""
        shown: list[ReplayAgent] = []
        for column, agent_id in enumerate(self._device_ids):
            agent = self._devices[column]
            if index < 0 or not self._seen[index, column]:
                if agent is not None:
                    agent.remove()
                    self._devices[column] = None
                continue
            position = (self._x[index, column], self._y[index, column])
            if agent is None:
                agent = ReplayAgent(self, agent_id, self._device_kind[column], position)
                self._devices[column] = agent
            else:
                agent.position = np.array(position)
            state, cell = self._state[index, column], self._cell[index, column]
            agent.state = str(state) if isinstance(state, str) else None
            agent.serving_cell = str(cell) if isinstance(cell, str) else None
            shown.append(agent)
        self.twin.devices = shown
        if self.twin.network is None and self._has_network:
            self.twin.network = ReplayNetwork()

    def _radio_grid(self, stations_xyz: np.ndarray, devices: pd.DataFrame) -> CoverageGrid:
        """The radio over the area's grid at the devices' median height, as the live twin computes it."""
        config = self.run.config
        ids = [agent.agent_id for agent in self._stations]
        heights = devices["z_m"].dropna() if "z_m" in devices else pd.Series(dtype=float)
        links = LinkModel(config.radio, config.link, stations_xyz, ids, np.random.default_rng(0))
        area = config.area
        return links.coverage_grid(
            area.grid_m,
            area.width_m,
            area.height_m,
            ue_height_m=float(np.median(heights)) if len(heights) else None,
        )

    def _final_coverage(self, grid: CoverageGrid) -> CoverageMap | None:
        """The last round's service coverage map from ``coverage.parquet`` (None if none fits the grid)."""
        table = self.run.coverage
        shape = grid.reliability.shape
        if (
            table is None
            or len(table) != grid.reliability.size
            or not {"row", "col", "covered"} <= set(table)
        ):
            self._final_round_s = None
            return None
        rows, cols = table["row"].to_numpy(dtype=int), table["col"].to_numpy(dtype=int)

        def layer(column: str, dtype: type) -> np.ndarray:
            values: np.ndarray = np.zeros(shape, dtype=dtype)
            if column in table:
                values[rows, cols] = table[column].to_numpy(dtype=dtype)
            return values

        covered = layer("covered", bool)
        return CoverageMap(
            grid,
            layer("rate_bps", float),
            layer("model_accuracy", float),
            layer("service_accuracy", float),
            covered,
            float(covered.mean()),
        )

    def _layout_services(
        self, run: ReplayRun
    ) -> list[tuple[ReplayService, np.ndarray, list[dict[str, Any]]]]:
        """Each inference service's requests in time order, with its targets from the final report."""
        requests = run.requests
        if requests.empty or not {"service", "sim_time_s"} <= set(requests):
            return []
        targets: dict[str, ReplayTargets] = {}
        for report in run.qoais:
            found = {
                _INFERENCE_TARGETS[i.name]: float(i.target)
                for i in report.indicators
                if i.name in _INFERENCE_TARGETS
            }
            targets[report.service] = ReplayTargets(**found)
        laid_out = []
        for name, group in requests.sort_values("sim_time_s", kind="stable").groupby("service", sort=True):
            service = ReplayService(str(name), targets.get(str(name), ReplayTargets()))
            own = group.dropna(axis=1, how="all")  # columns of other services sharing requests.parquet
            records = [{str(k): v for k, v in row.items()} for row in own.to_dict("records")]
            laid_out.append((service, group["sim_time_s"].to_numpy(dtype=float), records))
        self.twin.services = [service for service, _, _ in laid_out]
        return laid_out


class ReplayMapRenderer(CoverageMapRenderer):
    """The live map of a replay, titled with the replay time and the sample it shows."""

    def __init__(self, model: ReplayScenario) -> None:
        """The map of ``model``."""
        super().__init__(model)
        self.replay = model

    def structure_key(self) -> Hashable:
        """As the live map's, and the device kinds shown (the legend lists them)."""
        return (super().structure_key(), frozenset(d.kind for d in self.replay.twin.devices))

    def title(self) -> str:
        """``scenario · replay t = … s (sample … s) · round r/R``."""
        replay = self.replay
        sample = replay.sample_time
        shown = f"sample {sample:.0f} s" if sample is not None else "no sample yet"
        network = replay.twin.network
        limit = f"/{replay.twin.rounds_limit}" if replay.twin.rounds_limit is not None else ""
        rounds = f" · round {network.rounds_done}{limit}" if network is not None else ""
        return f"{replay.scenario_name} · replay t = {replay.time_s:.0f} s ({shown}){rounds}"


def status_lines(replay: ReplayScenario) -> list[str]:
    """What the replay shows: the run, the replay time and sample, rounds, devices by state."""
    twin = replay.twin
    sample = replay.sample_time
    states: dict[str, int] = {}
    for device in twin.devices:
        states[str(device.state)] = states.get(str(device.state), 0) + 1
    lines = [
        f"replay of run {replay.run_id} · seed {replay.seed_value} · run {replay.run.status}",
        f"replay time {replay.time_s:.0f} s of {replay.end_s:.0f} s · "
        + (f"telemetry sample at {sample:.0f} s" if sample is not None else "no telemetry sample yet"),
        f"{len(twin.devices)} devices shown · {len(twin.base_stations)} base stations",
    ]
    if twin.network is not None:
        limit = f"/{twin.rounds_limit}" if twin.rounds_limit is not None else ""
        accuracy = twin.network.last_accuracy
        shown = f" · accuracy {accuracy:.3f}" if twin.network.rounds_done and accuracy == accuracy else ""
        lines.append(f"federated round {twin.network.rounds_done}{limit}{shown}")
    if states:
        lines.append("devices: " + ", ".join(f"{n} {s}" for s, n in sorted(states.items())))
    return lines


def next_time(time_s: float, step_s: float, end_s: float) -> float:
    """The replay time one step (``step_s``, ≥ 1 s; negative: back) from ``time_s``, within [0, end]."""
    return min(max(time_s + step_s, 0.0), math.ceil(end_s))


def sample_interval(replay: ReplayScenario) -> int:
    """The telemetry interval of the run (s, ≥ 1): the step the controls start with."""
    gaps = np.diff(replay.sample_times)
    return max(1, int(round(float(np.median(gaps))))) if len(gaps) else 1


@solara.component
def ReplayControls(
    replay: ReplayScenario,
    time_s: solara.Reactive[int],
    playing: solara.Reactive[bool],
    step_s: solara.Reactive[int],
    interval_ms: solara.Reactive[int],
) -> None:
    """Time slider, ⏮ / ◀ / ▶ or ❚❚ / ▶▶ / ⏭ buttons, step and play interval."""
    end = int(math.ceil(replay.end_s))

    def move(by: float) -> Callable[[], None]:
        def click() -> None:
            playing.set(False)
            time_s.set(int(next_time(time_s.value, by, replay.end_s)))

        return click

    def toggle() -> None:
        if not playing.value and time_s.value >= end:
            time_s.set(0)
        playing.set(not playing.value)

    with solara.Card("Replay", classes=["twin-replay-controls"]):
        solara.SliderInt("replay time (s)", value=time_s, min=0, max=end, step=1, thumb_label="always")
        with solara.Row():
            solara.Button("⏮", on_click=move(-math.inf), outlined=True, classes=["twin-replay-start"])
            solara.Button("Back", icon_name="mdi-step-backward", on_click=move(-step_s.value), outlined=True)
            solara.Button("❚❚ Pause" if playing.value else "▶ Play", on_click=toggle, color="primary")
            solara.Button("Step", icon_name="mdi-step-forward", on_click=move(step_s.value), outlined=True)
            solara.Button("⏭", on_click=move(math.inf), outlined=True, classes=["twin-replay-end"])
        solara.SliderInt("step (s)", value=step_s, min=1, max=max(1, min(end, 120)), thumb_label="always")
        solara.SliderInt(
            "play interval (ms)", value=interval_ms, min=50, max=2000, step=50, thumb_label="always"
        )


@solara.component
def ReplayStatus(replay: ReplayScenario, time_s: int) -> None:
    """The run and replay time, devices by state, and the map's coverage layer."""
    with solara.Card("Run", classes=["twin-status"]):
        for line in status_lines(replay):
            solara.Text(line, style={"display": "block", "font-size": "90%"})

        def choose(layer: CoverageLayer) -> None:
            coverage_layer.set(layer)

        solara.ToggleButtonsSingle(
            value=coverage_layer.value, on_value=choose, values=list(LAYERS), classes=["twin-layer"]
        )
        solara.Text(f"map layer: {LAYERS[coverage_layer.value]}", style={"font-size": "80%", "color": "#555"})


@solara.component
def ReplayPage(run: ReplayRun) -> None:
    """The replay of ``run``: controls, the map beside the run and QoAIS panels, the four plots below.

    The slider, the buttons and ▶ set the replay time; the figures redraw on the frames a
    :class:`~twin.viz.frames.FrameGate` admits (a held one is drawn by a thread, unless a newer comes).
    """
    replay = solara.use_memo(lambda: ReplayScenario(run), dependencies=[run])
    renderer = solara.use_memo(lambda: ReplayMapRenderer(replay), dependencies=[replay])
    gate = solara.use_memo(FrameGate, dependencies=[replay])
    time_s = solara.use_reactive(0)
    playing = solara.use_reactive(False)
    step_s = solara.use_reactive(sample_interval(replay))
    interval_ms = solara.use_reactive(DEFAULT_PLAY_INTERVAL_MS)
    redraw = solara.use_reactive(0)
    replay.seek(time_s.value)
    frame = gate.admit((time_s.value, redraw.value))

    def play(cancel: threading.Event) -> None:
        if not playing.value:
            return
        while not cancel.wait(interval_ms.value / 1000.0):
            now = int(next_time(time_s.value, step_s.value, replay.end_s))
            time_s.set(now)
            if now >= replay.end_s:
                playing.set(False)
                return

    def draw_held_update(cancel: threading.Event) -> None:
        wait = gate.due_in()
        if wait is not None and not cancel.wait(wait):
            redraw.set(redraw.value + 1)

    solara.use_thread(
        play, dependencies=[playing.value, step_s.value, interval_ms.value], intrusive_cancel=False
    )
    solara.use_thread(
        draw_held_update, dependencies=[gate, time_s.value, redraw.value], intrusive_cancel=False
    )
    solara.Title(f"aiaas-twin · replay {run.run_id}")
    solara.Style(PAGE_CSS)
    ReplayControls(replay, time_s, playing, step_s, interval_ms)
    with solara.Columns([7, 5]):
        with solara.Column(classes=["twin-map"], style={"min-width": "0"}):
            MapView(renderer, frame, gate)
        with solara.Column():
            ReplayStatus(replay, time_s.value)
            # Its props do not change with the time: a new key when the end is reached redraws it.
            QoaisPanel(replay).key(f"qoais-{replay.finished}")
    with solara.Columns([1, 1]):
        LivePlot(replay, "accuracy", frame, gate)
        LivePlot(replay, "latency", frame, gate)
    with solara.Columns([1, 1]):
        LivePlot(replay, "energy", frame, gate)
        LivePlot(replay, "coverage", frame, gate)
