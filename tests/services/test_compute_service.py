"""The compute service (paper §2.4.10): queues, EDF vs FCFS, admission control, its figures."""

from __future__ import annotations

import numpy as np
import pytest

from twin.services.compute import (
    ComputePool,
    ComputeServiceConfig,
    ComputeTargets,
    JobBatch,
    compute_service_report,
    simulate,
    summarise,
)

SERVER_FLOPS = np.array([1e12, 1e12])


def _loaded_trace(load: float, seed: int = 3, n: int = 6000) -> JobBatch:
    """Poisson-like arrivals at ``load`` of two servers; 70 % tight (25 ms), 30 % loose (250 ms) deadlines."""
    rng = np.random.default_rng(seed)
    mean_service_s = 0.005
    rate = load * len(SERVER_FLOPS) / (mean_service_s * np.exp(0.125))
    arrival = np.sort(rng.uniform(0.0, n / rate, n))
    flops = rng.lognormal(np.log(mean_service_s * 1e12), 0.5, n)
    deadline = arrival + np.where(rng.random(n) < 0.7, 0.025, 0.25)
    return JobBatch(np.arange(n), arrival, flops, deadline, rng.integers(0, 2, n))


@pytest.mark.parametrize("admission", [False, True])
def test_edf_meets_more_deadlines_than_fcfs_under_load(admission: bool) -> None:
    """Same job trace at 90 % load: EDF (earliest deadline first) meets more deadlines than FCFS."""
    # Prepare
    jobs = _loaded_trace(0.9)
    # Execute
    edf = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig(policy="edf", admission=admission))
    fcfs = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig(policy="fcfs", admission=admission))
    # Assert
    assert edf.met.mean() > fcfs.met.mean() + 0.02
    for settled in (edf, fcfs):  # every job settled exactly once
        assert sorted(settled.job_id.tolist()) == list(range(len(jobs.job_id)))


def test_admission_refuses_instead_of_missing() -> None:
    """With admission control no admitted job misses its deadline; without it, overload makes jobs late."""
    # Prepare
    jobs = _loaded_trace(1.05)
    # Execute
    admitted = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig(policy="edf", admission=True))
    open_door = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig(policy="edf", admission=False))
    # Assert
    assert 0.5 < admitted.admitted.mean() < 1.0
    assert admitted.met[admitted.admitted].all()
    assert open_door.admitted.all()
    assert open_door.met.mean() < admitted.met.mean()


def test_light_load_admits_everything_on_time() -> None:
    """At 20 % load all but the odd job too big for its own deadline is admitted, on time, barely queued."""
    jobs = _loaded_trace(0.2, n=2000)
    settled = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig())
    too_big = jobs.flops / SERVER_FLOPS[0] > jobs.deadline_s - jobs.arrival_s
    assert settled.admitted.mean() >= 1.0 - too_big.mean() - 0.01
    assert settled.met.mean() > 0.99
    assert float(np.nanmean(settled.queueing_s)) < 0.002


def test_servers_are_non_preemptive_and_serve_one_job_at_a_time() -> None:
    """On each server, service intervals never overlap and each lasts FLOPs ÷ FLOP/s."""
    jobs = _loaded_trace(0.95, n=3000)
    settled = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig(policy="edf", admission=False))
    flops = dict(zip(jobs.job_id.tolist(), jobs.flops.tolist(), strict=True))
    for server in (0, 1):
        mine = settled.server == server
        order = np.argsort(settled.start_s[mine])
        start, finish = settled.start_s[mine][order], settled.finish_s[mine][order]
        assert (start[1:] >= finish[:-1] - 1e-12).all()
        ids = settled.job_id[mine][order]
        expected = np.array([flops[i] for i in ids.tolist()]) / SERVER_FLOPS[server]
        np.testing.assert_allclose(finish - start, expected)
        assert (start >= settled.arrival_s[mine][order]).all()


def test_interval_by_interval_equals_the_whole_trace() -> None:
    """Offering the trace one second at a time settles every job as one call over the whole trace does."""
    # Prepare
    jobs = _loaded_trace(0.9, n=3000)
    config = ComputeServiceConfig(policy="edf", admission=True)
    whole = simulate(SERVER_FLOPS, jobs, config)
    pool = ComputePool(SERVER_FLOPS, config)
    # Execute
    parts = []
    end = float(np.ceil(jobs.arrival_s.max()))
    for t in np.arange(0.0, end):
        window = np.flatnonzero((jobs.arrival_s >= t) & (jobs.arrival_s < t + 1.0))
        parts.append(pool.run(jobs.take(window), t + 1.0))
    parts.append(pool.drain())
    # Assert
    ids = np.concatenate([p.job_id for p in parts])
    finish = np.concatenate([p.finish_s for p in parts])
    by_id = dict(zip(ids.tolist(), finish.tolist(), strict=True))
    whole_by_id = dict(zip(whole.job_id.tolist(), whole.finish_s.tolist(), strict=True))
    assert by_id.keys() == whole_by_id.keys()
    np.testing.assert_array_equal(
        np.array([by_id[k] for k in sorted(by_id)]), np.array([whole_by_id[k] for k in sorted(by_id)])
    )


def test_earliest_placement_balances_an_unbalanced_load() -> None:
    """Every job homed on server 0: placement `earliest` uses both servers and meets more deadlines."""
    jobs = _loaded_trace(0.7, n=3000)
    homed = JobBatch(
        jobs.job_id, jobs.arrival_s, jobs.flops, jobs.deadline_s, np.zeros_like(jobs.home_server)
    )
    serving = simulate(SERVER_FLOPS, homed, ComputeServiceConfig(placement="serving"))
    earliest = simulate(SERVER_FLOPS, homed, ComputeServiceConfig(placement="earliest"))
    assert set(serving.server.tolist()) == {0}
    assert set(earliest.server.tolist()) == {0, 1}
    assert earliest.met.mean() > serving.met.mean()


def test_report_counts_misses_and_refusals() -> None:
    """The QoAIS report fails a pool that refuses too much, and names the indicator."""
    jobs = _loaded_trace(1.05)
    settled = simulate(SERVER_FLOPS, jobs, ComputeServiceConfig())
    summary = summarise(
        admitted=settled.admitted,
        met=settled.met,
        queueing_s=settled.queueing_s,
        latency_s=settled.finish_s - settled.arrival_s,
        energy_j=np.ones(len(settled.job_id)),
        utilisation=np.array([0.95, 0.97]),
    )
    report = compute_service_report(
        "edge-compute",
        summary,
        ComputeTargets(),
        ComputeServiceConfig(),
        tls=False,
        authenticated=True,
        privacy_detail="",
    )
    assert summary["admitted_share"] == pytest.approx(settled.admitted.mean())
    assert summary["deadline_miss_rate"] == 0.0
    assert not report.passed
    failed = {i.name for i in report.indicators if not i.passed}
    assert {"admitted_share", "utilisation_mean"} <= failed


def test_bad_pool_is_refused() -> None:
    """A pool without servers, or going back in time, is refused with a message."""
    with pytest.raises(ValueError, match="server"):
        ComputePool(np.array([]), ComputeServiceConfig())
    pool = ComputePool(SERVER_FLOPS, ComputeServiceConfig())
    pool.run(JobBatch.empty(), 5.0)
    with pytest.raises(ValueError, match="before"):
        pool.run(JobBatch.empty(), 4.0)
