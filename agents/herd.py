"""Unmanned grazing (paper §2.3.5): herds that move between paddocks, herding drones, camera posts.

A :class:`Herd` is not a device: it is what the devices watch. It grazes around its paddock (a random
walk between points of the paddock) and, on the rotation plan, walks to the next paddock. A
:class:`HerdingDrone` follows its herd low over the ground; a :class:`CameraPost` stands at a fixed
place (a water point, a fence). Both are devices with compute, local data and a radio link.

Herds walk in a scheduled event each simulated second; a :class:`HerdFlock` walks all of them in one
event as arrays, exactly as each herd's :meth:`Herd.move` would. Herding drones are moved together by
the model's mobility layer (:class:`twin.mobility.OrbitFleet`).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace, ContinuousSpaceAgent

from agents.device import Device
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.mobility import Fleet, FleetField, OrbitFleet, in_space

if TYPE_CHECKING:
    from twin.model import TwinModel

Paddock = tuple[float, float, float, float]
"""An axis-aligned paddock ``(x0, y0, x1, y1)`` in metres."""


class Herd(ContinuousSpaceAgent):
    """A herd grazing its paddock and moving to the next one of its rotation every ``rotation_s``."""

    kind: ClassVar[str] = "herd"
    clock_s = FleetField[float]()
    """Seconds walked since the start (the rotation plan's clock)."""
    paddock_index = FleetField[int]()
    """Index in ``rotation`` of the paddock grazed now (or walked to)."""
    _target = FleetField[np.ndarray]()

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


class HerdFlock(Fleet):
    """Every herd of a model walked one simulated second per event, as arrays.

    The same as each herd's :meth:`Herd.walk`: the arithmetic of :meth:`Herd.move` element by element,
    and new grazing targets drawn from each herd's own generator, only for the herds that need one (a
    new paddock on the rotation plan, or the target reached). Herds are not devices, so the model's
    step does not move them: :meth:`walk` is the event, scheduled once (the model must hold the flock:
    ``model.mobility.hold(flock)``; Mesa keeps events weakly).
    """

    def __init__(self, model: TwinModel, herds: list[Herd]) -> None:
        if not herds:
            raise ValueError("a flock needs at least one herd")
        super().__init__(model.space, herds)
        if not all(in_space(h, self.space) for h in herds):
            raise ValueError("every herd of a flock must be an agent of the model's space")
        self.model = model
        self.herds = herds
        self._graze = np.array([h.graze_speed_mps for h in herds], dtype=float)
        self._transit = np.array([h.transit_speed_mps for h in herds], dtype=float)
        self._rotation_s = np.array([h.rotation_s for h in herds], dtype=float)
        self._n_paddocks = np.array([len(h.rotation) for h in herds], dtype=np.int64)
        self._paddocks = np.zeros((len(herds), int(self._n_paddocks.max()), 4))
        for row, herd in enumerate(herds):
            self._paddocks[row, : len(herd.rotation)] = herd.rotation
        self._all = np.arange(len(herds))
        self.seat(
            {
                "clock_s": np.array([h.clock_s for h in herds], dtype=float),
                "paddock_index": np.array([h.paddock_index for h in herds], dtype=np.int64),
                "_target": np.array([h._target for h in herds], dtype=float).reshape(-1, 2),
            }
        )

    def walk(self) -> None:
        """Walk every herd one simulated second, then schedule the next (a bound method: see the class)."""
        self.move(1.0)
        self.model.schedule_event(self.walk, at=self.model.time + 1.0)

    def move(self, dt_s: float) -> None:
        """Every herd ``dt_s`` seconds towards its target (:meth:`Herd.move`, as arrays)."""
        clock, index, target = self.state["clock_s"], self.state["paddock_index"], self.state["_target"]
        clock += dt_s
        due = np.floor_divide(clock, self._rotation_s).astype(np.int64) % self._n_paddocks
        for row in np.flatnonzero(due != index).tolist():
            index[row] = due[row]
            target[row] = self.herds[row]._point_in(self.herds[row].rotation[int(due[row])])
        pos = self.positions()
        box = self._paddocks[self._all, index]
        x, y = pos[:, 0], pos[:, 1]
        grazing = (box[:, 0] <= x) & (x <= box[:, 2]) & (box[:, 1] <= y) & (y <= box[:, 3])
        step = target - pos
        distance = np.sqrt(np.vecdot(step, step))  # the same dot as np.linalg.norm of one vector
        reach = np.where(grazing, self._graze, self._transit) * dt_s
        reached = distance <= reach
        scale = np.divide(reach, distance, out=np.ones_like(distance), where=~reached)
        self.place(np.where(reached[:, None], target, pos + step * scale[:, None]))
        for row in np.flatnonzero(reached).tolist():
            target[row] = self.herds[row]._point_in(self.herds[row].rotation[int(index[row])])


class HerdingDrone(Device):
    """A drone that follows its herd low over the ground, circling it (paper §2.3.5: herding drones)."""

    kind: ClassVar[str] = "herding-drone"
    mobility_fleet = OrbitFleet
    orbit_rate_rad_s: ClassVar[float] = 0.02
    """How fast the drone's station turns around the herd."""
    phase = FleetField[float]()
    """Angle of the drone's station on its circle around the herd (radians)."""

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

    @property
    def leader(self) -> Herd:
        """The agent the drone circles (its herd)."""
        return self.herd

    def _station(self) -> np.ndarray:
        offset = self.orbit_m * np.array([np.cos(self.phase), np.sin(self.phase)])
        return np.asarray(self.herd.position + offset, dtype=float)

    def move(self, dt_s: float) -> None:
        """Fly towards a point on a circle around the herd (the circle turns slowly)."""
        self.phase += self.orbit_rate_rad_s * dt_s
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
