"""Device hosts on Ray workers: same results for any number of workers; a dead worker aborts the run.

A local Ray cluster is started once for the module; each run places its devices on N Ray actors that
talk to the run's embedded broker like any external device would. Besides home-health, the scenarios
whose devices have sides of their own (the classroom's terminals, the food organisations' ledgers and
on-device forecasts, the patient terminals, the robots' split inference and per-cluster training) and
the herd-health store-and-forward + model-sharing farm run on workers too.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from agents.diagnosis import DiagnosisService, ModelManagementService
from twin.runner import RunOptions, RunSession, run_scenario

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.broker]

SMALL = {"devices.count": "12", "inference.interval_s": "4"}

# case → (scenario, seed, rounds, overrides): a few devices and rounds; seed 5 of unmanned-grazing has
# updates stored and forwarded in its first rounds, and sharing.min_accuracy=0 makes the second farm reuse a
# model; disease-diagnosis drifts early enough to re-train on the workers.
DIAGNOSIS_SMALL = {
    "devices.count": "20",
    "cascade.ticks": "26",
    "cascade.start_s": "40",
    "drift.at_s": "160",
    "drift.magnitude": "3",
    "management.window_cases": "160",
}
NEW_SCENARIOS: dict[str, tuple[str, int, int | None, dict[str, str]]] = {
    "unmanned-grazing": (
        "unmanned-grazing",
        5,
        4,
        {
            "devices.drones": "3",
            "devices.cameras": "5",
            "devices.test_samples": "300",
            "sharing.max_rounds": "3",
            "sharing.min_accuracy": "0",
        },
    ),
    "virtual-classroom": ("virtual-classroom", 2, 2, {"devices.count": "12", "fl.clients_per_round": "0.5"}),
    "food-cycle": (
        "food-cycle",
        2,
        None,
        {
            "devices.shops": "6",
            "devices.households": "4",
            "devices.history_days": "28",
            "collection.days": "7",
            "fl.rounds": "3",
        },
    ),
    "industrial-robots": (
        "industrial-robots",
        5,
        2,
        {"devices.count": "6", "devices.test_samples": "80", "devices.samples_max": "80"},
    ),
    "disease-diagnosis-federated": ("disease-diagnosis", 5, None, DIAGNOSIS_SMALL),
    "disease-diagnosis-central": (
        "disease-diagnosis",
        5,
        None,
        {**DIAGNOSIS_SMALL, "training.mode": "central"},
    ),
}
TABLES = ("kpi", "requests", "events")


@pytest.fixture(scope="module", autouse=True)
def local_cluster() -> Iterator[None]:
    ray.init(num_cpus=4, include_dashboard=False, log_to_driver=False, configure_logging=False)
    yield
    ray.shutdown()


def _run(tmp_path: Path, workers: int) -> pd.DataFrame:
    result = run_scenario(
        RunOptions(
            "home-health", seed=3, overrides=SMALL, out_dir=tmp_path / str(workers), rounds=3, workers=workers
        )
    )
    assert result.status == "finished", result.error
    return result


def test_kpis_and_requests_are_identical_for_0_1_and_2_workers(tmp_path: Path) -> None:
    runs = {n: _run(tmp_path, n) for n in (0, 1, 2)}
    for n in (1, 2):
        pd.testing.assert_frame_equal(runs[n].kpis, runs[0].kpis, check_exact=True)
        requests = [pd.read_parquet(runs[k].run_dir / "requests.parquet") for k in (0, n)]
        pd.testing.assert_frame_equal(requests[1], requests[0], check_exact=True)
    assert runs[2].kpis.accepted.sum() > 0


def test_a_worker_that_dies_ends_the_run_aborted_with_its_rounds_kept(tmp_path: Path) -> None:
    session = RunSession(
        RunOptions("home-health", seed=3, overrides=SMALL, out_dir=tmp_path, rounds=5, workers=2)
    )
    model = session.open()
    assert session.workers is not None
    killed = False
    while session.step():
        if not killed and len(model.kpi_rows) == 1:
            session.workers.kill(1)
            killed = True
    result = session.close()
    assert result.status == "aborted"
    assert "device host worker-1" in (result.error or "")
    assert 1 <= len(result.kpis) < 5
    assert (result.run_dir / "kpi.parquet").exists()


@pytest.mark.parametrize("case", NEW_SCENARIOS)
def test_new_scenarios_write_the_same_tables_with_their_devices_on_2_workers(
    tmp_path: Path, case: str
) -> None:
    """Every device side of the scenario runs on the workers (no host left in the run's process, each
    service told which worker holds which devices), and every table is bit-identical to the in-process run."""
    # Execute
    scenario, seed, rounds, overrides = NEW_SCENARIOS[case]
    models: list[Any] = []  # the run's model, in-process then on workers
    runs = {
        n: run_scenario(
            RunOptions(
                scenario,
                seed=seed,
                overrides=overrides,
                out_dir=tmp_path / str(n),
                rounds=rounds,
                workers=n,
                run_id=f"{case}-workers",  # the events name their run
            ),
            on_model=models.append,
        )
        for n in (0, 2)
    }
    # Assert: the devices' side ran on the workers
    assert [r.status for r in runs.values()] == ["finished", "finished"], [r.error for r in runs.values()]
    in_process, on_workers = models
    assert on_workers.hosts == [] and in_process.hosts != []
    for service in on_workers.services:
        if getattr(service, "members", None) is not None:
            assert set(service.members) == {"worker-0", "worker-1"}, service.service
    # Assert: identical tables and service summaries
    for table in TABLES:
        frames = [pd.read_parquet(runs[n].run_dir / f"{table}.parquet") for n in (0, 2)]
        pd.testing.assert_frame_equal(frames[1], frames[0], check_exact=True, obj=f"{case} {table}")
    assert runs[2].summary["services"] == runs[0].summary["services"]
    # Assert: what the workers did is in those tables
    requests = pd.read_parquet(runs[2].run_dir / "requests.parquet")
    if scenario == "unmanned-grazing":
        assert runs[2].kpis.forwarded.sum() > 0
        assert set(requests["way"]) == {"reuse", "scratch"} and (requests["updates"] > 0).all()
    elif scenario == "virtual-classroom":
        assert (requests["service"] == "virtual-teacher").sum() > 0
    elif scenario == "food-cycle":
        assert requests["installed"].eq(True).any()  # forecasts made on the devices, on the workers
    elif scenario == "industrial-robots":  # every cluster trained, robots inferred and split
        assert set(runs[2].kpis["service"]) == {"defects-step-1", "defects-step-2", "defects-step-3"}
        assert runs[2].kpis.accepted.sum() > 0
        control = requests[requests["service"] == "control-inference"]
        assert len(control) > 0 and (control["split_point"] < 5).any()
    else:  # disease-diagnosis: cases diagnosed; federated, the drift re-trained on the workers
        (service,) = [s for s in on_workers.services if isinstance(s, DiagnosisService)]
        assert set(service.members) == {"worker-0", "worker-1"}
        assert (requests["service"] == "diagnosis").sum() > 0
        (management,) = [s for s in on_workers.services if isinstance(s, ModelManagementService)]
        if case.endswith("federated"):
            assert any(r["retrain_started"] for r in management.records)
            assert management.trainer.campaigns >= 2


def test_a_full_robot_fleet_trains_the_same_models_on_2_workers(tmp_path: Path) -> None:
    """With 8 robots per cluster (cohorts of 8 in-process, 4 on each worker) the KPI rows are identical:
    the CNN's training steps fixed blocks of devices, so no robot's result depends on its cohort."""
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
