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
        self._last_los: np.ndarray | None = None
        self.last: LinkSnapshot | None = None

    def update(self, ue_xyz: np.ndarray) -> LinkSnapshot:
        """Links of devices at ``ue_xyz`` (N, 3); shadowing decorrelates with the distance moved."""
        if self._field is None or self._last_xyz is None or self._field.shape[0] != len(ue_xyz):
            self._field = ShadowingField.draw(len(ue_xyz), len(self.bs_xyz), self._rng)
        else:
            moved = np.linalg.norm(ue_xyz[:, :2] - self._last_xyz[:, :2], axis=1)
            if np.any(moved > 0):
                self._field = self._field.moved(moved, self.radio, self._rng, los=self._last_los)
        self._last_xyz = ue_xyz.copy()
        state = compute_links(ue_xyz, self.bs_xyz, self.radio, shadowing=self._field)
        self._last_los = state.los
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

    def coverage_grid(
        self, resolution_m: float, width_m: float, height_m: float, *, ue_height_m: float | None = None
    ) -> CoverageGrid:
        """Full-cell rates (as if alone in the cell), SINR and reliability on a grid of square cells.

        ``ue_height_m`` is the height of the grid's receivers (default: the radio's UE height); drones
        are covered at their flight altitude.
        """
        if resolution_m <= 0:
            raise ValueError(f"grid resolution must be > 0 m, got {resolution_m}")
        xs = np.arange(resolution_m / 2, width_m, resolution_m)
        ys = np.arange(resolution_m / 2, height_m, resolution_m)
        gx, gy = np.meshgrid(xs, ys)
        height = self.radio.ue_height_m if ue_height_m is None else ue_height_m
        pts = np.column_stack([gx.ravel(), gy.ravel(), np.full(gx.size, height)])
        state = compute_links(pts, self.bs_xyz, self.radio)
        shape = gx.shape
        ul = self.link.uplink_share
        return CoverageGrid(
            xs=xs,
            ys=ys,
            resolution_m=resolution_m,
            downlink_bps=(state.rate_bps * (1.0 - ul)).reshape(shape),
            uplink_bps=(state.uplink_rate_bps * ul).reshape(shape),
            sinr_db=state.sinr_db.reshape(shape),
            reliability=(state.reliability * state.uplink_reliability).reshape(shape),
            serving_cell=state.serving_cell.reshape(shape),
        )


@dataclass(frozen=True, slots=True, eq=False)
class CoverageGrid:
    """Radio over a grid: arrays (len(ys), len(xs)), cell centres ``xs``/``ys`` in metres."""

    xs: npt.NDArray[np.float64]
    ys: npt.NDArray[np.float64]
    resolution_m: float
    downlink_bps: npt.NDArray[np.float64]
    uplink_bps: npt.NDArray[np.float64]
    sinr_db: npt.NDArray[np.float64]
    reliability: npt.NDArray[np.float64]
    serving_cell: npt.NDArray[np.int64]

    def cell_of(self, xy: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Row and column indices of the grid cells holding points ``xy`` (N, 2)."""
        col = np.clip((xy[:, 0] // self.resolution_m).astype(int), 0, len(self.xs) - 1)
        row = np.clip((xy[:, 1] // self.resolution_m).astype(int), 0, len(self.ys) - 1)
        return row, col
