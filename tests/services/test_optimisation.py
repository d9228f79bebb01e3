"""Model optimisation: a forecast-driven allocation and planned routes against the baseline policy."""

from __future__ import annotations

import numpy as np

from twin.services.optimisation import (
    OptimisationConfig,
    OptimisationOutcome,
    OptimisationTargets,
    allocate,
    optimisation_report,
    plan_trips,
    score_policy,
    tour_length_m,
)

CONFIG = OptimisationConfig(safety_margin=0.05, baseline_margin=0.15, vehicle_capacity_units=200.0)


def _world(seed: int = 0) -> dict[str, object]:
    rng = np.random.default_rng(seed)
    return {
        "site_xy": rng.integers(0, 10, size=(10, 2)).astype(float) * 200.0,
        "site_depot": np.array([0] * 5 + [1] * 5),
        "depots_xy": np.array([[0.0, 0.0], [2000.0, 2000.0]]),
        "waste_depot_xy": np.array([0.0, 2000.0]),
        "config": CONFIG,
    }


def test_a_forecast_driven_policy_beats_last_weeks_sales_on_the_same_demand_trace() -> None:
    """With demand that moves week to week (promotions), allocating a forecast wastes less and serves more
    than last week's sales + margin, and planned routes drive less than fixed ones — same demand for both."""
    # Prepare
    rng = np.random.default_rng(1)
    mean = rng.uniform(20, 50, size=(10, 7)) * np.where(rng.random((10, 7)) < 0.2, 1.6, 1.0)
    last_week_mean = rng.uniform(20, 50, size=(10, 7)) * np.where(rng.random((10, 7)) < 0.2, 1.6, 1.0)
    demand = rng.poisson(mean)
    last_week = rng.poisson(last_week_mean)
    forecast = mean + rng.normal(0, 3, mean.shape)  # a good, imperfect model
    stock = np.stack([allocate(f, safety_margin=CONFIG.safety_margin) for f in forecast.T], axis=1)
    baseline = np.stack([allocate(r, safety_margin=CONFIG.baseline_margin) for r in last_week.T], axis=1)
    # Execute
    policy = score_policy("model", stock=stock, demand=demand, routing="optimised", **_world())  # type: ignore[arg-type]
    base = score_policy("baseline", stock=baseline, demand=demand, routing="fixed", **_world())  # type: ignore[arg-type]
    outcome = OptimisationOutcome(policy, base)
    report = optimisation_report("plan", outcome, OptimisationTargets(), tls=False, authenticated=True)
    # Assert
    assert policy.demand_units == base.demand_units == demand.sum()
    assert outcome.waste_avoided_units > 0 and outcome.waste_reduction > 0.2
    assert outcome.unmet_change_units < 0
    assert outcome.distance_saved_km > 0
    assert report.passed, report.limiting_factor


def test_waste_and_unmet_demand_are_what_stock_and_demand_leave() -> None:
    """Stock above demand is wasted, demand above stock unmet, and served = min(stock, demand)."""
    # Prepare
    stock = np.array([[10, 5], [0, 8]] + [[0, 0]] * 8)
    demand = np.array([[7, 9], [3, 8]] + [[0, 0]] * 8)
    # Execute
    score = score_policy("s", stock=stock, demand=demand, routing="optimised", **_world())  # type: ignore[arg-type]
    # Assert
    assert score.waste_units == 3 and score.unmet_units == 4 + 3 and score.served_units == 7 + 5 + 8
    assert score.service_level == 20 / 27


def test_planned_trips_respect_capacity_and_are_no_longer_than_the_fixed_order() -> None:
    """Every loaded site is visited once, no trip exceeds the capacity, sites with nothing are skipped,
    and the planned tour is never longer than visiting in index order."""
    # Prepare
    rng = np.random.default_rng(3)
    xy = rng.uniform(0, 2000, size=(12, 2))
    loads = rng.integers(0, 90, 12).astype(float)
    loads[[2, 7]] = 0
    depot = np.array([1000.0, 1000.0])
    # Execute
    planned = plan_trips(depot, xy, loads, 200.0, "optimised")
    fixed = plan_trips(depot, xy, loads, 200.0, "fixed")
    # Assert
    visited = sorted(i for trip in planned for i in trip)
    assert visited == [i for i in range(12) if loads[i] > 0]
    assert all(loads[trip].sum() <= 200.0 for trip in planned)
    assert sorted(i for trip in fixed for i in trip) == list(range(12))
    planned_m = sum(tour_length_m(depot, xy[t]) for t in planned)
    fixed_m = sum(tour_length_m(depot, xy[t]) for t in fixed)
    assert planned_m <= fixed_m


def test_allocation_is_scaled_to_a_short_supply() -> None:
    """When the forecast exceeds what the warehouse holds, every site's share shrinks proportionally."""
    # Execute
    plenty = allocate([10, 30], safety_margin=0.0)
    short = allocate([10, 30], safety_margin=0.0, supply=20.0)
    # Assert
    assert list(plenty) == [10, 30]
    assert list(short) == [5, 15]
