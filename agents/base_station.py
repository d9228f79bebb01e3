"""Base station (gNB) agent: a position, a radio, and an attached edge server."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace, ContinuousSpaceAgent

from twin.kpi import ComputeProfile

if TYPE_CHECKING:
    from twin.model import TwinModel


class BaseStation(ContinuousSpaceAgent):
    """A gNB with edge compute (SPEC §2); devices attach to the one with the best signal."""

    kind: ClassVar[str] = "gnb"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        height_m: float,
        edge: ComputeProfile,
    ) -> None:
        super().__init__(space, model)
        self.agent_id = agent_id
        self.position = np.asarray(position_m, dtype=float)
        self.height_m = height_m
        self.edge = edge
        self.served: int = 0

    def telemetry(self) -> dict[str, float | int | str]:
        """Flat telemetry fields of this base station."""
        x, y = (float(v) for v in self.position)
        return {
            "x_m": x,
            "y_m": y,
            "z_m": self.height_m,
            "served_devices": self.served,
            "edge_flops_per_s": self.edge.flops_per_s,
        }
