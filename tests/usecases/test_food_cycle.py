"""food-cycle end to end: desensitised ledgers, lossy sources, the plans and every service's report."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from twin.runner import RunOptions, run_scenario
from twin.services.data_management import DataCollector, DataServiceConfig
from usecases import food_cycle_data as fd

SMALL = {
    "devices.shops": "6",
    "devices.households": "4",
    "devices.history_days": "28",
    "collection.days": "7",
    "fl.rounds": "3",
}
SERVICES = {"food-data", "route-allocation", "model-compression", "model-deployment"}


def test_a_small_city_runs_every_service_and_no_identifier_leaves_a_device(tmp_path: Path) -> None:
    """Every organisation's ledger reaches the network desensitised (no identifier field, ever), every
    model user gets a variant and a placement, and each service writes records and a QoAIS report."""
    # Execute
    result = run_scenario(RunOptions("food-cycle", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path))
    # Assert
    assert result.status == "finished", result.error
    services = result.summary["services"]
    assert set(services) == SERVICES
    assert services["food-data"]["identifier_fields_released"] == 0
    assert services["food-data"]["privacy_level"] == 3
    requests = pd.read_parquet(result.run_dir / "requests.parquet")
    assert set(requests["service"]) >= SERVICES
    users = 6 + 4 + 3 + 2  # shops, households, vans, warehouses
    placed = requests[requests["service"] == "model-deployment"]
    assert len(placed) == users and set(placed["placement"]) <= {"device", "edge", "cloud"}
    chosen = requests[(requests["service"] == "model-compression") & requests["agent_id"].notna()]
    assert len(chosen) == users
    assert {r.service for r in result.qoais} == SERVICES | {"demand-model"}
    assert len(result.kpis) == 3


def test_lossier_sources_lower_the_measured_completeness(tmp_path: Path) -> None:
    """Making every source lossy lowers completeness; more re-sent records raise the redundancy."""
    # Execute
    clean = run_scenario(
        RunOptions(
            "food-cycle",
            seed=2,
            overrides={**SMALL, "collection.lossy_source_share": "0", "collection.duplicate_prob": "0"},
            broker="local",
            out_dir=tmp_path,
        )
    )
    dirty = run_scenario(
        RunOptions(
            "food-cycle",
            seed=2,
            overrides={**SMALL, "collection.lossy_source_share": "1", "collection.duplicate_prob": "0.5"},
            broker="local",
            out_dir=tmp_path,
        )
    )
    # Assert
    c, d = clean.summary["services"]["food-data"], dirty.summary["services"]["food-data"]
    assert c["completeness"] > 0.9 > d["completeness"]
    assert d["redundancy_share"] > c["redundancy_share"] + 0.2


def test_a_warehouses_own_reference_keeps_its_different_days_apart_and_still_catches_resends() -> None:
    """A warehouse moves several shops' units a day: standardised against a shop's reference its days
    are nearly collinear (most flagged near-duplicates), against its own size they are not; a record
    it re-sends is a near-duplicate either way."""
    # Prepare
    rng = np.random.default_rng(3)
    city = fd.make_city(rng, fd.make_shops(rng, ["shop-00", "shop-01"]), 28)
    shipped = rng.poisson(260.0, 14).astype(float)
    received = np.ceil(shipped * 1.03)
    flows = np.column_stack([received, shipped, received - shipped])
    source = fd.LedgerSource("warehouse-00", "warehouse", "2101", lossy=False)

    def flagged(scale: float, duplicate_prob: float) -> tuple[int, int]:
        days = fd.ledger_records(
            np.random.default_rng(4),
            source,
            flows,
            city,
            7,
            missing_prob=0.0,
            lossy_missing_prob=0.0,
            duplicate_prob=duplicate_prob,
        )
        collector = DataCollector(fd.ledger_schema(scale), DataServiceConfig())
        flags = [
            (copy, collector.collect(source.agent_id, r).near_duplicate)
            for d in days
            for copy, r in enumerate(d)
        ]
        return sum(f for c, f in flags if c == 0), sum(f for c, f in flags if c == 1)

    # Execute
    shop_scale_originals, _ = flagged(1.0, 0.0)
    own_scale_originals, _ = flagged(6.0, 0.0)
    _, own_scale_copies = flagged(6.0, 1.0)
    # Assert
    assert shop_scale_originals >= 7
    assert own_scale_originals <= 1
    assert own_scale_copies == 14


@pytest.mark.slow
def test_default_city_learns_demand_and_only_shops_without_uplink_straggle(tmp_path: Path) -> None:
    """At the defaults the federated demand model clearly beats always predicting the commonest level,
    the only stragglers are shops in uplink outage (no deadline would admit them), and the re-sent
    records (5 %) keep the measured redundancy under its 10 % target."""
    # Execute
    result = run_scenario(RunOptions("food-cycle", seed=0, broker="local", out_dir=tmp_path))
    # Assert
    assert result.status == "finished", result.error
    assert result.summary["final"]["accuracy"] >= result.summary["majority_baseline_accuracy"] + 0.15
    events = pd.read_parquet(result.run_dir / "events.parquet")
    stragglers = set(events.loc[events["event"] == "straggler", "agent_id"])
    telemetry = pd.read_parquet(result.run_dir / "telemetry.parquet")
    shops = telemetry[telemetry["kind"] == "shop"].groupby("agent_id")["uplink_bps"].max()
    assert stragglers and stragglers == set(shops[shops == 0].index)
    data = result.summary["services"]["food-data"]
    assert data["redundancy_share"] <= 0.1
