from pathlib import Path

import pandas as pd

from twin.runner import RunOptions, run_scenario


def test_every_device_disconnecting_mid_round_is_survived(tmp_path: Path) -> None:
    """When every selected device drops out, rounds still close at the deadline with the global model
    unchanged; the KPI medians over no device are null, not a crash."""
    result = run_scenario(
        RunOptions(
            "home-health",
            seed=1,
            broker="local",
            out_dir=tmp_path,
            rounds=2,
            overrides={"devices.count": "10", "fl.dropout_prob": "1"},
        )
    )
    assert result.status == "finished"
    kpis = pd.read_parquet(result.run_dir / "kpi.parquet")
    assert (kpis.accepted == 0).all() and (kpis.offline == kpis.selected).all()
    assert kpis.accuracy.nunique() == 1  # nothing was learned
    assert kpis.device_upload_s.isna().all()
    assert (kpis.round_latency_s == 2.0).all()  # the network waited until the deadline


def test_no_coverage_makes_every_device_a_straggler(tmp_path: Path) -> None:
    """With an uplink too weak to reach any cell, every update misses the deadline: stragglers, not a hang."""
    result = run_scenario(
        RunOptions(
            "home-health",
            seed=1,
            broker="local",
            out_dir=tmp_path,
            rounds=1,
            overrides={"devices.count": "10", "radio.ue_tx_power_dbm": "-60", "fl.dropout_prob": "0"},
        )
    )
    kpis = result.kpis
    assert result.status == "finished"
    assert int(kpis.stragglers.iloc[0]) == int(kpis.selected.iloc[0]) and int(kpis.accepted.iloc[0]) == 0
