"""The device base class every device kind shares: compute, local data and model, radio link, energy.

A device's round is a timeline on the simulated clock — download the global model, train, upload —
whose durations come from modelled compute (FLOPs ÷ FLOP/s) and transfers (bits ÷ rate), SPEC §7.
"""

from __future__ import annotations

from dataclasses import dataclass
from enum import StrEnum
from typing import TYPE_CHECKING, ClassVar

import numpy as np
from mesa.experimental.continuous_space import ContinuousSpace, ContinuousSpaceAgent

from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.mobility import Fleet, Stationary

if TYPE_CHECKING:
    from twin.model import TwinModel


class DeviceState(StrEnum):
    """What a device is doing now (drawn by the visualisation, sent in telemetry)."""

    IDLE = "idle"
    DOWNLOADING = "downloading"
    TRAINING = "training"
    SENDING = "sending"
    STRAGGLER = "straggler"
    OFFLINE = "offline"
    ESCALATED = "escalated"


@dataclass(frozen=True, slots=True)
class RoundTiming:
    """Modelled timeline of one device in one round (simulated seconds, from round start)."""

    download_s: float
    compute_s: float
    upload_s: float

    @property
    def total_s(self) -> float:
        """Time until the update has fully arrived at the network."""
        return self.download_s + self.compute_s + self.upload_s


class Device(ContinuousSpaceAgent):
    """Base class of all device kinds."""

    kind: ClassVar[str] = "device"
    mobility_fleet: ClassVar[type[Fleet] | None] = Stationary
    """The fleet that moves devices of this class as arrays (``twin.mobility``); ``None``: each device
    moves through its own :meth:`move`. A subclass overriding ``move`` moves itself whatever this says."""

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
        super().__init__(space, model)
        self.agent_id = agent_id
        self.position = np.asarray(position_m, dtype=float)
        self.height_m = height_m
        self.compute = compute
        self.data = data
        self.escalated_until_s: float = float("-inf")
        self.serving_cell: str = ""
        self.downlink_bps: float = 0.0
        self.uplink_bps: float = 0.0
        self.sinr_db: float = float("-inf")
        self.reliability: float = 0.0
        self._round_start_s: float = 0.0
        self._timing: RoundTiming | None = None
        self._fixed_state: DeviceState | None = None

    @property
    def n_samples(self) -> int:
        """Number of local training samples."""
        return int(self.data.y.shape[0])

    def move(self, dt_s: float) -> None:
        """Advance the device's mobility by ``dt_s`` seconds (fixed devices do nothing).

        Override it in a device class of your own to move it; the model calls it once per simulated
        second for every device that no vectorised fleet moves (``twin.mobility``).
        """

    def plan_round(
        self, start_s: float, *, download_bits: float, train_flops: float, upload_bits: float
    ) -> RoundTiming:
        """Model this round's timeline from the current link and compute profile."""
        timing = RoundTiming(
            download_s=_transfer_s(download_bits, self.downlink_bps),
            compute_s=train_flops / self.compute.flops_per_s,
            upload_s=_transfer_s(upload_bits, self.uplink_bps),
        )
        self.set_round(start_s, timing)
        return timing

    def set_round(self, start_s: float, timing: RoundTiming) -> None:
        """Take part in a round starting at ``start_s`` with this modelled timeline (for its state)."""
        self._round_start_s, self._timing, self._fixed_state = start_s, timing, None

    def escalate(self, now_s: float, latency_s: float) -> None:
        """Mark an escalation to the network, shown for at least one simulated second (one step)."""
        self.escalated_until_s = now_s + max(latency_s, 1.0)

    def mark(self, state: DeviceState | None) -> None:
        """Pin a state (offline, straggler) until the next round; ``None`` unpins."""
        self._fixed_state = state

    def end_round(self) -> None:
        """Back to idle after the network closed the round."""
        self._timing, self._fixed_state = None, None

    def state_at(self, time_s: float) -> DeviceState:
        """State at simulated time ``time_s`` according to this round's timeline."""
        if self._fixed_state is not None and self._fixed_state is not DeviceState.STRAGGLER:
            return self._fixed_state
        if time_s < self.escalated_until_s:
            return DeviceState.ESCALATED
        timing = self._timing
        if timing is None:
            return DeviceState.IDLE
        t = time_s - self._round_start_s
        if t < timing.download_s:
            return DeviceState.DOWNLOADING
        if t < timing.download_s + timing.compute_s:
            return DeviceState.TRAINING
        if t < timing.total_s:
            return self._fixed_state or DeviceState.SENDING
        return self._fixed_state or DeviceState.IDLE

    @property
    def state(self) -> DeviceState:
        """State now."""
        return self.state_at(self.model.time)

    def telemetry(self) -> dict[str, float | int | str]:
        """Flat telemetry fields of this device (O(1): the energy total is the ledger's cached one)."""
        x, y = self.position.tolist()
        sinr_db = self.sinr_db
        return {
            "x_m": x,
            "y_m": y,
            "z_m": self.height_m,
            "state": self.state_at(self.model.time).value,
            "serving_cell": self.serving_cell,
            "sinr_db": sinr_db if abs(sinr_db) < float("inf") else -999.0,  # _finite without numpy
            "downlink_bps": self.downlink_bps,
            "uplink_bps": self.uplink_bps,
            "reliability": self.reliability,
            "n_samples": self.n_samples,
            "energy_j": self.model.energy.total(self.agent_id),
        }


def _transfer_s(bits: float, rate_bps: float) -> float:
    return float("inf") if rate_bps <= 0 else bits / rate_bps


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -999.0
