"""The Mesa model: simulated clock in seconds, the world's agents, the bus, energy and KPI records.

``model.time`` is simulated seconds (one ``step()`` = one second: mobility, radio, telemetry, bus).
Services run as events scheduled on that clock (``schedule_event``); wall-clock never enters a result.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from mesa import Model
from mesa.experimental.continuous_space import ContinuousSpace

from broker.bus import Bus, Message
from broker.codec import WireDtype
from broker.model_exchange import ModelExchange, ReceivedBatch, ReceivedModel, ResendRequest
from broker.topics import Topics
from twin.auth import RunKeys
from twin.coverage import CoverageMap, coverage_map
from twin.energy import NETWORK, EnergyLedger
from twin.errors import RunAbortedError
from twin.kpi import ComputeProfile, compute_energy_j, transmission_energy_j
from twin.links import CoverageGrid, LinkModel, LinkSnapshot
from twin.mobility import Mobility
from twin.radio import RadioConfig
from twin.rng import SeedStreams
from twin.settings import AreaConfig, BusConfig, CarbonConfig, LinkConfig
from twin.telemetry import TelemetryPublisher

log = logging.getLogger(__name__)


class DeviceLike(Protocol):
    """What the model needs of a device agent (see ``agents.device.Device``)."""

    agent_id: str
    kind: str
    position: np.ndarray
    height_m: float
    compute: ComputeProfile
    serving_cell: str
    downlink_bps: float
    uplink_bps: float
    sinr_db: float
    reliability: float

    def move(self, dt_s: float) -> None:
        """Advance mobility by ``dt_s`` seconds."""

    def telemetry(self) -> dict[str, Any]:
        """Flat telemetry fields."""


class HostLike(Protocol):
    """What the model needs of a device host in its process (see ``agents.host.DeviceHost``)."""

    host_id: str

    def handles(self, topic: str) -> bool:
        """Whether a message on ``topic`` is addressed to this host."""

    def on_message(self, message: Message) -> None:
        """Handle one message addressed to this host (never raises on bad input)."""


class TwinModel(Model):
    """A scenario's world. Use cases add base stations, devices and the network agent to it."""

    def __init__(
        self,
        *,
        scenario: str,
        run_id: str,
        seed: int,
        bus: Bus,
        area: AreaConfig,
        radio: RadioConfig,
        link: LinkConfig,
        bus_cfg: BusConfig,
        carbon: CarbonConfig,
        edge: ComputeProfile,
        wire_dtype: WireDtype = "fp32",
        rounds_limit: int | None = None,
    ) -> None:
        self.seeds = SeedStreams(seed)
        super().__init__(rng=self.seeds.integer("mesa"))
        self.scenario_name = scenario
        self.run_id = run_id
        self.seed = seed
        self.area = area
        self.radio_cfg = radio
        self.link_cfg = link
        self.bus_cfg = bus_cfg
        self.carbon = carbon
        self.edge_profile = edge
        self.rounds_limit = rounds_limit
        self.space = ContinuousSpace([[0.0, area.width_m], [0.0, area.height_m]], random=self.random)
        self.mobility = Mobility(self.space)
        """Moves the devices each step: vectorised fleets by kind, then the rest by their ``move()``."""
        self.bus = bus
        self.topics = Topics(run_id)
        self.keys = RunKeys(run_id)  # per-agent HMAC keys and the network's signing key (random per run)
        keys = self.keys
        self.exchange = ModelExchange(
            bus,
            self.topics,
            chunk_bytes=bus_cfg.chunk_bytes,
            max_payload_bytes=bus_cfg.max_payload_bytes,
            wire_dtype=wire_dtype,
            signer=lambda _sender, topic, digest: keys.sign(topic, digest),
            verifier=keys.verify,
        )
        self.telemetry = TelemetryPublisher(bus, self.topics, scenario)
        self.energy = EnergyLedger()
        self.kpi_rows: list[dict[str, Any]] = []
        self.kpi_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.base_stations: list[Any] = []
        self._devices: dict[str, DeviceLike] = {}
        self.network: Any = None
        self.networks: dict[str, Any] = {}  # further network agents by service (several federated services)
        self.links: LinkModel | None = None
        self.status = "running"
        self._subscribed: set[str] = set()
        self._sorted_devices: list[DeviceLike] | None = None  # devices in id order; None: re-sort
        self._space_rows: tuple[list[DeviceLike], int, np.ndarray | None] | None = None
        self.link_arrays: LinkSnapshot | None = None  # the last radio snapshot, one row per device
        self.link_index: dict[str, int] = {}  # agent id → row of ``link_arrays``
        self._link_devices: list[DeviceLike] | None = None  # the device list ``link_index`` indexes
        self._cell_share: list[int] = []  # ``link_arrays.cell_share`` as Python ints
        self._grid: CoverageGrid | None = None
        self._routes: dict[str, Callable[[Message], None]] = {}
        self.services: list[Any] = []
        self.hosts: list[HostLike] = []
        self.handling_s = 0.0  # wall seconds spent handling received messages (own hosts' work included)
        self.accepted = 0  # expected messages accepted so far (updates, inference batches): progress
        self.hosting = "local"  # "local": devices in this process's host; "workers": in worker processes
        self.local_device_host: Any = None  # the host holding the devices' side as built (see usecases)
        self.worker_parts: list[Any] = []  # further device sides for --workers to split (twin.workers)
        self.health_checks: list[Callable[[], None]] = []  # raise RunAbortedError when a worker is gone
        self.last_coverage: CoverageMap | None = None

    # ---- world ----------------------------------------------------------------------------------
    def add_device(self, device: DeviceLike) -> None:
        """Register a device agent (ids must be unique)."""
        if device.agent_id in self._devices:
            raise ValueError(f"duplicate device id {device.agent_id!r}")
        self._devices[device.agent_id] = device
        self._sorted_devices = None

    @property
    def devices(self) -> list[DeviceLike]:
        """Devices in id order (a new list; the order is sorted once per :meth:`add_device`)."""
        return list(self._device_list())

    def _device_list(self) -> list[DeviceLike]:
        """The cached id-ordered device list itself (not to be mutated; replaced by :meth:`add_device`)."""
        if self._sorted_devices is None:
            self._sorted_devices = [self._devices[k] for k in sorted(self._devices)]
        return self._sorted_devices

    def _device_xy(self, devices: list[DeviceLike]) -> np.ndarray:
        """Positions ``(N, 2)`` of ``devices`` (the cached list), a copy.

        Devices that are agents of ``self.space`` keep their positions in its ``agent_positions`` array
        (Mesa's ``ContinuousSpace``); their rows are gathered at once instead of reading ``position``
        device by device. The rows are looked up again when the device list or the space's population
        changes; anything else (a device outside the space) is read one by one.
        """
        space = self.space
        n_in_space = len(getattr(space, "_agent_to_index", ()))
        cached = self._space_rows
        if cached is None or cached[0] is not devices or cached[1] != n_in_space:
            index = getattr(space, "_agent_to_index", {})
            rows = None
            if all(getattr(d, "space", None) is space and d in index for d in devices):
                rows = np.fromiter((index[d] for d in devices), dtype=np.intp, count=len(devices))
            self._space_rows = cached = (devices, n_in_space, rows)
        rows = cached[2]
        if rows is not None:
            return space.agent_positions[rows]
        return np.array([d.position for d in devices], dtype=float).reshape(len(devices), -1)

    def device(self, agent_id: str) -> Any:
        """The device with ``agent_id`` (KeyError if unknown)."""
        return self._devices[agent_id]

    def has_device(self, agent_id: str) -> bool:
        """Whether ``agent_id`` is a device of this model."""
        return agent_id in self._devices

    def finish_setup(self) -> None:
        """Build the radio model once base stations and devices exist; compute the first links."""
        bs_xyz = np.array([[*bs.position, bs.height_m] for bs in self.base_stations], dtype=float)
        self.links = LinkModel(
            self.radio_cfg,
            self.link_cfg,
            bs_xyz,
            [bs.agent_id for bs in self.base_stations],
            self.seeds.numpy("radio"),
        )
        self.update_links()

    def update_links(self) -> None:
        """Recompute every device's serving cell, SINR, rates and reliability (vectorised)."""
        devices = self._device_list()
        if self.links is None or not devices:
            return
        heights = np.fromiter((d.height_m for d in devices), dtype=float, count=len(devices))
        ue_xyz = np.column_stack((self._device_xy(devices), heights))
        snap = self.links.update(ue_xyz)
        if self._link_devices is not devices:
            self.link_index = {d.agent_id: i for i, d in enumerate(devices)}
            self._link_devices = devices
        self.link_arrays = snap
        self._cell_share = snap.cell_share.tolist()
        # One pass of plain attribute stores (other code reads them per device); values via tolist().
        for d, cell, down, up, sinr, rel in zip(
            devices,
            snap.serving_cell_ids.tolist(),
            snap.downlink_bps.tolist(),
            snap.uplink_bps.tolist(),
            snap.sinr_db.tolist(),
            snap.reliability.tolist(),
            strict=True,
        ):
            d.serving_cell = cell
            d.downlink_bps = down
            d.uplink_bps = up
            d.sinr_db = sinr
            d.reliability = rel
        served = dict(zip(*np.unique(snap.serving_cell_ids, return_counts=True), strict=True))
        for bs in self.base_stations:
            bs.served = int(served.get(bs.agent_id, 0))

    # ---- clock ----------------------------------------------------------------------------------
    def step(self) -> None:
        """One simulated second: mobility, radio, telemetry, bus.

        Mobility is :attr:`mobility` (``twin.mobility``): devices of a vectorised kind move together as
        arrays, then every other device through its own ``move()`` in id order.
        """
        self.bus.check()
        devices = self._device_list()
        if devices:
            before = self._device_xy(devices)
            self.mobility.move(devices, 1.0)
            if not np.array_equal(before, self._device_xy(devices)):
                self.update_links()
        if self.bus_cfg.telemetry_interval_s and self.time % self.bus_cfg.telemetry_interval_s < 1.0:
            self.publish_telemetry()
        self.pump(0.0)

    def publish_telemetry(self) -> None:
        """Telemetry of every agent, on its own topic."""
        publish, step, now = self.telemetry.agent, self.steps, float(self.time)
        for agent in [*self.base_stations, *self._device_list(), *([self.network] if self.network else [])]:
            publish(agent.kind, agent.agent_id, step, now, agent.telemetry())

    # ---- bus --------------------------------------------------------------------------------------
    def subscribe(self, topic_filter: str) -> None:
        """Subscribe the run's bus client to ``topic_filter`` once (endpoints of one process share it)."""
        if topic_filter not in self._subscribed:
            self.bus.subscribe(topic_filter)
            self._subscribed.add(topic_filter)

    def subscribe_service(self, service: str) -> None:
        """Receive what the network agent of ``service`` is sent: updates and resends asked of it."""
        for topic_filter in self.topics.network_filters(service):
            self.subscribe(topic_filter)

    def add_host(self, host: HostLike) -> None:
        """A device host living in this process: messages addressed to it are handed to it in :meth:`pump`."""
        self.hosts.append(host)

    def route(self, topic_prefix: str, handler: Callable[[Message], None]) -> None:
        """Subscribe to ``{topic_prefix}/#`` and hand its messages to ``handler`` (in :meth:`pump`)."""
        self._routes[topic_prefix + "/"] = handler
        topic_filter = f"{topic_prefix}/#"
        if topic_filter not in self._subscribed:
            self.bus.subscribe(topic_filter)
            self._subscribed.add(topic_filter)

    def pump(self, timeout_s: float = 0.0) -> int:
        """Drain received messages and hand each to its endpoint; returns how many were handled.

        Request services' handlers first (by topic prefix), then the device hosts of this process
        (round plans, global models, resends of their updates, ticks), then the network agent (updates,
        resends of the global model). Anything else is counted as ``unknown``.
        """
        messages = self.bus.poll(timeout_s)
        started = time.perf_counter()
        self.exchange.predecode(messages)  # packed updates: parsed and hashed on parallel threads
        try:
            self._handle(messages)
        finally:
            self.exchange.clear_predecoded()
        self.handling_s += time.perf_counter() - started
        return len(messages)

    def _handle(self, messages: list[Message]) -> None:
        for message in messages:
            handler = next(
                (h for prefix, h in self._routes.items() if message.topic.startswith(prefix)), None
            )
            if handler is not None:
                handler(message)
                continue
            host = next((h for h in self.hosts if h.handles(message.topic)), None)
            if host is not None:
                host.on_message(message)
                continue
            received = self.exchange.receive(message)
            if received is None:
                continue
            network = self.networks.get(received.service, self.network)
            if network is None or received.service != network.service:
                self.bus.stats.reject("unknown")
            elif isinstance(received, ReceivedModel):
                network.on_model(received)
            elif isinstance(received, ReceivedBatch):
                for update in received.as_models():  # each row as its device's own update
                    network.on_model(update)
            elif isinstance(received, ResendRequest) and received.agent_id == network.agent_id:
                network.on_resend_request(received)
            else:
                self.bus.stats.reject("unknown")

    def wait_for(
        self,
        done: Callable[[], bool],
        *,
        what: str,
        progress: Callable[[], int],
        resend: Callable[[], None] | None = None,
    ) -> None:
        """Pump the bus until ``done()`` — a completeness barrier on the wall clock.

        Only time spent *waiting* counts: work this process does for its own device hosts (training a
        cohort, inferring) inside :meth:`pump` is not waiting. Progress is ``progress()`` moving or any
        expected message being accepted (:attr:`accepted`: a busy host's other answers count too).
        After ``bus.resend_after_s`` of waiting with no progress the missing messages are asked for again
        (``resend``), then after twice as long, and so on (so an overloaded host is not flooded with
        requests); after ``bus.barrier_timeout_s`` of waiting with no progress the run is aborted.

        Raises:
            RunAbortedError: nothing expected arrived for ``bus.barrier_timeout_s``.
        """
        cfg = self.bus_cfg
        last_count = (progress(), self.accepted)
        mark = time.monotonic() - self.handling_s  # waiting clock: wall minus own handling
        last_progress = last_resend = mark
        resend_after = cfg.resend_after_s
        while not done():
            self.bus.check()
            for check in self.health_checks:
                check()
            self.pump(timeout_s=0.05)
            if done():
                return
            now = time.monotonic() - self.handling_s
            count = (progress(), self.accepted)
            if count != last_count:
                last_count, last_progress, last_resend = count, now, now
                resend_after = cfg.resend_after_s
            if now - last_progress > cfg.barrier_timeout_s:
                raise RunAbortedError(
                    f"{what} incomplete after {cfg.barrier_timeout_s:.0f} s of waiting with no progress"
                )
            if resend is not None and now - last_resend > resend_after:
                log.warning("%s incomplete after %.1f s of waiting: asking again", what, now - last_progress)
                self.bus.stats.reject("resend_requested")
                resend()
                last_resend = now
                resend_after *= 2

    # ---- energy and records ----------------------------------------------------------------------
    def book_round_energy(
        self,
        service: str,
        devices: list[DeviceLike],
        *,
        flops: np.ndarray,
        download_s: np.ndarray,
        upload_s: np.ndarray,
        bits: float,
        max_s: float,
    ) -> None:
        """Energy of the devices' federated round (SPEC §7), as arrays: compute and both transfers, both ends.

        Device: compute FLOPs ÷ (FLOP/s ÷ W) and its radio power while sending and receiving. Network:
        the model download's bits ÷ EE_comm, with EE_comm = cell rate ÷ base-station power (Table 3-10) —
        one charged transfer per user and round, as in the paper's E = (K·D_m/EE_comm + E_comp)·M_g; the
        upload is charged at the device's radio power. A device whose transfer cannot finish (no coverage,
        past the deadline) keeps its radio on for at most ``max_s`` seconds before the network gives up.
        """
        if not devices:
            return
        link = self.link_cfg
        ledger = self.energy
        ids = [d.agent_id for d in devices]
        efficiency = np.array([d.compute.efficiency_flops_per_j for d in devices], dtype=float)
        ledger.add_many(ids, "compute", compute_energy_j(flops, efficiency), service=service)
        ledger.add_many(ids, "uplink", link.ue_radio_power_w * np.minimum(upload_s, max_s), service=service)
        ledger.add_many(
            ids, "downlink", link.ue_radio_power_w * np.minimum(download_s, max_s), service=service
        )
        # The cell carries each device's bits at its share of capacity × the devices sharing it.
        down_bps = np.array([d.downlink_bps for d in devices], dtype=float)
        served = down_bps > 0
        if served.any():
            share = np.array(
                [self.cell_share(a) for a, ok in zip(ids, served, strict=True) if ok], dtype=float
            )
            joules = transmission_energy_j(bits, down_bps[served] * share / link.bs_power_w)
            ledger.add_many([NETWORK] * int(served.sum()), "downlink", joules, service=service)

    def coverage_grid(self) -> CoverageGrid:
        """The radio over the area's grid at the devices' median height (cached: cells do not move)."""
        if self._grid is None:
            assert self.links is not None
            heights = [d.height_m for d in self.devices]
            self._grid = self.links.coverage_grid(
                self.area.grid_m,
                self.area.width_m,
                self.area.height_m,
                ue_height_m=float(np.median(heights)) if heights else None,
            )
        return self._grid

    def coverage(
        self,
        device_accuracy: dict[str, float],
        regional_accuracy: float,
        *,
        min_rate_bps: float,
        min_accuracy: float,
    ) -> CoverageMap:
        """Service coverage map of a model whose accuracy on each device's data is ``device_accuracy``."""
        devices = [d for d in self.devices if d.agent_id in device_accuracy]
        xy = np.array([d.position for d in devices], dtype=float).reshape(-1, 2)
        self.last_coverage = coverage_map(
            self.coverage_grid(),
            device_xy=xy,
            device_accuracy=np.array([device_accuracy[d.agent_id] for d in devices]),
            device_samples=np.array([float(getattr(d, "n_samples", 1)) for d in devices]),
            regional_accuracy=regional_accuracy,
            min_rate_bps=min_rate_bps,
            min_accuracy=min_accuracy,
        )
        return self.last_coverage

    def cell_share(self, agent_id: str) -> int:
        """Number of devices sharing the serving cell of ``agent_id`` (1 if unknown)."""
        row = self.link_index.get(agent_id)
        return 1 if row is None else self._cell_share[row]

    def record_kpi(self, row: dict[str, Any]) -> None:
        """Keep a KPI row, stream it, and tell listeners (progress bar, viz).

        Values that are not finite (a median over no device) become ``None``: null in JSON, NaN in Parquet.
        """
        row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        self.kpi_rows.append(row)
        self.telemetry.kpi(row)
        for listener in self.kpi_listeners:
            listener(row)
