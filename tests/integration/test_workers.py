"""Device hosts on Ray workers: same results for any number of workers; a dead worker aborts the run.

A local Ray cluster is started once for the module; each run places its devices on N Ray actors that
talk to the run's embedded broker like any external device would.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from twin.runner import RunOptions, RunSession, run_scenario

ray = pytest.importorskip("ray")

pytestmark = [pytest.mark.slow, pytest.mark.broker]

SMALL = {"devices.count": "12", "inference.interval_s": "4"}


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
