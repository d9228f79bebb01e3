"""food-cycle end to end: desensitised ledgers, lossy sources, the plans and every service's report."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from twin.runner import RunOptions, run_scenario

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
