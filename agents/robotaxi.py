"""Robotaxi (paper §2.3.1): cruises a Manhattan street grid, turning at random at intersections."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace

from agents.device import Device
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.mobility import HEADINGS, TURN_PROBS, FleetField, StreetFleet
from twin.rng import counter_uniforms

if TYPE_CHECKING:
    from twin.model import TwinModel


class Robotaxi(Device):
    """A self-driving taxi with a vehicle computer, moving along streets ``block_m`` apart.

    The model moves all taxis at once (:class:`twin.mobility.StreetFleet`, the same paths as
    :meth:`move`). Turns use the taxi's own counter-based stream: draw ``k`` is
    ``counter_uniforms(turn_key, k)``, ``turn_key`` drawn from ``rng`` after the start and heading, so a
    taxi's path depends on nothing but its own stream.
    """

    kind: ClassVar[str] = "robotaxi"
    mobility_fleet = StreetFleet
    heading = FleetField[int]()
    """Direction of travel: 0 east, 1 north, 2 west, 3 south."""
    turns_drawn = FleetField[int]()
    """Draws of the turn stream used so far."""

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        block_m: float,
        speed_mps: float,
        rng: np.random.Generator,
        compute: ComputeProfile,
        data: LocalData,
    ) -> None:
        if block_m <= 0 or speed_mps <= 0:
            raise ValueError(f"block_m and speed_mps must be > 0, got {block_m}, {speed_mps}")
        self.block_m = block_m
        self.speed_mps = speed_mps
        width, height = space.size
        self._limits = (np.floor(width / block_m) * block_m, np.floor(height / block_m) * block_m)
        cols, rows = int(self._limits[0] // block_m), int(self._limits[1] // block_m)
        start = np.array([rng.integers(0, cols + 1), rng.integers(0, rows + 1)], dtype=float) * block_m
        self.heading = int(rng.integers(0, 4))
        self.turn_key = int(rng.integers(0, 2**64, dtype=np.uint64))
        self.turns_drawn = 0
        super().__init__(
            model,
            space,
            agent_id=agent_id,
            position_m=(float(start[0]), float(start[1])),
            height_m=1.5,
            compute=compute,
            data=data,
        )

    def move(self, dt_s: float) -> None:
        """Drive ``speed × dt`` metres, choosing a new street at every intersection passed."""
        remaining = self.speed_mps * dt_s
        pos = np.array(self.position, dtype=float)
        while remaining > 1e-9:
            direction = HEADINGS[self.heading]
            along = float(pos @ np.abs(direction))
            forward = float(direction @ np.ones(2)) > 0
            to_next = (
                (self.block_m - along % self.block_m) if forward else (along % self.block_m or self.block_m)
            )
            if not self._inside(pos + direction * to_next):  # this street ends at the map's edge
                pos = np.round(pos / self.block_m) * self.block_m
                self.heading = self._turn(pos)
                continue
            step = min(remaining, to_next)
            pos = pos + direction * step
            remaining -= step
            if step == to_next:
                pos = np.round(pos / self.block_m) * self.block_m  # exactly on the intersection
                self.heading = self._turn(pos)
        self.position = pos

    def _turn(self, pos: np.ndarray) -> int:
        """Straight (60 %), left or right (20 % each); never off the map."""
        options = [self.heading, (self.heading + 1) % 4, (self.heading + 3) % 4]
        allowed = [self._inside(pos + HEADINGS[h] * self.block_m) for h in options]
        if not any(allowed):
            return (self.heading + 2) % 4  # dead end: U-turn
        u = float(counter_uniforms(self.turn_key, self.turns_drawn)[0])
        self.turns_drawn += 1
        probs = TURN_PROBS * np.array(allowed, dtype=float)
        cdf = np.cumsum(probs / probs.sum())
        cdf /= cdf[-1]
        return int(options[int(np.searchsorted(cdf, u, side="right"))])  # as Generator.choice(3, p=…)

    def _inside(self, point: np.ndarray) -> bool:
        return bool(0 <= point[0] <= self._limits[0] and 0 <= point[1] <= self._limits[1])
