"""Grid-inspection drone (paper §2.3.8): patrols a power-line corridor at altitude, back and forth."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace

from agents.device import Device
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.mobility import FleetField, RouteFleet

if TYPE_CHECKING:
    from twin.model import TwinModel


class InspectionDrone(Device):
    """A drone with on-board compute flying a polyline route at constant speed and altitude.

    The model moves all such devices at once (:class:`twin.mobility.RouteFleet`, bit-identical to
    :meth:`move`); ``travelled_m`` is then the fleet's row.
    """

    kind: ClassVar[str] = "drone"
    mobility_fleet = RouteFleet
    travelled_m = FleetField[float]()
    """Distance flown since the start of the route (out and back: it wraps every two route lengths)."""

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        route_m: np.ndarray,
        start_fraction: float,
        speed_mps: float,
        altitude_m: float,
        compute: ComputeProfile,
        data: LocalData,
        landscape: str,
    ) -> None:
        if route_m.ndim != 2 or route_m.shape[0] < 2 or route_m.shape[1] != 2:
            raise ValueError(f"a route needs at least two (x, y) waypoints, got shape {route_m.shape}")
        if speed_mps <= 0:
            raise ValueError(f"drone speed must be > 0 m/s, got {speed_mps}")
        self.route_m = route_m
        segments = np.linalg.norm(np.diff(route_m, axis=0), axis=1)
        self._cumulative = np.concatenate([[0.0], np.cumsum(segments)])
        self.route_length_m = float(self._cumulative[-1])
        self.speed_mps = speed_mps
        self.travelled_m = start_fraction * 2 * self.route_length_m
        super().__init__(
            model,
            space,
            agent_id=agent_id,
            position_m=tuple(self._point()),
            height_m=altitude_m,
            compute=compute,
            data=data,
        )
        self.landscape = landscape

    def _point(self) -> np.ndarray:
        """Position after ``travelled_m`` along the route, flying out and back."""
        loop = 2 * self.route_length_m
        s = self.travelled_m % loop
        s = s if s <= self.route_length_m else loop - s
        i = int(np.clip(np.searchsorted(self._cumulative, s, side="right") - 1, 0, len(self.route_m) - 2))
        seg = self._cumulative[i + 1] - self._cumulative[i]
        t = 0.0 if seg == 0 else (s - self._cumulative[i]) / seg
        return np.asarray(self.route_m[i] + t * (self.route_m[i + 1] - self.route_m[i]), dtype=float)

    def move(self, dt_s: float) -> None:
        """Fly ``speed × dt`` metres further along the corridor."""
        self.travelled_m += self.speed_mps * dt_s
        self.position = self._point()
