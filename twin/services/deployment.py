"""Model deployment (paper §2.4.6): where each device's model runs (device, edge, cloud), at what cost.

The network decides the placement and reports the latency and energy the decision causes.

Each :class:`InferenceDemand` is a device's recurring request: ``rows`` samples of ``input_bits_per_row``
each, ``flops_per_row`` of the full model per sample, a deadline, and — when a compressed variant fits
the device (:mod:`twin.services.compression`) — that variant's work, speed-up and energy ratio. The
three placements follow SPEC §7 (paper §3.2.3.1), ``T = O_UE/F_UE + D/R + O_NET/F_NET`` and
``E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET``:

- **device**: ``O_UE`` = the variant's work (÷ its speed-up), ``D = 0``, ``O_NET = 0``;
- **edge** (the serving base station's server): ``O_UE = 0``, ``D`` = the request's input over the
  device's uplink, ``O_NET`` on the edge;
- **cloud**: as edge, plus the backhaul hop (``D / R_backhaul`` + its one-way delay, energy
  ``D / EE_backhaul``), ``O_NET`` on the cloud's compute.

:func:`decide` keeps the placements that meet the deadline and takes the one using the least energy
(ties: the lower latency, then device → edge → cloud); when none meets it, the fastest. A device with
no fitting variant cannot host the model. Pure: no bus, no I/O.
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile, LinkProfile
from twin.kpi.common import compute_energy_j, compute_latency_s, transmission_energy_j, transmission_latency_s
from twin.qoais import Indicator, ServiceReport, graded_indicators

Placement = Literal["device", "edge", "cloud"]
PLACEMENTS: tuple[Placement, ...] = ("device", "edge", "cloud")


def _cloud() -> ComputeProfile:
    return ComputeProfile(flops_per_s=200e12, power_w=3000.0)


@dataclass(frozen=True, slots=True)
class DeploymentConfig:
    """The cloud and the backhaul that leads to it (the edge is the run's edge compute)."""

    cloud: ComputeProfile = field(default_factory=_cloud)
    """Cloud compute (assumption: a GPU server, 200 TFLOP/s at 3 kW)."""
    backhaul_bps: float = 10e9
    """Backhaul rate from the base station to the cloud."""
    backhaul_power_w: float = 200.0
    """Power of the backhaul while carrying traffic (its EE_comm = R / P)."""
    backhaul_delay_s: float = 0.01
    """One-way propagation and switching delay to the cloud."""

    def __post_init__(self) -> None:
        check_positive("deployment", backhaul_bps=self.backhaul_bps, backhaul_power_w=self.backhaul_power_w)
        check_range("deployment", "backhaul_delay_s", self.backhaul_delay_s, 0.0, 10.0)


@dataclass(frozen=True, slots=True)
class DeploymentTargets:
    """QoAIS targets of the deployment service."""

    deadline_met: float = 0.95
    """Share of devices whose requests are answered within their deadline, at least."""
    p95_latency_s: float = 1.0
    """95th-percentile request latency, at most."""
    energy_per_request_j: float = 0.5
    """Mean energy per request, at most."""
    privacy_level: int = 3
    """Target data privacy level, 1 (low) … 5 (high), at least."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high), at least."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Control mode the service must offer (it offers 'full' and 'partial')."""

    def __post_init__(self) -> None:
        check_range("deployment_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("deployment_qoais", "security_level", self.security_level, 1, 5)
        check_range("deployment_qoais", "deadline_met", self.deadline_met, 0.0, 1.0)
        check_positive(
            "deployment_qoais",
            p95_latency_s=self.p95_latency_s,
            energy_per_request_j=self.energy_per_request_j,
        )


@dataclass(frozen=True, slots=True)
class InferenceDemand:
    """A device's recurring inference request and what it could run on itself."""

    agent_id: str
    kind: str
    rows: int
    input_bits_per_row: float
    flops_per_row: float
    """Work of the full model per sample (edge and cloud run it)."""
    deadline_s: float
    compute: ComputeProfile
    uplink: LinkProfile
    """The device's uplink rate and the power it spends to transmit."""
    device_flops_per_row: float | None
    """Work of the variant the device holds per sample; None: no variant fits the device."""
    device_speedup: float = 1.0
    device_energy_ratio: float = 1.0

    def __post_init__(self) -> None:
        check_positive("inference demand", rows=self.rows, deadline_s=self.deadline_s)

    @property
    def input_bits(self) -> float:
        """``D``: bits of one request's input."""
        return self.rows * self.input_bits_per_row


@dataclass(frozen=True, slots=True)
class PlacementCost:
    """Latency and energy of one request at one placement (the three terms of SPEC §7)."""

    placement: Placement
    ue_s: float
    tx_s: float
    net_s: float
    ue_j: float
    tx_j: float
    net_j: float

    @property
    def latency_s(self) -> float:
        """``T = O_UE/F_UE + D/R + O_NET/F_NET``."""
        return self.ue_s + self.tx_s + self.net_s

    @property
    def energy_j(self) -> float:
        """``E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET``."""
        return self.ue_j + self.tx_j + self.net_j


def placement_costs(
    demand: InferenceDemand, *, edge: ComputeProfile, config: DeploymentConfig
) -> dict[Placement, PlacementCost]:
    """Cost of one request at every placement open to it (device only if a variant fits it)."""
    d = demand.input_bits
    o_full = demand.rows * demand.flops_per_row
    tx_s = (
        float(transmission_latency_s(d, demand.uplink.rate_bps)) if demand.uplink.rate_bps > 0 else math.inf
    )
    tx_j = (
        float(transmission_energy_j(d, demand.uplink.efficiency_bits_per_j))
        if math.isfinite(tx_s)
        else math.inf
    )
    costs: dict[Placement, PlacementCost] = {}
    if demand.device_flops_per_row is not None:
        o_ue = demand.rows * demand.device_flops_per_row
        costs["device"] = PlacementCost(
            "device",
            ue_s=float(compute_latency_s(o_ue, demand.compute.flops_per_s)) / demand.device_speedup,
            tx_s=0.0,
            net_s=0.0,
            ue_j=float(compute_energy_j(o_ue, demand.compute.efficiency_flops_per_j))
            * demand.device_energy_ratio,
            tx_j=0.0,
            net_j=0.0,
        )
    costs["edge"] = PlacementCost(
        "edge",
        ue_s=0.0,
        tx_s=tx_s,
        net_s=float(compute_latency_s(o_full, edge.flops_per_s)),
        ue_j=0.0,
        tx_j=tx_j,
        net_j=float(compute_energy_j(o_full, edge.efficiency_flops_per_j)),
    )
    backhaul_ee = config.backhaul_bps / config.backhaul_power_w
    costs["cloud"] = PlacementCost(
        "cloud",
        ue_s=0.0,
        tx_s=tx_s + float(transmission_latency_s(d, config.backhaul_bps)) + config.backhaul_delay_s,
        net_s=float(compute_latency_s(o_full, config.cloud.flops_per_s)),
        ue_j=0.0,
        tx_j=tx_j + float(transmission_energy_j(d, backhaul_ee)),
        net_j=float(compute_energy_j(o_full, config.cloud.efficiency_flops_per_j)),
    )
    return costs


@dataclass(frozen=True, slots=True)
class DeploymentDecision:
    """Where one device's model runs, and the latency and energy of its requests there."""

    agent_id: str
    kind: str
    placement: Placement
    deadline_s: float
    costs: dict[Placement, PlacementCost]

    @property
    def chosen(self) -> PlacementCost:
        """Cost at the chosen placement."""
        return self.costs[self.placement]

    @property
    def meets_deadline(self) -> bool:
        """Whether the chosen placement answers within the deadline."""
        return self.chosen.latency_s <= self.deadline_s

    def record(self) -> dict[str, float | str | bool]:
        """Flat record: the decision and every placement's latency and energy (NaN where closed)."""
        row: dict[str, float | str | bool] = {
            "agent_id": self.agent_id,
            "kind": self.kind,
            "placement": self.placement,
            "latency_s": self.chosen.latency_s,
            "energy_j": self.chosen.energy_j,
            "deadline_s": self.deadline_s,
            "meets_deadline": self.meets_deadline,
        }
        for place in PLACEMENTS:
            cost = self.costs.get(place)
            row[f"{place}_latency_s"] = cost.latency_s if cost else math.nan
            row[f"{place}_energy_j"] = cost.energy_j if cost else math.nan
        return row


def decide(demand: InferenceDemand, *, edge: ComputeProfile, config: DeploymentConfig) -> DeploymentDecision:
    """Least-energy placement meeting the deadline (ties: faster, device → edge → cloud), else fastest."""
    costs = placement_costs(demand, edge=edge, config=config)
    order = {p: i for i, p in enumerate(PLACEMENTS)}
    in_time = [c for c in costs.values() if c.latency_s <= demand.deadline_s]
    if in_time:
        best = min(in_time, key=lambda c: (c.energy_j, c.latency_s, order[c.placement]))
    else:
        best = min(costs.values(), key=lambda c: (c.latency_s, c.energy_j, order[c.placement]))
    return DeploymentDecision(demand.agent_id, demand.kind, best.placement, demand.deadline_s, costs)


def deployment_summary(decisions: Sequence[DeploymentDecision]) -> dict[str, float]:
    """KPIs of the deployment service (empty before any decision)."""
    if not decisions:
        return {}
    latency = np.array([d.chosen.latency_s for d in decisions])
    energy = np.array([d.chosen.energy_j for d in decisions])
    out = {
        "devices": float(len(decisions)),
        "deadline_met": float(np.mean([d.meets_deadline for d in decisions])),
        "p95_latency_s": float(np.percentile(latency, 95)),
        "mean_latency_s": float(latency.mean()),
        "energy_per_request_j": float(energy.mean()),
    }
    for place in PLACEMENTS:
        out[f"on_{place}"] = float(sum(d.placement == place for d in decisions))
    return out


def deployment_report(
    service: str,
    decisions: Sequence[DeploymentDecision],
    targets: DeploymentTargets,
    *,
    tls: bool,
    authenticated: bool,
) -> ServiceReport:
    """QoAIS of the deployment service: deadlines met, tail latency, energy per request."""
    summary = deployment_summary(decisions)
    if not summary:
        return ServiceReport(service, "model deployment", (), ("no device placed: nothing to assess",))
    off_device = summary["on_edge"] + summary["on_cloud"] > 0
    indicators = (
        Indicator(
            "performance",
            "deadline_met",
            summary["deadline_met"],
            targets.deadline_met,
            "",
            "min",
            "share of devices answered within their deadline at the chosen placement",
        ),
        Indicator(
            "performance",
            "p95_latency",
            summary["p95_latency_s"],
            targets.p95_latency_s,
            " s",
            "max",
            "T = O_UE/F_UE + D/R + O_NET/F_NET at each device's placement",
        ),
        Indicator(
            "overhead",
            "energy_per_request",
            summary["energy_per_request_j"],
            targets.energy_per_request_j,
            " J",
            "max",
            "E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET at each device's placement",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=off_device,
            privacy_detail="request inputs leave the devices placed on the edge or cloud"
            if off_device
            else "every model runs on its device: only models travel",
        ),
    )
    notes = (
        f"placements: {int(summary['on_device'])} device, {int(summary['on_edge'])} edge, "
        f"{int(summary['on_cloud'])} cloud",
    )
    return ServiceReport(service, "model deployment", indicators, notes)
