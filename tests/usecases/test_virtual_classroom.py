"""virtual-classroom (paper §2.3.7): the world it builds and the services a short run reports."""

from __future__ import annotations

from pathlib import Path

import pandas as pd

from twin.runner import RunOptions, run_scenario

SMALL = {"devices.count": "12", "fl.clients_per_round": "0.5"}


def test_short_run_reports_every_service(tmp_path: Path) -> None:
    """Two rounds on the in-process bus: four QoAIS reports, classrooms drawn, jobs run on the edge servers,
    privacy graded per service (models only: 4; results or desensitised features: 3)."""
    # Execute
    result = run_scenario(
        RunOptions("virtual-classroom", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=2)
    )
    # Assert
    assert result.status == "finished", result.error
    reports = {r.service: r for r in result.qoais}
    assert set(reports) == {"engagement-model", "model-generation", "edge-compute", "virtual-teacher"}
    privacy = {
        s: next(i.achieved for i in r.indicators if i.name == "data_privacy_level")
        for s, r in reports.items()
    }
    assert privacy == {"engagement-model": 4, "model-generation": 3, "edge-compute": 3, "virtual-teacher": 3}
    requests = pd.read_parquet(result.run_dir / "requests.parquet")
    jobs = requests[requests["service"] == "edge-compute"]
    assert set(jobs["job_kind"]) == {"render", "assessment"}
    admitted = jobs[jobs["admitted"]]
    assert (admitted["latency_s"] > 0).all()
    assert admitted["server"].str.startswith("gnb-").all()
    summary = result.summary["services"]
    assert summary["model-generation"]["candidates_trained"] >= 1
    assert summary["model-generation"]["search_energy_j"] > 0
    assert 0.0 < summary["edge-compute"]["utilisation_mean"] <= 1.0
