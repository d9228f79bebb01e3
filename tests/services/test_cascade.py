"""Cascade inference: escalation exactly below the confidence threshold; latency hop by hop; the summary."""

from __future__ import annotations

import numpy as np
import pytest

from twin.kpi import ComputeProfile
from twin.services.cascade import CascadeConfig, cascade_cost, cascade_summary, escalation_mask

EDGE = ComputeProfile(flops_per_s=1e12, power_w=100.0)


def test_escalates_exactly_the_cases_below_the_threshold() -> None:
    """Confidence < threshold escalates; equal to it or above stays at the edge."""
    confidence = np.array([0.0, 0.79, 0.7999999, 0.8, 0.80001, 1.0])
    np.testing.assert_array_equal(escalation_mask(confidence, 0.8), [True, True, True, False, False, False])
    assert not escalation_mask(confidence, 0.0).any()
    assert escalation_mask(confidence, 1.0).sum() == 5


def test_latency_is_the_sum_of_the_hops() -> None:
    """Edge case: uplink + edge compute + downlink; escalated: + backhaul transfer, 2 delays, core compute."""
    # Prepare
    config = CascadeConfig(
        result_bits=1_000, backhaul_bps=1e8, backhaul_delay_s=0.01, core_flops_per_s=1e13, core_power_w=500.0
    )
    bits = np.array([1e5, 1e5])
    # Execute
    cost = cascade_cost(
        escalated=np.array([False, True]),
        record_bits=bits,
        uplink_bps=np.array([1e7, 1e7]),
        downlink_bps=np.array([1e6, 1e6]),
        edge=EDGE,
        edge_flops=1e9,
        core_flops=1e11,
        config=config,
    )
    # Assert
    edge_case = 1e5 / 1e7 + 1e9 / 1e12 + 1_000 / 1e6
    core_hop = 1e5 / 1e8 + 2 * 0.01 + 1e11 / 1e13
    np.testing.assert_allclose(cost.latency_s, [edge_case, edge_case + core_hop])
    np.testing.assert_allclose(cost.edge_compute_j, [1e9 / (1e12 / 100.0)] * 2)
    np.testing.assert_allclose(cost.core_compute_j, [0.0, 1e11 / (1e13 / 500.0)])
    np.testing.assert_allclose(cost.backhaul_j, [0.0, (1e5 + 1_000) * config.backhaul_j_per_bit])


def test_a_terminal_without_link_waits_for_ever() -> None:
    """No uplink: the case's latency is infinite (and the summary's percentile ignores it)."""
    cost = cascade_cost(
        escalated=np.array([False]),
        record_bits=np.array([1e4]),
        uplink_bps=np.array([0.0]),
        downlink_bps=np.array([1e6]),
        edge=EDGE,
        edge_flops=1e9,
        core_flops=1e11,
        config=CascadeConfig(),
    )
    assert np.isinf(cost.latency_s[0])


def test_summary_accuracy_per_tier() -> None:
    """Edge tier on kept cases, core tier on escalated ones, and the edge alone on the escalated ones."""
    # Prepare
    rows = [
        {"escalated": False, "correct": True, "edge_correct": True, "latency_s": 0.01},
        {"escalated": False, "correct": False, "edge_correct": False, "latency_s": 0.01},
        {"escalated": True, "correct": True, "edge_correct": False, "latency_s": 0.05},
        {"escalated": True, "correct": True, "edge_correct": True, "latency_s": np.inf},
    ]
    records = [{**r, "reliability": 1.0, "energy_j": 0.5} for r in rows]
    # Execute
    summary = cascade_summary(records)
    # Assert
    assert summary["escalation_share"] == 0.5
    assert summary["edge_tier_accuracy"] == 0.5
    assert summary["core_tier_accuracy"] == 1.0
    assert summary["edge_accuracy_on_escalated"] == 0.5
    assert summary["accuracy"] == 0.75 and summary["edge_only_accuracy"] == 0.5
    assert summary["latency_mean_s"] == pytest.approx(0.07 / 3)
    assert summary["energy_per_request_j"] == 0.5
