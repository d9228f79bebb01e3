"""The Mesa model: simulated clock in seconds, the world's agents, the bus, energy and KPI records.

``model.time`` is simulated seconds (one ``step()`` = one second: mobility, radio, telemetry, bus).
Services run as events scheduled on that clock (``schedule_event``); wall-clock never enters a result.
"""

from __future__ import annotations

import logging
import math
from collections.abc import Callable
from typing import Any, Protocol

import numpy as np
from mesa import Model
from mesa.experimental.continuous_space import ContinuousSpace

from broker.bus import Bus, Message
from broker.codec import WireDtype
from broker.model_exchange import ModelExchange, ReceivedModel, ResendRequest
from broker.topics import Topics
from twin.coverage import CoverageMap, coverage_map
from twin.energy import NETWORK, EnergyLedger
from twin.kpi import ComputeProfile, compute_energy_j, transmission_energy_j
from twin.links import CoverageGrid, LinkModel
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
        self.bus = bus
        self.topics = Topics(run_id)
        self.exchange = ModelExchange(
            bus,
            self.topics,
            chunk_bytes=bus_cfg.chunk_bytes,
            max_payload_bytes=bus_cfg.max_payload_bytes,
            wire_dtype=wire_dtype,
        )
        self.telemetry = TelemetryPublisher(bus, self.topics, scenario)
        self.energy = EnergyLedger()
        self.kpi_rows: list[dict[str, Any]] = []
        self.kpi_listeners: list[Callable[[dict[str, Any]], None]] = []
        self.base_stations: list[Any] = []
        self._devices: dict[str, DeviceLike] = {}
        self.network: Any = None
        self.links: LinkModel | None = None
        self.status = "running"
        self._subscribed: set[str] = set()
        self._cell_share: dict[str, int] = {}
        self._grid: CoverageGrid | None = None
        self._routes: dict[str, Callable[[Message], None]] = {}
        self.services: list[Any] = []
        self.last_coverage: CoverageMap | None = None

    # ---- world ----------------------------------------------------------------------------------
    def add_device(self, device: DeviceLike) -> None:
        """Register a device agent (ids must be unique)."""
        if device.agent_id in self._devices:
            raise ValueError(f"duplicate device id {device.agent_id!r}")
        self._devices[device.agent_id] = device

    @property
    def devices(self) -> list[DeviceLike]:
        """Devices in id order."""
        return [self._devices[k] for k in sorted(self._devices)]

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
        devices = self.devices
        if self.links is None or not devices:
            return
        ue_xyz = np.array([[*d.position, d.height_m] for d in devices], dtype=float)
        snap = self.links.update(ue_xyz)
        for i, d in enumerate(devices):
            d.serving_cell = snap.serving_cell_ids[i]
            d.downlink_bps = float(snap.downlink_bps[i])
            d.uplink_bps = float(snap.uplink_bps[i])
            d.sinr_db = float(snap.sinr_db[i])
            d.reliability = float(snap.reliability[i])
        self._cell_share = dict(zip((d.agent_id for d in devices), snap.cell_share.tolist(), strict=True))
        served = dict(zip(*np.unique(snap.serving_cell_ids, return_counts=True), strict=True))
        for bs in self.base_stations:
            bs.served = int(served.get(bs.agent_id, 0))

    # ---- clock ----------------------------------------------------------------------------------
    def step(self) -> None:
        """One simulated second: mobility, radio, telemetry, bus."""
        self.bus.check()
        devices = self.devices
        before = np.array([d.position.copy() for d in devices]) if devices else None
        for d in devices:
            d.move(1.0)
        if before is not None and not np.array_equal(before, np.array([d.position for d in devices])):
            self.update_links()
        if self.bus_cfg.telemetry_interval_s and self.time % self.bus_cfg.telemetry_interval_s < 1.0:
            self.publish_telemetry()
        self.pump(0.0)

    def publish_telemetry(self) -> None:
        """Telemetry of every agent, on its own topic."""
        for agent in [*self.base_stations, *self.devices, *([self.network] if self.network else [])]:
            self.telemetry.agent(agent.kind, agent.agent_id, self.steps, float(self.time), agent.telemetry())

    # ---- bus --------------------------------------------------------------------------------------
    def subscribe_service(self, service: str) -> None:
        """Receive this run's model traffic of ``service``."""
        topic_filter = self.topics.ml_filter(service)
        if topic_filter not in self._subscribed:
            self.bus.subscribe(topic_filter)
            self._subscribed.add(topic_filter)

    def route(self, topic_prefix: str, handler: Callable[[Message], None]) -> None:
        """Subscribe to ``{topic_prefix}/#`` and hand its messages to ``handler`` (in :meth:`pump`)."""
        self._routes[topic_prefix + "/"] = handler
        topic_filter = f"{topic_prefix}/#"
        if topic_filter not in self._subscribed:
            self.bus.subscribe(topic_filter)
            self._subscribed.add(topic_filter)

    def pump(self, timeout_s: float = 0.0) -> int:
        """Drain received messages and route them; returns how many were handled."""
        messages = self.bus.poll(timeout_s)
        for message in messages:
            handler = next(
                (h for prefix, h in self._routes.items() if message.topic.startswith(prefix)), None
            )
            if handler is not None:
                handler(message)
                continue
            received = self.exchange.receive(message)
            if isinstance(received, ReceivedModel):
                if self.network is not None and received.service == self.network.service:
                    self.network.on_model(received)
                else:
                    self.bus.stats.reject("unknown")
            elif isinstance(received, ResendRequest):
                topic = self.topics.update(received.service, received.round_index, received.agent_id)
                if not (self.has_device(received.agent_id) and self.exchange.resend(topic, received.chunks)):
                    self.bus.stats.reject("unknown")
        return len(messages)

    # ---- energy and records ----------------------------------------------------------------------
    def book_round_energy(
        self, service: str, device: DeviceLike, *, flops: float, timing: Any, bits: float, max_s: float
    ) -> None:
        """Energy of one device's federated round (SPEC §7): local compute and both transfers, at both ends.

        Device: compute FLOPs ÷ (FLOP/s ÷ W) and its radio power while sending and receiving. Network:
        the model download's bits ÷ EE_comm, with EE_comm = cell rate ÷ base-station power (Table 3-10) —
        one charged transfer per user and round, as in the paper's E = (K·D_m/EE_comm + E_comp)·M_g; the
        upload is charged at the device's radio power. A device whose transfer cannot finish (no coverage,
        past the deadline) keeps its radio on for at most ``max_s`` seconds before the network gives up.
        """
        link = self.link_cfg
        ledger = self.energy
        compute_j = float(compute_energy_j(flops, device.compute.efficiency_flops_per_j))
        ledger.add(device.agent_id, "compute", compute_j, service=service)
        ledger.add(
            device.agent_id, "uplink", link.ue_radio_power_w * min(timing.upload_s, max_s), service=service
        )
        ledger.add(
            device.agent_id,
            "downlink",
            link.ue_radio_power_w * min(timing.download_s, max_s),
            service=service,
        )
        # The cell carries this device's bits at its share of capacity × the devices sharing it.
        share = self.cell_share(device.agent_id)
        if device.downlink_bps > 0:
            joules = float(transmission_energy_j(bits, device.downlink_bps * share / link.bs_power_w))
            ledger.add(NETWORK, "downlink", joules, service=service)

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
        return self._cell_share.get(agent_id, 1)

    def record_kpi(self, row: dict[str, Any]) -> None:
        """Keep a KPI row, stream it, and tell listeners (progress bar, viz).

        Values that are not finite (a median over no device) become ``None``: null in JSON, NaN in Parquet.
        """
        row = {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in row.items()}
        self.kpi_rows.append(row)
        self.telemetry.kpi(row)
        for listener in self.kpi_listeners:
            listener(row)
