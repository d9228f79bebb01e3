"""Service coverage and service density over an area (3.2.3.1/3.2.3.2)."""

from __future__ import annotations

import numpy as np
import numpy.typing as npt

from twin.kpi.common import FloatArray, KpiInputError, check_non_negative, check_positive, check_probability


def coverage_share(meets_target: npt.ArrayLike, cell_area_m2: npt.ArrayLike | None = None) -> float:
    """Share of the area where the service target is met, from a grid of booleans (3.2.3.1).

    Args:
        meets_target: one boolean per grid cell (any shape).
        cell_area_m2: area of each cell (broadcastable to ``meets_target``); equal cells when ``None``.

    """
    mask = np.asarray(meets_target, dtype=bool)
    if mask.size == 0:
        raise KpiInputError("meets_target must have at least one grid cell, got an empty array")
    area = np.broadcast_to(
        check_non_negative("cell_area_m2", 1.0 if cell_area_m2 is None else cell_area_m2), mask.shape
    )
    total = float(area.sum())
    if total <= 0:
        raise KpiInputError(f"cell_area_m2 must sum to > 0, got {total}")
    return float(area[mask].sum() / total)


def service_coverage(
    rate_bps: npt.ArrayLike,
    accuracy: npt.ArrayLike,
    *,
    min_rate_bps: float,
    min_accuracy: float,
    cell_area_m2: npt.ArrayLike | None = None,
) -> float:
    """Service coverage ``Area(R >= R0 and a >= a0) / total area`` over a simulated grid (3.2.3.1)."""
    rate = check_non_negative("rate_bps", rate_bps)
    acc = check_probability("accuracy", accuracy)
    mask = (rate >= check_non_negative("min_rate_bps", min_rate_bps)) & (
        acc >= check_probability("min_accuracy", min_accuracy)
    )
    return coverage_share(mask, cell_area_m2)


def area_traffic_capacity_bps_per_km2(
    site_density_per_km2: npt.ArrayLike, bandwidth_hz: npt.ArrayLike, mean_spectral_efficiency: npt.ArrayLike
) -> FloatArray:
    """Area transmission capacity ``C_comm = rho_comm * W * SE_avg`` (3.2.3.1); SE in bit/s/Hz."""
    return (
        check_non_negative("site_density_per_km2", site_density_per_km2)
        * check_non_negative("bandwidth_hz", bandwidth_hz)
        * check_non_negative("mean_spectral_efficiency", mean_spectral_efficiency)
    )


def area_compute_capacity_bps_per_km2(
    node_density_per_km2: npt.ArrayLike,
    flops_per_s: npt.ArrayLike,
    flops_per_sample: npt.ArrayLike,
    raw_input_bits: npt.ArrayLike,
    epochs: npt.ArrayLike = 1.0,
) -> FloatArray:
    """Area inference (or training) capacity ``C_comp = rho_comp * F / (O * M_epoch) * D0`` (3.2.3.1/2).

    ``epochs`` is ``M_epoch`` for a training service and 1 for inference.
    """
    samples_per_s = check_non_negative("flops_per_s", flops_per_s) / (
        check_positive("flops_per_sample", flops_per_sample) * check_positive("epochs", epochs)
    )
    return (
        check_non_negative("node_density_per_km2", node_density_per_km2)
        * samples_per_s
        * check_non_negative("raw_input_bits", raw_input_bits)
    )


def service_density_bps_per_km2(
    traffic_capacity: npt.ArrayLike, compute_capacity: npt.ArrayLike
) -> FloatArray:
    """Service density ``C_area = min(C_comm, C_comp)`` (3.2.3.1), in bit/s/km²."""
    return np.minimum(
        check_non_negative("traffic_capacity", traffic_capacity),
        check_non_negative("compute_capacity", compute_capacity),
    )
