"""Model optimisation (paper §2.4.4): allocation and routes from a learned model vs a baseline policy.

A **policy** says how much stock each site receives each day and how vehicles drive. The learned one
allocates each site its forecast demand (× ``1 + safety_margin``) and plans each day's delivery trips
over the sites that get stock — capacitated nearest-neighbour from the depot, then 2-opt per trip —
and sends waste trucks only to the sites that had waste. The **baseline** allocates what the site sold
on the same weekday a week before plus ``baseline_margin`` (a rule of thumb; paper §2.3.3: allocation
today is not model-driven) and drives **fixed routes**: every site, every day, in a fixed order. Both
are scored by :func:`score_policy` on the same realised demand: perishable stock left at the end of a day is
**waste**, demand beyond stock is **unmet**, and the street-grid (Manhattan) distance of every trip,
delivery and waste collection, is **distance**. :class:`OptimisationOutcome` is the gain;
:func:`optimisation_report` its QoAIS. Pure: no bus, no I/O, no randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from twin.config import check_positive, check_range
from twin.qoais import Indicator, ServiceReport, graded_indicators

Routing = Literal["optimised", "fixed"]
Points = npt.NDArray[np.float64]


@dataclass(frozen=True, slots=True)
class OptimisationConfig:
    """How the learned policy allocates and routes."""

    safety_margin: float = 0.05
    """Stock above the forecast (share)."""
    baseline_margin: float = 0.15
    """Stock above last week's sales under the baseline policy (share; today's practice)."""
    vehicle_capacity_units: float = 400.0
    """Units a delivery van carries per trip."""
    waste_capacity_units: float = 300.0
    """Units of waste a truck carries per trip."""

    def __post_init__(self) -> None:
        check_range("optimisation", "safety_margin", self.safety_margin, 0.0, 2.0)
        check_range("optimisation", "baseline_margin", self.baseline_margin, 0.0, 2.0)
        check_positive(
            "optimisation",
            vehicle_capacity_units=self.vehicle_capacity_units,
            waste_capacity_units=self.waste_capacity_units,
        )


@dataclass(frozen=True, slots=True)
class OptimisationTargets:
    """QoAIS targets of the optimisation service."""

    waste_reduction: float = 0.2
    """Share of the baseline's waste avoided, at least."""
    service_level: float = 0.9
    """Share of demand served, at least."""
    distance_reduction: float = 0.0
    """Share of the baseline's distance saved, at least."""
    privacy_level: int = 3
    """Target data privacy level, 1 (low) … 5 (high), at least."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high), at least."""
    autonomy: Literal["full", "partial", "human"] = "partial"
    """Control mode the service must offer (it offers 'full' and 'partial')."""

    def __post_init__(self) -> None:
        check_range("optimisation_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("optimisation_qoais", "security_level", self.security_level, 1, 5)
        check_range("optimisation_qoais", "waste_reduction", self.waste_reduction, -1.0, 1.0)
        check_range("optimisation_qoais", "service_level", self.service_level, 0.0, 1.0)
        check_range("optimisation_qoais", "distance_reduction", self.distance_reduction, -1.0, 1.0)


def allocate(
    forecast: npt.ArrayLike, *, safety_margin: float, supply: float | None = None
) -> npt.NDArray[np.int64]:
    """Whole units per site: forecast × (1 + margin), scaled down to ``supply`` if it is short."""
    want = np.maximum(np.asarray(forecast, dtype=float), 0.0) * (1.0 + safety_margin)
    if supply is not None and want.sum() > supply > 0:
        want = want * supply / want.sum()
    return np.round(want).astype(np.int64)


def manhattan_m(a: Points, b: Points) -> npt.NDArray[np.float64]:
    """Street-grid distance between every point of ``a`` (n, 2) and of ``b`` (m, 2)."""
    return np.abs(a[:, None, :] - b[None, :, :]).sum(axis=2)


def tour_length_m(depot: Points, stops: Points) -> float:
    """Depot → stops in order → depot, on the street grid."""
    path = np.vstack([depot.reshape(1, 2), stops.reshape(-1, 2), depot.reshape(1, 2)])
    return float(np.abs(np.diff(path, axis=0)).sum())


def _two_opt(depot: Points, xy: Points, order: list[int]) -> list[int]:
    """Reverse segments of a tour while that shortens it (first improvement, deterministic)."""
    best = list(order)
    best_len = tour_length_m(depot, xy[best])
    improved = True
    while improved and len(best) > 2:
        improved = False
        for i in range(len(best) - 1):
            for j in range(i + 2, len(best) + 1):
                candidate = best[:i] + best[i:j][::-1] + best[j:]
                length = tour_length_m(depot, xy[candidate])
                if length < best_len - 1e-9:
                    best, best_len, improved = candidate, length, True
    return best


def _trips(loads: np.ndarray, order: Sequence[int], capacity: float) -> list[list[int]]:
    """Split a visiting order into trips whose loads fit ``capacity`` (a site larger than it: own trips)."""
    trips: list[list[int]] = []
    current: list[int] = []
    carried = 0.0
    for i in order:
        load = float(loads[i])
        if current and carried + load > capacity:
            trips.append(current)
            current, carried = [], 0.0
        current.append(i)
        carried += load
    if current:
        trips.append(current)
    return trips


def plan_trips(
    depot: Points, xy: Points, loads: npt.ArrayLike, capacity: float, routing: Routing
) -> list[list[int]]:
    """Trips from ``depot`` over the sites with a load (optimised) or over every site in index order (fixed).

    Optimised: capacitated nearest-neighbour trips, each then shortened by 2-opt. Fixed: the sites in
    index order, cut into trips when the next load would not fit.
    """
    loads_arr = np.asarray(loads, dtype=float)
    if routing == "fixed":
        return _trips(loads_arr, range(len(loads_arr)), capacity)
    left = [i for i in range(len(loads_arr)) if loads_arr[i] > 0]
    trips: list[list[int]] = []
    while left:
        here, carried = depot.reshape(2), 0.0
        trip: list[int] = []
        while left:
            dist = np.abs(xy[left] - here).sum(axis=1)
            nearest = left[int(np.argmin(dist))]
            if trip and carried + loads_arr[nearest] > capacity:
                break
            trip.append(nearest)
            carried += float(loads_arr[nearest])
            left.remove(nearest)
            here = xy[nearest]
        trips.append(_two_opt(depot, xy, trip))
    return trips


@dataclass(frozen=True, slots=True)
class PolicyScore:
    """What a policy did over a demand trace."""

    name: str
    demand_units: float
    served_units: float
    waste_units: float
    unmet_units: float
    delivery_km: float
    collection_km: float

    @property
    def distance_km(self) -> float:
        """Delivery and waste-collection distance."""
        return self.delivery_km + self.collection_km

    @property
    def service_level(self) -> float:
        """Share of demand served."""
        return self.served_units / self.demand_units if self.demand_units else 1.0


def score_policy(
    name: str,
    *,
    stock: npt.ArrayLike,
    demand: npt.ArrayLike,
    site_xy: Points,
    site_depot: npt.ArrayLike,
    depots_xy: Points,
    waste_depot_xy: Points,
    routing: Routing,
    config: OptimisationConfig,
) -> PolicyScore:
    """Waste, unmet demand and distance of ``stock`` (sites × days) against ``demand`` (sites × days).

    Each site is supplied from its depot (``site_depot`` indexes ``depots_xy``); waste is collected to
    ``waste_depot_xy`` — by ``routing``: optimised trips visit only the sites that had waste, fixed
    ones every site.
    """
    stock_a = np.asarray(stock, dtype=float)
    demand_a = np.asarray(demand, dtype=float)
    depot_of = np.asarray(site_depot, dtype=int)
    if stock_a.shape != demand_a.shape or stock_a.ndim != 2 or stock_a.shape[0] != len(site_xy):
        raise ValueError(f"stock {stock_a.shape} and demand {demand_a.shape} must both be (sites, days)")
    served = np.minimum(stock_a, demand_a)
    waste = stock_a - served
    delivery_m = collection_m = 0.0
    for day in range(stock_a.shape[1]):
        for depot in range(len(depots_xy)):
            sites = np.flatnonzero(depot_of == depot)
            trips = plan_trips(
                depots_xy[depot], site_xy[sites], stock_a[sites, day], config.vehicle_capacity_units, routing
            )
            delivery_m += sum(tour_length_m(depots_xy[depot], site_xy[sites][t]) for t in trips)
        trips = plan_trips(waste_depot_xy, site_xy, waste[:, day], config.waste_capacity_units, routing)
        collection_m += sum(tour_length_m(waste_depot_xy, site_xy[t]) for t in trips)
    return PolicyScore(
        name,
        demand_units=float(demand_a.sum()),
        served_units=float(served.sum()),
        waste_units=float(waste.sum()),
        unmet_units=float((demand_a - served).sum()),
        delivery_km=delivery_m / 1000.0,
        collection_km=collection_m / 1000.0,
    )


@dataclass(frozen=True, slots=True)
class OptimisationOutcome:
    """The learned policy against the baseline on the same demand trace."""

    policy: PolicyScore
    baseline: PolicyScore

    @property
    def waste_avoided_units(self) -> float:
        """Baseline waste − policy waste."""
        return self.baseline.waste_units - self.policy.waste_units

    @property
    def waste_reduction(self) -> float:
        """Share of the baseline's waste avoided."""
        return self.waste_avoided_units / self.baseline.waste_units if self.baseline.waste_units else 0.0

    @property
    def distance_saved_km(self) -> float:
        """Baseline distance − policy distance."""
        return self.baseline.distance_km - self.policy.distance_km

    @property
    def distance_reduction(self) -> float:
        """Share of the baseline's distance saved."""
        return self.distance_saved_km / self.baseline.distance_km if self.baseline.distance_km else 0.0

    @property
    def unmet_change_units(self) -> float:
        """Policy unmet demand − baseline unmet demand (negative: the policy serves more)."""
        return self.policy.unmet_units - self.baseline.unmet_units

    def summary(self) -> dict[str, float]:
        """Flat KPIs of both policies and the gain."""
        out: dict[str, float] = {}
        for score in (self.policy, self.baseline):
            prefix = "policy" if score is self.policy else "baseline"
            out |= {
                f"{prefix}_waste_units": score.waste_units,
                f"{prefix}_unmet_units": score.unmet_units,
                f"{prefix}_served_units": score.served_units,
                f"{prefix}_service_level": score.service_level,
                f"{prefix}_delivery_km": score.delivery_km,
                f"{prefix}_collection_km": score.collection_km,
            }
        return out | {
            "demand_units": self.policy.demand_units,
            "waste_avoided_units": self.waste_avoided_units,
            "waste_reduction": self.waste_reduction,
            "distance_saved_km": self.distance_saved_km,
            "distance_reduction": self.distance_reduction,
            "unmet_change_units": self.unmet_change_units,
        }


def optimisation_report(
    service: str,
    outcome: OptimisationOutcome | None,
    targets: OptimisationTargets,
    *,
    tls: bool,
    authenticated: bool,
    privacy_level_detail: str = "plans use desensitised records and a federated model",
) -> ServiceReport:
    """QoAIS of the optimisation service: waste avoided, demand served, distance saved vs the baseline."""
    if outcome is None:
        return ServiceReport(service, "model optimisation", (), ("no plan made: nothing to assess",))
    policy, baseline = outcome.policy, outcome.baseline
    indicators = (
        Indicator(
            "performance",
            "waste_reduction",
            outcome.waste_reduction,
            targets.waste_reduction,
            "",
            "min",
            f"waste {policy.waste_units:.0f} vs baseline {baseline.waste_units:.0f} units (same demand)",
        ),
        Indicator(
            "performance",
            "service_level",
            policy.service_level,
            targets.service_level,
            "",
            "min",
            f"unmet {policy.unmet_units:.0f} vs baseline {baseline.unmet_units:.0f} units",
        ),
        Indicator(
            "overhead",
            "distance_reduction",
            outcome.distance_reduction,
            targets.distance_reduction,
            "",
            "min",
            f"{policy.distance_km:.1f} km vs baseline {baseline.distance_km:.1f} km (delivery + waste)",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=True,
            privacy_detail=privacy_level_detail,
        ),
    )
    notes = (
        f"policy '{policy.name}' vs baseline '{baseline.name}'; autonomy: plans are suggestions a fleet "
        "manager may override (partial)",
    )
    return ServiceReport(service, "model optimisation", indicators, notes)
