"""Links of the world's devices: the radio model plus resource sharing in each cell.

Wraps :func:`twin.radio.compute_links` (full-band rates) and turns them into what each device gets
when its cell's resources are shared equally among the devices it serves, with a TDD split between
downlink and uplink. Shadowing is a spatially correlated field that follows moving devices.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.radio import RadioConfig, ShadowingField, compute_links
from twin.settings import LinkConfig


@dataclass(frozen=True, slots=True, eq=False)
class LinkSnapshot:
    """Per-device link state (arrays of length N, device order)."""

    serving_cell_ids: npt.NDArray[np.str_]
    sinr_db: npt.NDArray[np.float64]
    downlink_bps: npt.NDArray[np.float64]
    uplink_bps: npt.NDArray[np.float64]
    reliability: npt.NDArray[np.float64]
    cell_share: npt.NDArray[np.int64]


class LinkModel:
    """Keeps the shadowing field and last positions; recomputes links when devices move."""

    def __init__(
        self,
        radio: RadioConfig,
        link: LinkConfig,
        bs_xyz: np.ndarray,
        bs_ids: list[str],
        rng: np.random.Generator,
    ) -> None:
        self.radio = radio
        self.link = link
        self.bs_xyz = bs_xyz
        self.bs_ids = np.array(bs_ids)
        self._rng = rng
        self._field: ShadowingField | None = None
        self._last_xyz: np.ndarray | None = None
        self.last: LinkSnapshot | None = None

    def update(self, ue_xyz: np.ndarray) -> LinkSnapshot:
        """Links of devices at ``ue_xyz`` (N, 3); shadowing decorrelates with the distance moved."""
        if self._field is None or self._last_xyz is None or self._field.shape[0] != len(ue_xyz):
            self._field = ShadowingField.draw(len(ue_xyz), len(self.bs_xyz), self._rng)
        else:
            moved = np.linalg.norm(ue_xyz[:, :2] - self._last_xyz[:, :2], axis=1)
            if np.any(moved > 0):
                self._field = self._field.moved(moved, self.radio, self._rng)
        self._last_xyz = ue_xyz.copy()
        state = compute_links(ue_xyz, self.bs_xyz, self.radio, shadowing=self._field)
        share = np.bincount(state.serving_cell, minlength=len(self.bs_xyz))[state.serving_cell]
        ul = self.link.uplink_share
        self.last = LinkSnapshot(
            serving_cell_ids=self.bs_ids[state.serving_cell],
            sinr_db=state.sinr_db,
            downlink_bps=state.rate_bps * (1.0 - ul) / share,
            uplink_bps=state.uplink_rate_bps * ul / share,
            reliability=state.reliability * state.uplink_reliability,
            cell_share=share.astype(np.int64),
        )
        return self.last

    def coverage_grid(self, resolution_m: float, width_m: float, height_m: float) -> tuple[np.ndarray, ...]:
        """Downlink rate (full cell, bit/s), SINR (dB) and reliability on a grid, for maps and coverage."""
        xs = np.arange(resolution_m / 2, width_m, resolution_m)
        ys = np.arange(resolution_m / 2, height_m, resolution_m)
        gx, gy = np.meshgrid(xs, ys)
        pts = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, self.radio.ue_height_m)])
        state = compute_links(pts, self.bs_xyz, self.radio)
        shape = gx.shape
        return (
            xs,
            ys,
            state.rate_bps.reshape(shape) * (1.0 - self.link.uplink_share),
            state.sinr_db.reshape(shape),
            (state.reliability * state.uplink_reliability).reshape(shape),
        )
