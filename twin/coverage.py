"""Service coverage map (SPEC §6-7).

A grid cell is covered where the link meets the rate target and the service accuracy there (model
accuracy on that place's data × link reliability) meets the accuracy target.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from twin.kpi import service_coverage
from twin.links import CoverageGrid


@dataclass(frozen=True, slots=True, eq=False)
class CoverageMap:
    """Per grid cell: rate, model accuracy, service accuracy, covered; and the covered share."""

    grid: CoverageGrid
    rate_bps: npt.NDArray[np.float64]
    model_accuracy: npt.NDArray[np.float64]
    service_accuracy: npt.NDArray[np.float64]
    covered: npt.NDArray[np.bool_]
    share: float


def coverage_map(
    grid: CoverageGrid,
    *,
    device_xy: np.ndarray,
    device_accuracy: np.ndarray,
    device_samples: np.ndarray,
    regional_accuracy: float,
    min_rate_bps: float,
    min_accuracy: float,
    direction: Literal["uplink", "downlink"] = "uplink",
) -> CoverageMap:
    """Coverage of a service over ``grid``.

    A cell's model accuracy is the sample-weighted accuracy of the model on the data of the devices
    located in it; cells without devices take the accuracy on the region's held-out data.
    """
    shape = grid.reliability.shape
    correct = np.zeros(shape)
    samples = np.zeros(shape)
    if len(device_xy):
        rows, cols = grid.cell_of(device_xy)
        np.add.at(correct, (rows, cols), device_accuracy * device_samples)
        np.add.at(samples, (rows, cols), device_samples)
    with np.errstate(invalid="ignore", divide="ignore"):
        accuracy = np.where(samples > 0, correct / np.maximum(samples, 1e-12), regional_accuracy)
    rate = grid.uplink_bps if direction == "uplink" else grid.downlink_bps
    service = accuracy * grid.reliability
    covered = (rate >= min_rate_bps) & (service >= min_accuracy)
    share = service_coverage(rate, service, min_rate_bps=min_rate_bps, min_accuracy=min_accuracy)
    return CoverageMap(grid, rate, accuracy, service, covered, float(share))
