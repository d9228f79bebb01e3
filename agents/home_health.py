"""Home-health device (paper §2.3.4): a low-capability sensor hub at a fixed home."""

from __future__ import annotations

from typing import TYPE_CHECKING, ClassVar

from mesa.experimental.continuous_space import ContinuousSpace

from agents.device import Device
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData

if TYPE_CHECKING:
    from twin.model import TwinModel


class HomeHealthDevice(Device):
    """Wearable + home hub: senses vital signs and motion, trains locally, reports anomalies."""

    kind: ClassVar[str] = "home-health"

    def __init__(
        self,
        model: TwinModel,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        compute: ComputeProfile,
        data: LocalData,
        resting_hr_bpm: float,
    ) -> None:
        super().__init__(
            model, space, agent_id=agent_id, position_m=position_m, height_m=1.5, compute=compute, data=data
        )
        self.resting_hr_bpm = resting_hr_bpm
