"""disease-diagnosis with its patient terminals on Ray workers: the same tables as in the run's process.

The terminals' side (desensitisation, the per-tick batches of cases, the training windows that follow
the model-management policy, federated training) runs on two Ray device hosts; the run drifts and
re-trains, so the policy reaches the workers too. Every table is bit-identical to the in-process run.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agents.diagnosis import DiagnosisService, ModelManagementService
from twin.runner import RunOptions, run_scenario

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.broker]

SMALL = {
    "devices.count": "20",
    "cascade.ticks": "26",
    "cascade.start_s": "40",
    "drift.at_s": "160",
    "drift.magnitude": "3",
    "management.window_cases": "160",
}
TABLES = ("kpi", "requests", "events")


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


@pytest.mark.parametrize("mode", ["federated", "central"])
def test_disease_diagnosis_writes_the_same_tables_with_its_terminals_on_2_workers(
    tmp_path: Path, mode: str
) -> None:
    """No host is left in the run's process, the diagnosis service expects a batch from each worker, the
    drift's re-training policy is followed, and every table is bit-identical to the in-process run."""
    # Execute
    models: list[Any] = []  # the run's model, in-process then on workers
    runs = {
        n: run_scenario(
            RunOptions(
                "disease-diagnosis",
                seed=5,
                overrides={**SMALL, "training.mode": mode},
                out_dir=tmp_path / str(n),
                workers=n,
                run_id=f"disease-diagnosis-{mode}-workers",  # the events name their run
            ),
            on_model=models.append,
        )
        for n in (0, 2)
    }
    # Assert: the terminals' side ran on the workers
    assert [r.status for r in runs.values()] == ["finished", "finished"], [r.error for r in runs.values()]
    in_process, on_workers = models
    assert on_workers.hosts == [] and in_process.hosts != []
    (service,) = [s for s in on_workers.services if isinstance(s, DiagnosisService)]
    assert set(service.members) == {"worker-0", "worker-1"}
    for other in on_workers.services:
        if getattr(other, "members", None) is not None:
            assert set(other.members) == {"worker-0", "worker-1"}, other.service
    # Assert: identical tables and service summaries
    for table in TABLES:
        frames = [pd.read_parquet(runs[n].run_dir / f"{table}.parquet") for n in (0, 2)]
        pd.testing.assert_frame_equal(frames[1], frames[0], check_exact=True, obj=f"{mode} {table}")
    assert runs[2].summary["services"] == runs[0].summary["services"]
    # Assert: what the workers did is in the tables (cases diagnosed; federated: the drift re-trained)
    requests = pd.read_parquet(runs[2].run_dir / "requests.parquet")
    assert (requests["service"] == "diagnosis").sum() > 0
    (management,) = [s for s in on_workers.services if isinstance(s, ModelManagementService)]
    if mode == "federated":
        assert any(r["retrain_started"] for r in management.records)
        assert management.trainer.campaigns >= 2
