"""Unmanned grazing (paper §2.3.5): herds that move between paddocks, herding drones, camera posts.

A :class:`Herd` is not a device: it is what the devices watch. It grazes around its paddock (a random
walk between points of the paddock) and, on the rotation plan, walks to the next paddock. A
:class:`HerdingDrone` follows its herd low over the ground; a :class:`CameraPost` stands at a fixed
place (a water point, a fence). Both are devices with compute, local data and a radio link.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace, ContinuousSpaceAgent

from agents.device import Device
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData

if TYPE_CHECKING:
    from twin.model import TwinModel

Paddock = tuple[float, float, float, float]
"""An axis-aligned paddock ``(x0, y0, x1, y1)`` in metres."""


class Herd(ContinuousSpaceAgent):
    """A herd grazing its paddock and moving to the next one of its rotation every ``rotation_s``."""

    kind: ClassVar[str] = "herd"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        rotation: list[Paddock],
        animals: int,
        graze_speed_mps: float,
        transit_speed_mps: float,
        rotation_s: float,
        rng: np.random.Generator,
    ) -> None:
        if not rotation:
            raise ValueError("a herd needs at least one paddock in its rotation")
        if graze_speed_mps <= 0 or transit_speed_mps <= 0 or rotation_s <= 0:
            raise ValueError(
                f"herd speeds and rotation interval must be > 0, got {graze_speed_mps}, "
                f"{transit_speed_mps}, {rotation_s}"
            )
        super().__init__(space, model)
        self.agent_id = agent_id
        self.rotation = rotation
        self.animals = animals
        self.graze_speed_mps = graze_speed_mps
        self.transit_speed_mps = transit_speed_mps
        self.rotation_s = rotation_s
        self._rng = rng
        self.paddock_index = 0
        self.position = self._point_in(rotation[0])
        self._target = self._point_in(rotation[0])
        self.clock_s = 0.0

    def _point_in(self, paddock: Paddock) -> np.ndarray:
        x0, y0, x1, y1 = paddock
        margin_x, margin_y = 0.1 * (x1 - x0), 0.1 * (y1 - y0)
        return np.array(
            [self._rng.uniform(x0 + margin_x, x1 - margin_x), self._rng.uniform(y0 + margin_y, y1 - margin_y)]
        )

    @property
    def paddock(self) -> Paddock:
        """The paddock the herd grazes now (or walks to)."""
        return self.rotation[self.paddock_index]

    @property
    def in_paddock(self) -> bool:
        """Whether the herd is inside its current paddock."""
        x0, y0, x1, y1 = self.paddock
        x, y = self.position
        return bool(x0 <= x <= x1 and y0 <= y <= y1)

    @property
    def state(self) -> str:
        """``grazing`` in its paddock, ``moving`` on the way to the next one (drawn by the map)."""
        return "grazing" if self.in_paddock else "moving"

    def walk(self) -> None:
        """Walk one simulated second, then schedule the next (an event after the devices' step).

        A bound method of the herd, which the model holds: Mesa keeps only a weak reference to an
        event's callable, so a closure would be collected at the garbage collector's whim and the herd
        would stop at a different time in every run.
        """
        self.move(1.0)
        self.model.schedule_event(self.walk, at=self.model.time + 1.0)

    def move(self, dt_s: float) -> None:
        """Walk ``dt_s`` seconds towards the current target; rotate paddocks on the plan."""
        self.clock_s += dt_s
        due = int(self.clock_s // self.rotation_s) % len(self.rotation)
        if due != self.paddock_index:
            self.paddock_index = due
            self._target = self._point_in(self.paddock)
        speed = self.graze_speed_mps if self.in_paddock else self.transit_speed_mps
        step = self._target - self.position
        distance = float(np.linalg.norm(step))
        reach = speed * dt_s
        if distance <= reach:
            self.position = self._target
            self._target = self._point_in(self.paddock)
        else:
            self.position = self.position + step * (reach / distance)


class HerdingDrone(Device):
    """A drone that follows its herd low over the ground, circling it (paper §2.3.5: herding drones)."""

    kind: ClassVar[str] = "herding-drone"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        herd: Herd,
        altitude_m: float,
        speed_mps: float,
        orbit_m: float,
        phase: float,
        compute: ComputeProfile,
        data: LocalData,
    ) -> None:
        if speed_mps <= 0:
            raise ValueError(f"drone speed must be > 0 m/s, got {speed_mps}")
        self.herd = herd
        self.speed_mps = speed_mps
        self.orbit_m = orbit_m
        self.phase = phase
        super().__init__(
            model,
            space,
            agent_id=agent_id,
            position_m=tuple(self._station()),
            height_m=altitude_m,
            compute=compute,
            data=data,
        )
        self.bearer = "terrestrial"
        self.link_latency_s = 0.0

    def _station(self) -> np.ndarray:
        offset = self.orbit_m * np.array([np.cos(self.phase), np.sin(self.phase)])
        return np.asarray(self.herd.position + offset, dtype=float)

    def move(self, dt_s: float) -> None:
        """Fly towards a point on a circle around the herd (the circle turns slowly)."""
        self.phase += 0.02 * dt_s
        step = self._station() - self.position
        distance = float(np.linalg.norm(step))
        reach = self.speed_mps * dt_s
        self.position = self.position + (step if distance <= reach else step * (reach / distance))

    def telemetry(self) -> dict[str, float | int | str]:
        """Device telemetry plus the bearer (terrestrial, satellite or none)."""
        return {**super().telemetry(), "bearer": self.bearer, "herd": self.herd.agent_id}


class CameraPost(Device):
    """A fixed camera on a post at a water point or a fence line."""

    kind: ClassVar[str] = "camera"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        height_m: float,
        compute: ComputeProfile,
        data: LocalData,
    ) -> None:
        super().__init__(
            model,
            space,
            agent_id=agent_id,
            position_m=position_m,
            height_m=height_m,
            compute=compute,
            data=data,
        )
        self.bearer = "terrestrial"
        self.link_latency_s = 0.0

    def telemetry(self) -> dict[str, float | int | str]:
        """Device telemetry plus the bearer (terrestrial, satellite or none)."""
        return {**super().telemetry(), "bearer": self.bearer}
