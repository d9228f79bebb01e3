"""Split inference (3.2.3.1): service accuracy, latency, energy and efficiency per split point, best split."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple

import numpy as np
import numpy.typing as npt

from twin.kpi.common import (
    ComputeProfile,
    FloatArray,
    KpiInputError,
    LinkProfile,
    check_non_negative,
    check_positive,
    check_probability,
    compute_energy_j,
    compute_latency_s,
    transmission_energy_j,
    transmission_latency_s,
)

SplitObjective = Literal["latency", "energy", "weighted"]


def service_accuracy(model_accuracy: npt.ArrayLike, link_reliability: npt.ArrayLike) -> FloatArray:
    """Service accuracy ``a = a_m * r_c``: model accuracy times link reliability (3.2.3.1), both in [0, 1]."""
    return check_probability("model_accuracy", model_accuracy) * check_probability(
        "link_reliability", link_reliability
    )


class SplitPoint(NamedTuple):
    """Work and data of one split point: FLOPs on the device, bits sent, FLOPs in the network."""

    ue_flops: float
    tx_bits: float
    net_flops: float


@dataclass(frozen=True, slots=True)
class SplitProfile:
    """A model's candidate split points (Table 3-13 inputs) and the size of its raw input ``D0``.

    Split point 0 sends the raw input and runs everything in the network; the last one runs everything
    on the device and sends nothing.
    """

    points: tuple[SplitPoint, ...]
    raw_input_bits: float
    name: str = "model"

    def __post_init__(self) -> None:
        if not self.points:
            raise KpiInputError(f"SplitProfile {self.name!r} needs at least one split point, got none")
        check_non_negative("SplitProfile points", [tuple(p) for p in self.points])
        check_positive("raw_input_bits", self.raw_input_bits)

    @property
    def ue_flops(self) -> FloatArray:
        """Device FLOPs per split point."""
        return np.array([p.ue_flops for p in self.points], dtype=np.float64)

    @property
    def tx_bits(self) -> FloatArray:
        """Bits sent to the network per split point."""
        return np.array([p.tx_bits for p in self.points], dtype=np.float64)

    @property
    def net_flops(self) -> FloatArray:
        """Network FLOPs per split point."""
        return np.array([p.net_flops for p in self.points], dtype=np.float64)


@dataclass(frozen=True, slots=True, eq=False)
class SplitInferenceCost:
    """Latency and energy of split inference, one entry per split point (3.2.3.1)."""

    ue_latency_s: FloatArray
    tx_latency_s: FloatArray
    net_latency_s: FloatArray
    ue_energy_j: FloatArray
    tx_energy_j: FloatArray
    net_energy_j: FloatArray
    raw_input_bits: float

    @property
    def total_latency_s(self) -> FloatArray:
        """Service response latency ``T = O_UE/F_UE + D/R + O_NET/F_NET``."""
        return self.ue_latency_s + self.tx_latency_s + self.net_latency_s

    @property
    def total_energy_j(self) -> FloatArray:
        """System energy ``E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET``."""
        return self.ue_energy_j + self.tx_energy_j + self.net_energy_j

    @property
    def efficiency_bits_per_j(self) -> FloatArray:
        """Service energy efficiency ``EE = D0 / E`` (raw input bits per joule)."""
        with np.errstate(divide="ignore"):
            return self.raw_input_bits / self.total_energy_j


def split_inference_cost(
    profile: SplitProfile, *, link: LinkProfile, ue: ComputeProfile, net: ComputeProfile
) -> SplitInferenceCost:
    """Latency, energy and efficiency of every split point of ``profile`` (3.2.3.1).

    Args:
        profile: FLOPs and bits per split point, and the raw input size ``D0``.
        link: rate and power of the device-network link (the direction the split data travels).
        ue: the device's compute.
        net: the network's compute.

    Returns:
        Arrays over the split points; totals and efficiency are properties.

    """
    ue_flops, tx_bits, net_flops = profile.ue_flops, profile.tx_bits, profile.net_flops
    return SplitInferenceCost(
        ue_latency_s=compute_latency_s(ue_flops, ue.flops_per_s),
        tx_latency_s=transmission_latency_s(tx_bits, link.rate_bps),
        net_latency_s=compute_latency_s(net_flops, net.flops_per_s),
        ue_energy_j=compute_energy_j(ue_flops, ue.efficiency_flops_per_j),
        tx_energy_j=transmission_energy_j(tx_bits, link.efficiency_bits_per_j),
        net_energy_j=compute_energy_j(net_flops, net.efficiency_flops_per_j),
        raw_input_bits=profile.raw_input_bits,
    )


def split_objective(
    cost: SplitInferenceCost, objective: SplitObjective = "latency", *, latency_weight: float = 0.5
) -> FloatArray:
    """Return the value to minimise per split point.

    ``"latency"`` is ``T``, ``"energy"`` is ``E``; ``"weighted"`` is
    ``w * T / min(T) + (1 - w) * E / min(E)`` with ``w = latency_weight``: both terms are normalised by
    their best value over the split points so that seconds and joules can be added.
    """
    if objective == "latency":
        return cost.total_latency_s
    if objective == "energy":
        return cost.total_energy_j
    if objective != "weighted":
        raise KpiInputError(f"objective must be 'latency', 'energy' or 'weighted', got {objective!r}")
    weight = float(check_probability("latency_weight", latency_weight))
    return weight * _normalised(cost.total_latency_s) + (1.0 - weight) * _normalised(cost.total_energy_j)


def _normalised(values: FloatArray) -> FloatArray:
    finite_positive = values[np.isfinite(values) & (values > 0)]
    return values / (finite_positive.min() if finite_positive.size else 1.0)


def choose_split(
    cost: SplitInferenceCost, objective: SplitObjective = "latency", *, latency_weight: float = 0.5
) -> int:
    """Index of the split point that minimises :func:`split_objective`; ties go to the lower index."""
    return int(np.argmin(split_objective(cost, objective, latency_weight=latency_weight)))
