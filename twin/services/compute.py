"""Compute service (paper §2.4.10): edge servers of finite capacity, one queue each, a scheduling policy.

Jobs (rendering, assessment, inference …) arrive at edge servers, wait in the server's queue and run
one at a time, **non-preemptively**, for ``flops / server FLOP/s`` seconds. Which queued job runs next
is the configured policy:

- ``fcfs`` — first come, first served (arrival time, then job id);
- ``edf`` — earliest deadline first (absolute deadline, then job id).

**Admission control** (``admission = true``): when a job arrives, the server predicts the schedule of
its queue with the job in it (no later arrivals assumed); the job is refused if it would miss its own
deadline, or — under EDF — would make a job already admitted miss a deadline it would otherwise meet.
A refused job is handed back at once (the requester falls back, e.g. renders locally at lower quality),
so it never clogs the queue. **Placement**: ``serving`` sends a job to its serving cell's server;
``earliest`` to the server predicted to finish it first, a server other than the serving cell's costing
``backhaul_s`` each way (taken off the job's deadline: a simplification that ignores that the transfer
itself would delay the start).

The pool is stateful over a run: :meth:`ComputePool.run` takes the jobs of one interval and advances
the servers to its end; jobs that arrive after it, or are still queued, carry over. Every job is
settled (refused, or started — and so its finish known, the servers being non-preemptive) exactly once.
Pure logic over numpy arrays: no I/O, no clock, no randomness. The event loop is one Python iteration per
job — each arrival's admission decision depends on the queue every earlier arrival left behind — and is
linear in the jobs (queues are short); the outcome arrays and the statistics are vectorised.
"""

from __future__ import annotations

import bisect
import math
from dataclasses import dataclass, field
from typing import Literal

import numpy as np

from twin.config import check_positive, check_range
from twin.qoais import Indicator, ServiceReport, graded_indicators

Policy = Literal["edf", "fcfs"]
Placement = Literal["serving", "earliest"]


@dataclass(frozen=True, slots=True)
class ComputeServiceConfig:
    """How the edge servers schedule and admit jobs."""

    policy: Policy = "edf"
    """Which queued job a free server runs next: earliest deadline (edf) or first come (fcfs)."""
    admission: bool = True
    """Refuse a job whose deadline (or an admitted job's) the server predicts it would miss."""
    placement: Placement = "serving"
    """Server of a job: its serving cell's (serving) or the one predicted to finish it first (earliest)."""
    backhaul_s: float = 0.002
    """One-way delay to reach an edge server other than the serving cell's."""

    def __post_init__(self) -> None:
        check_range("compute", "backhaul_s", self.backhaul_s, 0.0, 10.0)


@dataclass(frozen=True, slots=True)
class ComputeTargets:
    """QoAIS targets of the compute service; graded dimensions are levels 1 (low) … 5 (high)."""

    deadline_miss_rate: float = 0.01
    """Largest share of admitted jobs finishing after their deadline."""
    admitted_share: float = 0.95
    """Smallest share of offered jobs the servers admit."""
    queueing_delay_p95_s: float = 0.02
    """Largest 95th percentile of the time a job waits in a queue."""
    utilisation_max: float = 0.9
    """Largest mean utilisation of the servers (headroom for bursts)."""
    energy_per_job_j: float = 20.0
    """Largest mean energy of one job: server compute and both radio transfers."""
    privacy_level: int = 3
    """Target privacy level, 1 (low) … 5 (high)."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high)."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Autonomy the service must offer."""

    def __post_init__(self) -> None:
        check_range("compute_qoais", "deadline_miss_rate", self.deadline_miss_rate, 0.0, 1.0)
        check_range("compute_qoais", "admitted_share", self.admitted_share, 0.0, 1.0)
        check_range("compute_qoais", "utilisation_max", self.utilisation_max, 0.0, 1.0)
        check_positive(
            "compute_qoais",
            queueing_delay_p95_s=self.queueing_delay_p95_s,
            energy_per_job_j=self.energy_per_job_j,
        )
        check_range("compute_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("compute_qoais", "security_level", self.security_level, 1, 5)


@dataclass(frozen=True, slots=True)
class JobBatch:
    """Jobs offered to the pool, one entry per job (arrays of equal length).

    ``arrival_s`` is when a job reaches the server side, ``deadline_s`` the latest finish at the server
    that still meets the job's end-to-end target, ``home_server`` the index of its serving cell's server.
    """

    job_id: np.ndarray
    arrival_s: np.ndarray
    flops: np.ndarray
    deadline_s: np.ndarray
    home_server: np.ndarray

    def __post_init__(self) -> None:
        n = len(self.job_id)
        for name in ("arrival_s", "flops", "deadline_s", "home_server"):
            if len(getattr(self, name)) != n:
                raise ValueError(f"JobBatch.{name} has {len(getattr(self, name))} entries, job_id has {n}")
        if n and not (np.isfinite(self.arrival_s).all() and (self.flops > 0).all()):
            raise ValueError("JobBatch: arrivals must be finite and every job's FLOPs > 0")

    @staticmethod
    def empty() -> JobBatch:
        """A batch of no job."""
        return JobBatch(np.zeros(0, np.int64), np.zeros(0), np.zeros(0), np.zeros(0), np.zeros(0, np.int64))

    def take(self, index: np.ndarray) -> JobBatch:
        """The jobs at ``index``."""
        return JobBatch(
            self.job_id[index],
            self.arrival_s[index],
            self.flops[index],
            self.deadline_s[index],
            self.home_server[index],
        )

    @staticmethod
    def concat(batches: list[JobBatch]) -> JobBatch:
        """The jobs of every batch, in order."""
        if not batches:
            return JobBatch.empty()
        return JobBatch(
            *(np.concatenate([getattr(b, f) for b in batches]) for f in JobBatch.__slots__)  # type: ignore[arg-type]
        )


@dataclass(frozen=True, slots=True)
class Settled:
    """Jobs settled by one :meth:`ComputePool.run`, in the order they were settled (arrays)."""

    job_id: np.ndarray
    server: np.ndarray
    """Server index (-1: refused before a server was chosen — never the case with a pool of ≥ 1)."""
    admitted: np.ndarray
    arrival_s: np.ndarray
    deadline_s: np.ndarray
    start_s: np.ndarray
    """Start of service (NaN: refused)."""
    finish_s: np.ndarray
    """End of service (NaN: refused)."""

    @property
    def queueing_s(self) -> np.ndarray:
        """Time each admitted job waited in its queue (NaN: refused)."""
        return self.start_s - self.arrival_s

    @property
    def met(self) -> np.ndarray:
        """Whether each job finished by its deadline (a refused job did not)."""
        with np.errstate(invalid="ignore"):
            return self.admitted & (self.finish_s <= self.deadline_s)


@dataclass(slots=True)
class _Queued:
    key: tuple[float, int]
    job_id: int
    arrival_s: float
    deadline_s: float
    service_s: float


@dataclass(slots=True)
class _Server:
    flops_per_s: float
    busy_until_s: float = 0.0
    busy_s: float = 0.0
    queue: list[_Queued] = field(default_factory=list)  # sorted by the policy's key


class ComputePool:
    """Edge servers with a queue each, scheduled by ``config.policy`` (see the module docstring)."""

    def __init__(self, flops_per_s: np.ndarray, config: ComputeServiceConfig) -> None:
        capacities = np.asarray(flops_per_s, dtype=float)
        if capacities.ndim != 1 or len(capacities) == 0 or not (capacities > 0).all():
            raise ValueError(f"ComputePool needs ≥ 1 server with FLOP/s > 0, got {capacities!r}")
        self.config = config
        self.servers = [_Server(float(f)) for f in capacities]
        self.clock_s = 0.0
        self._held = JobBatch.empty()  # offered, arriving after the last horizon
        self._out: dict[str, list[float]] = {k: [] for k in Settled.__slots__}

    # ---- state ---------------------------------------------------------------------------------
    @property
    def queue_lengths(self) -> np.ndarray:
        """Jobs waiting (not in service) at each server now."""
        return np.array([len(s.queue) for s in self.servers], dtype=np.int64)

    @property
    def busy_s(self) -> np.ndarray:
        """Seconds of service each server has started so far (its whole service counted at start)."""
        return np.array([s.busy_s for s in self.servers])

    def utilisation(self, since_s: float = 0.0) -> np.ndarray:
        """Busy share of each server over ``[since_s, clock]`` (service clipped at the clock)."""
        span = self.clock_s - since_s
        if span <= 0:
            return np.zeros(len(self.servers))
        overhang = np.array([max(0.0, s.busy_until_s - self.clock_s) for s in self.servers])
        return np.clip((self.busy_s - overhang) / span, 0.0, 1.0)

    # ---- running -------------------------------------------------------------------------------
    def run(self, jobs: JobBatch, until_s: float) -> Settled:
        """Offer ``jobs`` and advance every server to ``until_s``; the jobs settled meanwhile.

        Jobs arriving at or after ``until_s`` are held for the next call; arrivals are handled in time
        order (ties by job id), each one after the servers have started what they could before it.
        """
        if until_s < self.clock_s:
            raise ValueError(f"ComputePool.run: until_s {until_s} is before the pool's clock {self.clock_s}")
        offered = JobBatch.concat([self._held, jobs])
        order = np.lexsort((offered.job_id, offered.arrival_s))
        offered = offered.take(order)
        now = offered.arrival_s < until_s
        self._held = offered.take(np.flatnonzero(~now))
        due = offered.take(np.flatnonzero(now))
        service_s = np.stack([due.flops / s.flops_per_s for s in self.servers], axis=1)
        for i in range(len(due.job_id)):
            t = max(float(due.arrival_s[i]), self.clock_s)
            for index in range(len(self.servers)):
                self._dispatch(index, t)
            self._arrive(
                int(due.job_id[i]), t, float(due.deadline_s[i]), int(due.home_server[i]), service_s[i]
            )
        for index in range(len(self.servers)):
            self._dispatch(index, until_s, inclusive=False)
        self.clock_s = until_s
        return self._take_settled()

    def _arrive(self, job_id: int, t: float, deadline_s: float, home: int, service_s: np.ndarray) -> None:
        """Place and admit (or refuse) one arriving job; start it at once if its server is free."""
        cfg = self.config
        if cfg.placement == "earliest":
            extra = np.full(len(self.servers), 2.0 * cfg.backhaul_s)
            extra[home] = 0.0
            finish = np.array([self._fcfs_finish(s, t) for s in self.servers]) + service_s + extra
            index = int(np.argmin(finish))  # first minimum: ties go to the lower server index
            deadline_s -= float(extra[index])
        else:
            index = home
        server = self.servers[index]
        own_s = float(service_s[index])
        if cfg.admission and not self._admissible(server, t, deadline_s, job_id, own_s):
            self._settle(job_id, index, False, t, deadline_s, math.nan, math.nan)
            return
        key = (deadline_s, job_id) if cfg.policy == "edf" else (t, job_id)
        bisect.insort(server.queue, _Queued(key, job_id, t, deadline_s, own_s), key=lambda q: q.key)
        self._dispatch(index, t)

    @staticmethod
    def _fcfs_finish(server: _Server, t: float) -> float:
        """When the server would have served everything queued now (the job's own service not included)."""
        return max(server.busy_until_s, t) + sum(q.service_s for q in server.queue)

    def _admissible(self, server: _Server, t: float, deadline_s: float, job_id: int, own_s: float) -> bool:
        """Whether the predicted schedule with the job meets its deadline and harms no admitted job."""
        free = max(server.busy_until_s, t)
        if self.config.policy == "fcfs":
            return self._fcfs_finish(server, t) + own_s <= deadline_s
        queue = server.queue
        service = np.array([q.service_s for q in queue])
        deadlines = np.array([q.deadline_s for q in queue])
        at = bisect.bisect_right([q.key for q in queue], (deadline_s, job_id))
        finish_without = free + np.cumsum(service)
        own_finish = free + float(service[:at].sum()) + own_s
        if own_finish > deadline_s:
            return False
        later_without = finish_without[at:]
        harmed = (later_without <= deadlines[at:]) & (later_without + own_s > deadlines[at:])
        return not bool(harmed.any())

    def _dispatch(self, index: int, t: float, *, inclusive: bool = True) -> None:
        """Start queued jobs on server ``index`` while it falls free at or before ``t``."""
        server = self.servers[index]
        while server.queue and (server.busy_until_s <= t if inclusive else server.busy_until_s < t):
            job = server.queue.pop(0)
            start = max(server.busy_until_s, job.arrival_s)
            server.busy_until_s = start + job.service_s
            server.busy_s += job.service_s
            self._settle(job.job_id, index, True, job.arrival_s, job.deadline_s, start, server.busy_until_s)

    def _settle(
        self,
        job_id: int,
        server: int,
        admitted: bool,
        arrival: float,
        deadline: float,
        start: float,
        end: float,
    ) -> None:
        out = self._out
        for name, value in zip(
            Settled.__slots__, (job_id, server, admitted, arrival, deadline, start, end), strict=True
        ):
            out[name].append(value)

    def _take_settled(self) -> Settled:
        out = self._out
        settled = Settled(
            np.array(out["job_id"], dtype=np.int64),
            np.array(out["server"], dtype=np.int64),
            np.array(out["admitted"], dtype=bool),
            np.array(out["arrival_s"], dtype=float),
            np.array(out["deadline_s"], dtype=float),
            np.array(out["start_s"], dtype=float),
            np.array(out["finish_s"], dtype=float),
        )
        self._out = {k: [] for k in Settled.__slots__}
        return settled

    def drain(self) -> Settled:
        """Start every job still held or queued (no new arrivals), for a whole trace's outcome."""
        parts = []
        while len(self._held.job_id) or any(s.queue for s in self.servers):
            horizon = max(
                [self.clock_s, *(float(a) for a in self._held.arrival_s)]
                + [s.busy_until_s + sum(q.service_s for q in s.queue) for s in self.servers]
            )
            parts.append(self.run(JobBatch.empty(), math.nextafter(horizon, math.inf)))
        if not parts:
            return self._take_settled()
        return Settled(*(np.concatenate([getattr(p, f) for p in parts]) for f in Settled.__slots__))


def simulate(flops_per_s: np.ndarray, jobs: JobBatch, config: ComputeServiceConfig) -> Settled:
    """Settle a whole job trace on fresh servers (every job started or refused)."""
    pool = ComputePool(flops_per_s, config)
    first = pool.run(jobs, float(jobs.arrival_s.max()) if len(jobs.job_id) else 0.0)
    rest = pool.drain()
    return Settled(*(np.concatenate([getattr(first, f), getattr(rest, f)]) for f in Settled.__slots__))


def summarise(
    *,
    admitted: np.ndarray,
    met: np.ndarray,
    queueing_s: np.ndarray,
    latency_s: np.ndarray,
    energy_j: np.ndarray,
    utilisation: np.ndarray,
) -> dict[str, float]:
    """Service figures of settled jobs: admission, deadlines, queueing, utilisation, latency, energy.

    One entry per job: whether it was admitted and met its deadline, its queueing and end-to-end
    latency (NaN for a refused job) and its energy; ``utilisation`` has one entry per server.
    """
    n = len(admitted)
    if n == 0:
        return {}
    n_admitted = int(admitted.sum())
    waits = queueing_s[admitted]
    finite_latency = latency_s[np.isfinite(latency_s)]
    return {
        "jobs": float(n),
        "admitted_share": n_admitted / n,
        "deadline_met_share": float(met.mean()),
        "deadline_miss_rate": float((~met[admitted]).mean()) if n_admitted else math.nan,
        "queueing_mean_s": float(waits.mean()) if n_admitted else math.nan,
        "queueing_p95_s": float(np.percentile(waits, 95)) if n_admitted else math.nan,
        "latency_p95_s": float(np.percentile(finite_latency, 95)) if len(finite_latency) else math.nan,
        "utilisation_mean": float(np.mean(utilisation)) if len(utilisation) else math.nan,
        "utilisation_max": float(np.max(utilisation)) if len(utilisation) else math.nan,
        "energy_per_job_j": float(np.mean(energy_j)),
    }


def compute_service_report(
    service: str,
    summary: dict[str, float],
    targets: ComputeTargets,
    config: ComputeServiceConfig,
    *,
    tls: bool,
    authenticated: bool,
    privacy_detail: str,
) -> ServiceReport:
    """QoAIS of the compute service (Table 3-1 dimensions) from :func:`summarise`'s figures."""
    kind = "compute (edge scheduling)"
    if not summary:
        return ServiceReport(service, kind, (), ("no job offered: nothing to assess",))
    policy = f"{config.policy.upper()}, admission {'on' if config.admission else 'off'}"
    indicators = (
        Indicator(
            "performance",
            "deadline_miss_rate",
            summary["deadline_miss_rate"],
            targets.deadline_miss_rate,
            "",
            "max",
            f"admitted jobs finishing late ({policy}); all jobs on time: {summary['deadline_met_share']:.3f}",
        ),
        Indicator(
            "performance",
            "admitted_share",
            summary["admitted_share"],
            targets.admitted_share,
            "",
            "min",
            "refused jobs fall back to the terminal",
        ),
        Indicator(
            "performance",
            "queueing_delay_p95",
            summary["queueing_p95_s"],
            targets.queueing_delay_p95_s,
            " s",
            "max",
            f"mean {summary['queueing_mean_s'] * 1000:.2f} ms",
        ),
        Indicator(
            "overhead",
            "utilisation_mean",
            summary["utilisation_mean"],
            targets.utilisation_max,
            "",
            "max",
            f"busiest server {summary['utilisation_max']:.2f}",
        ),
        Indicator(
            "overhead",
            "energy_per_job",
            summary["energy_per_job_j"],
            targets.energy_per_job_j,
            " J",
            "max",
            "edge compute + radio at both ends",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=True,
            privacy_detail=privacy_detail,
        ),
    )
    notes = (
        f"jobs: {int(summary['jobs'])}; end-to-end latency p95 {summary['latency_p95_s'] * 1000:.1f} ms; "
        f"placement {config.placement}",
    )
    return ServiceReport(service, kind, indicators, notes)
