"""Industrial robot (paper §2.3.2): a mobile robot with a camera, an arm and a micro-computer on its line.

The robot shuttles back and forth along its production line (a polyline in the hall) between the
stations of its production step, so its distance and line of sight to the ceiling small cells change as
it works. Its step is the cluster whose global model it trains and uses.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace

from agents.drone import InspectionDrone
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData

if TYPE_CHECKING:
    from twin.model import TwinModel


class FactoryRobot(InspectionDrone):
    """A robot moving along its production line at constant speed, camera at ``camera_height_m``.

    It reuses the drone's polyline mobility (out and back along ``route_m``): the line is its route.
    """

    kind: ClassVar[str] = "robot"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        line_m: np.ndarray,
        start_fraction: float,
        speed_mps: float,
        camera_height_m: float,
        compute: ComputeProfile,
        data: LocalData,
        step: int,
        step_name: str,
    ) -> None:
        super().__init__(
            model,
            space,
            agent_id=agent_id,
            route_m=line_m,
            start_fraction=start_fraction,
            speed_mps=speed_mps,
            altitude_m=camera_height_m,
            compute=compute,
            data=data,
            landscape=step_name,
        )
        self.step = step
        self.step_name = step_name

    def telemetry(self) -> dict[str, float | int | str]:
        """The device's telemetry plus its production step."""
        return {**super().telemetry(), "production_step": self.step_name}
