"""A :class:`~twin.model.TwinModel` whose devices fall back to a satellite link out of terrestrial coverage.

Each device gets a **bearer** every second: ``terrestrial`` when its serving cell gives it both an
uplink and a downlink, else ``satellite`` when it is inside the beam's footprint during a pass
(:mod:`twin.radio.satellite`), else ``none`` (out of coverage: it stores what it has to send). A
device on the satellite keeps ``serving_cell`` = :data:`SATELLITE_CELL` and its one-way delay in
``link_latency_s``; the terrestrial radio, shadowing and energy accounting are the base model's.

**Service coverage** (SPEC §6-7, :meth:`SatelliteTwinModel.coverage`) counts the satellite too: a grid
cell without a terrestrial link but inside the beam's footprint is covered at the rate a device there
gets **during a pass** (the beam's capacity shared by the devices that use the satellite, each capped),
with the satellite's reliability. Between passes such a place waits for the next one (store and
forward): that wait shows in round latency and staleness, not in coverage. The terrestrial-only share
is kept as :attr:`SatelliteTwinModel.terrestrial_coverage`.
"""

from __future__ import annotations

from typing import Any

import numpy as np

from twin.coverage import CoverageMap, coverage_map
from twin.links import CoverageGrid
from twin.map_features import MapFeature
from twin.model import TwinModel
from twin.radio.satellite import SatelliteConfig, in_footprint, satellite_links, visible

SATELLITE_CELL = "sat-0"
"""``serving_cell`` of a device served by the satellite."""
TERRESTRIAL_LATENCY_S = 0.0
"""One-way delay of a terrestrial link (negligible next to the satellite's)."""
BEARERS = ("terrestrial", "satellite", "none")


class SatelliteTwinModel(TwinModel):
    """The twin with satellite access for devices out of terrestrial coverage."""

    def __init__(self, *, satellite: SatelliteConfig, **kwargs: Any) -> None:
        """Build the base model (same keyword arguments) with ``satellite`` access."""
        super().__init__(**kwargs)
        self.satellite = satellite
        self._visible: bool | None = None
        self.map_features: list[MapFeature] = []
        """Areas drawn on the map under the agents (pastures, the satellite's footprint)."""
        self.terrestrial_coverage = float("nan")
        """Service coverage of the terrestrial cells alone at the last :meth:`coverage` (NaN before)."""

    def update_links(self) -> None:
        """Terrestrial links (base model), then the satellite for devices left without one."""
        super().update_links()
        devices = self._device_list()
        if not devices:
            return
        now = float(self.time)
        self._visible = visible(self.satellite, now)
        without = np.fromiter(
            (d.uplink_bps <= 0 or d.downlink_bps <= 0 for d in devices), dtype=bool, count=len(devices)
        )
        sat = satellite_links(self.satellite, self._device_xy(devices), without, now)
        latency = self.satellite.one_way_s
        for d, lacks, served, up, down in zip(
            devices,
            without.tolist(),
            sat.served.tolist(),
            sat.uplink_bps.tolist(),
            sat.downlink_bps.tolist(),
            strict=True,
        ):
            device: Any = d
            if not lacks:
                device.bearer, device.link_latency_s = "terrestrial", TERRESTRIAL_LATENCY_S
            elif served:
                device.bearer, device.link_latency_s = "satellite", latency
                device.serving_cell = SATELLITE_CELL
                device.uplink_bps, device.downlink_bps = up, down
                device.reliability = self.satellite.reliability
            else:
                device.bearer, device.link_latency_s = "none", float("inf")
                device.uplink_bps, device.downlink_bps, device.reliability = 0.0, 0.0, 0.0

    def step(self) -> None:
        """One simulated second; links are refreshed too when a pass begins or ends."""
        super().step()
        if visible(self.satellite, float(self.time)) != self._visible:
            self.update_links()

    def bearer_counts(self) -> dict[str, int]:
        """How many devices use each bearer now."""
        counts = dict.fromkeys(BEARERS, 0)
        for d in self._device_list():
            bearer = getattr(d, "bearer", "none")
            counts[bearer] = counts.get(bearer, 0) + 1
        return counts

    def satellite_grid(self) -> CoverageGrid:
        """The terrestrial grid with the satellite's rate during a pass where no cell serves a place."""
        grid = self.coverage_grid()
        sat = self.satellite
        if not sat.enabled:
            return grid
        xs, ys = np.meshgrid(grid.xs, grid.ys)
        inside = in_footprint(sat, np.column_stack((xs.ravel(), ys.ravel()))).reshape(xs.shape)
        served = inside & ((grid.uplink_bps <= 0) | (grid.downlink_bps <= 0))
        devices = self._device_list()
        on_satellite = in_footprint(sat, self._device_xy(devices)) & np.fromiter(
            (getattr(d, "bearer", "none") != "terrestrial" for d in devices), dtype=bool, count=len(devices)
        )
        users = max(1, int(on_satellite.sum()))
        down_bps = min(sat.downlink_bps, sat.beam_downlink_bps / users)
        up_bps = min(sat.uplink_bps, sat.beam_uplink_bps / users)
        return CoverageGrid(
            xs=grid.xs,
            ys=grid.ys,
            resolution_m=grid.resolution_m,
            downlink_bps=np.where(served, down_bps, grid.downlink_bps),
            uplink_bps=np.where(served, up_bps, grid.uplink_bps),
            sinr_db=grid.sinr_db,
            reliability=np.where(served, sat.reliability, grid.reliability),
            serving_cell=grid.serving_cell,
        )

    def coverage(
        self,
        device_accuracy: dict[str, float],
        regional_accuracy: float,
        *,
        min_rate_bps: float,
        min_accuracy: float,
    ) -> CoverageMap:
        """Service coverage over the cells and the satellite's passes (module docstring); terrestrial kept."""
        terrestrial = super().coverage(
            device_accuracy, regional_accuracy, min_rate_bps=min_rate_bps, min_accuracy=min_accuracy
        )
        self.terrestrial_coverage = terrestrial.share
        if not self.satellite.enabled:
            return terrestrial
        devices = [d for d in self._device_list() if d.agent_id in device_accuracy]
        self.last_coverage = coverage_map(
            self.satellite_grid(),
            device_xy=np.array([d.position for d in devices], dtype=float).reshape(-1, 2),
            device_accuracy=np.array([device_accuracy[d.agent_id] for d in devices]),
            device_samples=np.array([float(getattr(d, "n_samples", 1)) for d in devices]),
            regional_accuracy=regional_accuracy,
            min_rate_bps=min_rate_bps,
            min_accuracy=min_accuracy,
        )
        return self.last_coverage
