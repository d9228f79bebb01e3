"""Input checks, compute and link profiles, and the latency/energy/CO2 formulas all services use (3.2.3)."""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.errors import TwinError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

JOULES_PER_KWH = 3.6e6


class KpiInputError(TwinError, ValueError):
    """A KPI formula got a value outside its domain (negative size, zero FLOP/s, accuracy above 1, ...)."""


def _show(arr: FloatArray, bad: BoolArray) -> str:
    if arr.ndim == 0:
        return repr(float(arr))
    shown = arr[bad][:3].tolist()
    return f"{shown} (at {int(bad.sum())} of {arr.size} positions)"


def _check(name: str, value: npt.ArrayLike, *, low: float, strict: bool, high: float = np.inf) -> FloatArray:
    arr = np.asarray(value, dtype=np.float64)
    below = arr <= low if strict else arr < low
    bad = below | (arr > high) | np.isnan(arr) | (np.isinf(arr) & (high != np.inf))
    if np.any(bad):
        rule = f"> {low:g}" if strict else f">= {low:g}"
        if high != np.inf:
            rule += f" and <= {high:g}"
        raise KpiInputError(f"{name} must be {rule}, got {_show(arr, bad)}")
    return arr


def check_non_negative(name: str, value: npt.ArrayLike) -> FloatArray:
    """Return ``value`` as floats; raise :class:`KpiInputError` naming ``name`` if an entry is < 0."""
    return _check(name, value, low=0.0, strict=False)


def check_positive(name: str, value: npt.ArrayLike) -> FloatArray:
    """Return ``value`` as floats; raise :class:`KpiInputError` naming ``name`` if an entry is <= 0."""
    return _check(name, value, low=0.0, strict=True)


def check_probability(name: str, value: npt.ArrayLike) -> FloatArray:
    """Return ``value`` as floats; raise :class:`KpiInputError` naming ``name`` if not in [0, 1]."""
    return _check(name, value, low=0.0, strict=False, high=1.0)


def safe_ratio(numerator: FloatArray, denominator: FloatArray) -> FloatArray:
    """``numerator / denominator`` with 0 where nothing is to be done and inf where it cannot be done."""
    with np.errstate(divide="ignore", invalid="ignore"):
        return np.where(numerator == 0, 0.0, numerator / denominator)


def compute_efficiency_flops_per_j(flops_per_s: npt.ArrayLike, power_w: npt.ArrayLike) -> FloatArray:
    """Compute energy efficiency ``EE_comp = F / P_comp`` (3.2.3.1), in FLOP/J."""
    return check_positive("flops_per_s", flops_per_s) / check_positive("power_w", power_w)


def comm_efficiency_bits_per_j(rate_bps: npt.ArrayLike, power_w: npt.ArrayLike) -> FloatArray:
    """Communication energy efficiency ``EE_comm = R / P_comm`` (3.2.3.1), in bit/J.

    A rate of 0 (no connectivity) gives an efficiency of 0: any bit to send costs infinite energy.
    """
    return check_non_negative("rate_bps", rate_bps) / check_positive("power_w", power_w)


@dataclass(frozen=True, slots=True)
class ComputeProfile:
    """A compute node (Table 3-11): its speed and the power it draws while computing."""

    flops_per_s: float
    """Computing speed of the node."""
    power_w: float
    """Power the node draws while computing."""

    def __post_init__(self) -> None:
        check_positive("flops_per_s", self.flops_per_s)
        check_positive("power_w", self.power_w)

    @property
    def efficiency_flops_per_j(self) -> float:
        """``EE_comp = F / P_comp`` in FLOP/J (both checked > 0 when the profile was made)."""
        return float(self.flops_per_s) / float(self.power_w)


@dataclass(frozen=True, slots=True)
class LinkProfile:
    """A radio link (Table 3-10): its data rate and the total power spent to carry it.

    ``rate_bps == 0`` means no connectivity; ``power_w`` must be > 0.
    """

    rate_bps: float
    power_w: float

    def __post_init__(self) -> None:
        check_non_negative("rate_bps", self.rate_bps)
        check_positive("power_w", self.power_w)

    @property
    def efficiency_bits_per_j(self) -> float:
        """``EE_comm = R / P_comm`` in bit/J."""
        return float(comm_efficiency_bits_per_j(self.rate_bps, self.power_w))


def compute_latency_s(flops: npt.ArrayLike, flops_per_s: npt.ArrayLike) -> FloatArray:
    """Return the computation latency ``T_comp = O / F`` (3.2.3.1)."""
    return check_non_negative("flops", flops) / check_positive("flops_per_s", flops_per_s)


def compute_energy_j(flops: npt.ArrayLike, efficiency_flops_per_j: npt.ArrayLike) -> FloatArray:
    """Return the computation energy ``E_comp = O / EE_comp`` (3.2.3.1)."""
    return check_non_negative("flops", flops) / check_positive(
        "efficiency_flops_per_j", efficiency_flops_per_j
    )


def transmission_latency_s(bits: npt.ArrayLike, rate_bps: npt.ArrayLike) -> FloatArray:
    """Transmission latency ``T_comm = D / R`` (3.2.3.1); 0 when nothing is sent, inf when ``R = 0 < D``."""
    return safe_ratio(check_non_negative("bits", bits), check_non_negative("rate_bps", rate_bps))


def transmission_energy_j(bits: npt.ArrayLike, efficiency_bits_per_j: npt.ArrayLike) -> FloatArray:
    """Transmission energy ``E_comm = D / EE_comm`` (3.2.3.1); 0 if nothing is sent, inf if ``EE = 0 < D``."""
    return safe_ratio(
        check_non_negative("bits", bits), check_non_negative("efficiency_bits_per_j", efficiency_bits_per_j)
    )


def co2_kg(energy_j: npt.ArrayLike, ecr_kg_per_kwh: npt.ArrayLike) -> FloatArray:
    """CO2 equivalent ``CO2eq = E * ECR`` (3.2.3.1), with E converted from J to kWh."""
    return (
        check_non_negative("energy_j", energy_j)
        / JOULES_PER_KWH
        * check_non_negative("ecr_kg_per_kwh", ecr_kg_per_kwh)
    )
