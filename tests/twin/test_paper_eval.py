"""Golden tests: the paper's Tables 3-13 and 3-15 recomputed from their inputs (3.2.4), and what-ifs."""

import json
from dataclasses import replace
from pathlib import Path

import pytest

from twin.paper_eval import (
    PAPER_DEFAULTS,
    LinkProfile,
    compare_to_paper,
    federated_training_kpis,
    load_paper_inputs,
    load_paper_reference,
    split_inference_table,
)

SHARED_TABLES = Path(__file__).resolve().parents[2].parent / "shared" / "reference" / "seed_tables.json"
BUNDLED_TABLES = Path(__file__).resolve().parents[2] / "twin" / "data" / "seed_tables.json"
TABLES = SHARED_TABLES if SHARED_TABLES.exists() else BUNDLED_TABLES

TABLE_3_13_COLUMNS = [
    "split_point",
    "ue_gflops",
    "ue_latency_ms",
    "ue_energy_j",
    "tx_data_mb",
    "tx_latency_ms",
    "tx_energy_j",
    "net_gflops",
    "net_latency_ms",
    "net_energy_j",
    "response_latency_ms",
    "system_efficiency_mb_per_j",
    "total_energy_j",
]
TABLE_3_15_KPIS = [
    "per_sample_round_time_ms",
    "per_sample_round_energy_j",
    "training_efficiency_mb_per_j",
    "per_round_energy_j",
    "total_energy_j",
    "co2_g",
]


def _paper_table():
    inputs = load_paper_inputs(TABLES)
    return split_inference_table(
        inputs.split_profile, inputs.link, inputs.user, inputs.network, inputs.model.accuracy
    )


def test_loader_reads_the_same_inputs_as_the_shipped_defaults() -> None:
    """load_paper_inputs(seed_tables.json) equals PAPER_DEFAULTS, so the package works without the file."""
    # Prepare / Execute
    inputs = load_paper_inputs(TABLES)
    # Assert
    assert inputs == PAPER_DEFAULTS
    assert inputs.link.efficiency_bits_per_j / 1e6 == pytest.approx(3.07, abs=0.005)
    assert inputs.user.efficiency_flops_per_j == pytest.approx(1.4e12 / 30)


def test_table_3_13_every_row_and_column_from_inputs() -> None:
    """All 7 split points x 13 columns of Table 3-13 follow from the inputs within the stated tolerance."""
    # Prepare
    paper_rows = load_paper_reference(TABLES).split_rows
    # Execute
    table = _paper_table()
    comparisons = compare_to_paper(table.rows, paper_rows)
    # Assert
    assert [set(row) for row in paper_rows] == [set(TABLE_3_13_COLUMNS)] * 7
    assert len(comparisons) == 7 * (len(TABLE_3_13_COLUMNS) - 1)
    misses = [c for c in comparisons if not c.within_tolerance]
    assert misses == []
    assert [row.split_point for row in table.rows] == list(range(7))


def test_table_3_13_best_splits() -> None:
    """With the paper's link the network-only split is fastest and the device-only split is most frugal."""
    # Prepare / Execute
    table = _paper_table()
    # Assert
    assert table.best_latency_split == 0
    assert table.best_energy_split == 6
    assert table.service_accuracy == pytest.approx(0.7159)


def test_table_3_15_every_kpi_from_inputs() -> None:
    """Every KPI of Table 3-15 follows from Tables 3-10, 3-11, 3-12, 3-14 within the stated tolerance."""
    # Prepare
    inputs = load_paper_inputs(TABLES)
    paper = load_paper_reference(TABLES).federated
    # Execute
    kpis = federated_training_kpis(inputs.model, inputs.federated, inputs.link, inputs.user)
    comparisons = compare_to_paper([kpis], [paper])
    # Assert
    assert sorted(paper) == sorted(TABLE_3_15_KPIS)
    assert {c.column for c in comparisons} == set(TABLE_3_15_KPIS)
    assert all(c.within_tolerance for c in comparisons), [c for c in comparisons if not c.within_tolerance]
    assert kpis.per_round_energy_j == pytest.approx(2_550_857.14, abs=0.01)
    assert kpis.total_energy_j == pytest.approx(538_977_336.3, abs=0.05)
    assert kpis.co2_g == pytest.approx(105_100.58, abs=0.01)


def test_comparison_flags_values_outside_tolerance() -> None:
    """A value off by more than max(0.01, 0.5 %) is flagged; 66.43 ms against a printed '66' is accepted."""
    # Prepare
    paper = [{"split_point": 0, "total_energy_j": 2.20, "per_sample_round_time_ms": 66}]
    # Execute
    close = compare_to_paper([{"total_energy_j": 2.209, "per_sample_round_time_ms": 66.43}], paper)
    far = compare_to_paper([{"total_energy_j": 2.25, "per_sample_round_time_ms": 66.6}], paper)
    # Assert
    assert [c.within_tolerance for c in close] == [True, True]
    assert [c.within_tolerance for c in far] == [False, False]
    assert far[0].diff == pytest.approx(0.05)


def test_doubling_the_rate_halves_transmission_latency() -> None:
    """D / R: twice the rate, half the transmission time; compute columns unchanged."""
    # Prepare
    d = PAPER_DEFAULTS
    fast = LinkProfile(rate_bps=2 * d.link.rate_bps, power_w=d.link.power_w)
    # Execute
    base = split_inference_table(d.split_profile, d.link, d.user, d.network, d.model.accuracy)
    doubled = split_inference_table(d.split_profile, fast, d.user, d.network, d.model.accuracy)
    # Assert
    for before, after in zip(base.rows, doubled.rows, strict=True):
        assert after.tx_latency_ms == pytest.approx(before.tx_latency_ms / 2)
        assert after.tx_energy_j == pytest.approx(before.tx_energy_j / 2)
        assert after.ue_latency_ms == pytest.approx(before.ue_latency_ms)


def test_doubling_ecr_doubles_co2() -> None:
    """CO2 = E * ECR, for inference rows and for federated training."""
    # Prepare
    d = PAPER_DEFAULTS
    # Execute
    once = federated_training_kpis(d.model, d.federated, d.link, d.user, ecr_kg_per_kwh=0.702)
    twice = federated_training_kpis(d.model, d.federated, d.link, d.user, ecr_kg_per_kwh=1.404)
    rows = split_inference_table(d.split_profile, d.link, d.user, d.network, 0.7, ecr_kg_per_kwh=1.404).rows
    # Assert
    assert twice.co2_g == pytest.approx(2 * once.co2_g)
    assert twice.total_energy_j == pytest.approx(once.total_energy_j)
    assert rows[0].co2_g == pytest.approx(rows[0].total_energy_j / 3.6e6 * 1.404 * 1e3)


def test_best_latency_split_moves_to_the_device_when_the_rate_drops() -> None:
    """At 1.95 Gb/s sending the raw input is fastest; at 50 Mb/s everything runs on the device."""
    # Prepare
    d = PAPER_DEFAULTS
    slow = LinkProfile(rate_bps=50e6, power_w=d.link.power_w)
    # Execute
    table = split_inference_table(d.split_profile, slow, d.user, d.network, d.model.accuracy)
    # Assert
    assert table.best_latency_split == 6
    assert table.best_energy_split == 6


def test_reliability_scales_service_accuracy() -> None:
    """Service accuracy is a_m * r_c (3.2.3.1)."""
    # Prepare
    d = PAPER_DEFAULTS
    # Execute
    table = split_inference_table(d.split_profile, d.link, d.user, d.network, 0.7159, reliability=0.9)
    # Assert
    assert table.service_accuracy == pytest.approx(0.7159 * 0.9)


def test_more_rounds_and_users_scale_federated_energy() -> None:
    """Total energy is rounds x (compute + K D_m / EE_comm): 2x rounds doubles it, half the users halve it."""
    # Prepare
    d = PAPER_DEFAULTS
    base = federated_training_kpis(d.model, d.federated, d.link, d.user)
    comm_per_round = base.total_energy_j / d.federated.rounds - base.per_round_energy_j
    # Execute
    longer = federated_training_kpis(d.model, replace(d.federated, rounds=400), d.link, d.user)
    fewer = federated_training_kpis(d.model, replace(d.federated, active_users=50), d.link, d.user)
    # Assert
    assert comm_per_round == pytest.approx(100 * 138e6 * 32 / (1.95e9 / 636))
    assert longer.total_energy_j == pytest.approx(2 * base.total_energy_j)
    assert fewer.per_round_energy_j == pytest.approx(base.per_round_energy_j / 2)
    assert fewer.total_energy_j == pytest.approx(base.total_energy_j / 2)


def test_bundled_copy_matches_shared_tables() -> None:
    """twin/data/seed_tables.json is the same data as ../shared (when ../shared is there)."""
    # Prepare
    if not SHARED_TABLES.exists():
        pytest.skip("../shared is not checked out next to the repository")
    # Execute
    shared = json.loads(SHARED_TABLES.read_text(encoding="utf-8"))
    bundled = json.loads(BUNDLED_TABLES.read_text(encoding="utf-8"))
    # Assert
    assert bundled == shared
