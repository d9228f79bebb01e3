"""Model deployment: each placement's latency and energy follow SPEC §7, and the decision follows them."""

from __future__ import annotations

import pytest

from twin.kpi import ComputeProfile, LinkProfile
from twin.services.deployment import (
    DeploymentConfig,
    DeploymentTargets,
    InferenceDemand,
    decide,
    deployment_report,
    placement_costs,
)

EDGE = ComputeProfile(flops_per_s=19.5e12, power_w=400.0)
CONFIG = DeploymentConfig(
    cloud=ComputeProfile(flops_per_s=100e12, power_w=4000.0),  # less efficient per FLOP than the edge
    backhaul_bps=10e9,
    backhaul_power_w=200.0,
    backhaul_delay_s=0.01,
)


def _demand(
    *, uplink_bps: float, device_flops_per_row: float | None = 1e4, deadline_s: float = 1.0
) -> InferenceDemand:
    return InferenceDemand(
        agent_id="d",
        kind="shop",
        rows=1000,
        input_bits_per_row=352.0,
        flops_per_row=1e6,
        deadline_s=deadline_s,
        compute=ComputeProfile(flops_per_s=1e9, power_w=5.0),
        uplink=LinkProfile(uplink_bps, 0.2),
        device_flops_per_row=device_flops_per_row,
        device_speedup=2.0,
        device_energy_ratio=0.25,
    )


def test_every_placement_costs_exactly_the_spec_formulas() -> None:
    """T = O_UE/F_UE + D/R + O_NET/F_NET and E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET at each placement."""
    # Prepare
    demand = _demand(uplink_bps=20e6)
    d, o = 1000 * 352.0, 1000 * 1e6
    # Execute
    costs = placement_costs(demand, edge=EDGE, config=CONFIG)
    # Assert
    o_ue = 1000 * 1e4
    assert costs["device"].latency_s == pytest.approx(o_ue / 1e9 / 2.0)
    assert costs["device"].energy_j == pytest.approx(o_ue / (1e9 / 5.0) * 0.25)
    assert costs["edge"].latency_s == pytest.approx(d / 20e6 + o / 19.5e12)
    assert costs["edge"].energy_j == pytest.approx(d / (20e6 / 0.2) + o / (19.5e12 / 400.0))
    assert costs["cloud"].latency_s == pytest.approx(d / 20e6 + d / 10e9 + 0.01 + o / 100e12)
    assert costs["cloud"].energy_j == pytest.approx(
        d / (20e6 / 0.2) + d / (10e9 / 200.0) + o / (100e12 / 4000.0)
    )


def test_the_decision_takes_the_least_energy_placement_that_meets_the_deadline() -> None:
    """A device holding a light variant runs it itself; one holding none goes to the edge (cheaper than
    the cloud); a deadline the edge misses over a slow uplink but the device meets keeps it on the device."""
    # Execute
    own = decide(_demand(uplink_bps=20e6), edge=EDGE, config=CONFIG)
    none_fits = decide(_demand(uplink_bps=20e6, device_flops_per_row=None), edge=EDGE, config=CONFIG)
    heavy = _demand(uplink_bps=1e5, device_flops_per_row=1e6, deadline_s=1.0)
    slow_link = decide(heavy, edge=EDGE, config=CONFIG)
    # Assert
    assert own.placement == "device" and own.meets_deadline
    assert own.chosen.energy_j == min(c.energy_j for c in own.costs.values())
    assert none_fits.placement == "edge" and "device" not in none_fits.costs
    assert none_fits.costs["edge"].energy_j < none_fits.costs["cloud"].energy_j
    assert slow_link.costs["edge"].latency_s > 1.0 >= slow_link.costs["device"].latency_s
    assert slow_link.placement == "device"


def test_an_energy_hungry_device_offloads_over_a_good_link() -> None:
    """When the device's own run costs more energy than sending the input, the edge takes it."""
    # Prepare
    demand = _demand(uplink_bps=100e6, device_flops_per_row=1e6)
    # Execute
    decision = decide(demand, edge=EDGE, config=CONFIG)
    # Assert
    assert decision.costs["device"].energy_j > decision.costs["edge"].energy_j
    assert decision.placement == "edge"


def test_the_report_fails_when_deadlines_are_missed() -> None:
    """No placement meets a 1 µs deadline: the fastest is taken and the deadline indicator fails."""
    # Execute
    decision = decide(_demand(uplink_bps=20e6, deadline_s=1e-6), edge=EDGE, config=CONFIG)
    report = deployment_report("deployment", [decision], DeploymentTargets(), tls=False, authenticated=True)
    # Assert
    assert decision.chosen.latency_s == min(c.latency_s for c in decision.costs.values())
    assert not decision.meets_deadline
    assert not next(i for i in report.indicators if i.name == "deadline_met").passed
