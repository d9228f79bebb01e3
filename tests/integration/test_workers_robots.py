"""industrial-robots on Ray workers: the robots' training per cluster and their split-inference side run on
the device-host workers, and every table is bit-identical to the in-process run.

A local Ray cluster is started once for the module; the run's robots (their data in each production
step's federated service, their frames and CNN heads in the control-loop inference) are split among 2
Ray actors that talk to the run's embedded broker like any external device would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from twin.runner import RunOptions, run_scenario

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.broker]

SMALL = {"devices.count": "6", "devices.test_samples": "80", "devices.samples_max": "80"}
TABLES = ("kpi", "requests", "events")


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def test_industrial_robots_write_the_same_tables_with_their_robots_on_2_workers(tmp_path: Path) -> None:
    """Every robot side runs on the workers (no host left in the run's process, the split-inference service
    told which worker holds which robots), and every table is bit-identical to the in-process run."""
    # Execute
    models: list[Any] = []  # the run's model, in-process then on workers
    runs = {
        n: run_scenario(
            RunOptions(
                "industrial-robots",
                seed=5,
                overrides=SMALL,
                out_dir=tmp_path / str(n),
                rounds=2,
                workers=n,
                run_id="industrial-robots-workers",  # the events name their run
            ),
            on_model=models.append,
        )
        for n in (0, 2)
    }
    # Assert: the robots' side ran on the workers
    assert [r.status for r in runs.values()] == ["finished", "finished"], [r.error for r in runs.values()]
    in_process, on_workers = models
    assert on_workers.hosts == [] and in_process.hosts != []
    for service in on_workers.services:
        if getattr(service, "members", None) is not None:
            assert set(service.members) == {"worker-0", "worker-1"}, service.service
    # Assert: identical tables and service summaries
    for table in TABLES:
        frames = [pd.read_parquet(runs[n].run_dir / f"{table}.parquet") for n in (0, 2)]
        pd.testing.assert_frame_equal(frames[1], frames[0], check_exact=True, obj=f"robots {table}")
    assert runs[2].summary["services"] == runs[0].summary["services"]
    # Assert: what the workers did is in those tables — every cluster trained, robots inferred and split
    kpis = runs[2].kpis
    assert set(kpis["service"]) == {"defects-step-1", "defects-step-2", "defects-step-3"}
    assert kpis.accepted.sum() > 0
    requests = pd.read_parquet(runs[2].run_dir / "requests.parquet")
    control = requests[requests["service"] == "control-inference"]
    assert len(control) > 0 and (control["split_point"] < 5).any()


def test_a_full_fleet_trains_the_same_models_on_2_workers(tmp_path: Path) -> None:
    """With 8 robots per cluster (cohorts of 8 in-process, 4 on each worker) the KPI rows are identical."""
    runs = [
        run_scenario(
            RunOptions(
                "industrial-robots",
                seed=0,
                overrides={"devices.count": "24"},
                out_dir=tmp_path / str(n),
                rounds=3,
                workers=n,
                run_id="industrial-robots-fleet",
            )
        )
        for n in (0, 2)
    ]
    assert [r.status for r in runs] == ["finished", "finished"], [r.error for r in runs]
    pd.testing.assert_frame_equal(runs[1].kpis, runs[0].kpis, check_exact=True)
