"""The compute service's network side (paper §2.4.10): jobs offloaded by devices, run on edge servers.

Each interval, the jobs devices offloaded (their sizes as requested over MQTT) are turned into the
twin's physics — arrival at the server after the uplink, a server deadline that leaves room for the
downlink of the result — and handed to :class:`twin.services.compute.ComputePool`, which queues,
schedules (EDF or FCFS) and admits them on the base stations' edge servers. One record per settled job.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np

from twin.energy import NETWORK
from twin.kpi import compute_energy_j, transmission_energy_j
from twin.qoais import ServiceReport
from twin.services.compute import (
    ComputePool,
    ComputeServiceConfig,
    ComputeTargets,
    JobBatch,
    Settled,
    compute_service_report,
    summarise,
)

if TYPE_CHECKING:
    from twin.model import TwinModel


@dataclass(frozen=True, slots=True)
class OffloadedJob:
    """A job a device asks the network to run, as requested (sizes) and generated (time)."""

    agent_id: str
    kind: str
    generated_s: float
    flops: float
    input_bits: float
    output_bits: float
    latency_target_s: float


class EdgeComputeService:
    """Edge servers (one per base station) running the jobs devices offload, with their records."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        config: ComputeServiceConfig,
        targets: ComputeTargets,
        privacy_detail: str,
    ) -> None:
        self.model = model
        self.service = service
        self.config = config
        self.targets = targets
        self.privacy_detail = privacy_detail
        self.server_ids = [bs.agent_id for bs in model.base_stations]
        self._index = {s: i for i, s in enumerate(self.server_ids)}
        self.edge = [bs.edge for bs in model.base_stations]
        self.pool = ComputePool(np.array([e.flops_per_s for e in self.edge]), config)
        self.records: list[dict[str, Any]] = []
        self._meta: dict[int, tuple[OffloadedJob, float, float, int]] = {}  # id → job, up_s, down_s, tick
        self._next_id = 0
        model.services.append(self)

    def offer(self, jobs: list[OffloadedJob], *, tick: int, until_s: float) -> None:
        """Offload ``jobs`` (already in a deterministic order) and run the servers to ``until_s``."""
        model = self.model
        devices = [model.device(j.agent_id) for j in jobs]
        up_bps = np.array([d.uplink_bps for d in devices], dtype=float)
        down_bps = np.array([d.downlink_bps for d in devices], dtype=float)
        reachable = (up_bps > 0) & (down_bps > 0)
        safe_up, safe_down = np.where(reachable, up_bps, 1.0), np.where(reachable, down_bps, 1.0)
        up_s = np.where(reachable, np.array([j.input_bits for j in jobs]) / safe_up, np.inf)
        down_s = np.where(reachable, np.array([j.output_bits for j in jobs]) / safe_down, np.inf)
        generated = np.array([j.generated_s for j in jobs], dtype=float)
        target = np.array([j.latency_target_s for j in jobs], dtype=float)
        ids = np.arange(self._next_id, self._next_id + len(jobs), dtype=np.int64)
        self._next_id += len(jobs)
        for job_id, job, u, dn in zip(ids.tolist(), jobs, up_s.tolist(), down_s.tolist(), strict=True):
            self._meta[job_id] = (job, u, dn, tick)
        home = np.array([self._index.get(d.serving_cell, 0) for d in devices], dtype=np.int64)
        offered = np.flatnonzero(reachable)
        batch = JobBatch(
            ids[offered],
            (generated + up_s)[offered],
            np.array([j.flops for j in jobs], dtype=float)[offered],
            (generated + target - down_s)[offered],
            home[offered],
        )
        settled = self.pool.run(batch, until_s)
        unreachable = np.flatnonzero(~reachable)
        if len(unreachable):
            nan = np.full(len(unreachable), math.nan)
            self._record(
                Settled(
                    ids[unreachable],
                    np.full(len(unreachable), -1),
                    np.zeros(len(unreachable), bool),
                    generated[unreachable],
                    nan,
                    nan,
                    nan,
                )
            )
        self._record(settled)

    def _record(self, settled: Settled) -> None:
        """Energy booked (edge compute, radio both ends) and one record per settled job."""
        if not len(settled.job_id):
            return
        model, link = self.model, self.model.link_cfg
        metas = [self._meta.pop(int(i)) for i in settled.job_id]
        jobs = [m[0] for m in metas]
        ids = [j.agent_id for j in jobs]
        admitted = settled.admitted
        up_s = np.array([m[1] for m in metas])
        down_s = np.array([m[2] for m in metas])
        flops = np.array([j.flops for j in jobs])
        server = settled.server
        efficiency = np.array(
            [self.edge[s].efficiency_flops_per_j if s >= 0 else 1.0 for s in server.tolist()]
        )
        e_edge = np.where(admitted, compute_energy_j(flops, efficiency), 0.0)
        sent_s = np.where(np.isfinite(up_s), up_s, 0.0)  # a refused job was still sent
        e_up = link.ue_radio_power_w * sent_s
        e_down = link.ue_radio_power_w * np.where(admitted, down_s, 0.0)
        e_radio = e_up + e_down
        devices = [model.device(a) for a in ids]
        down_bps = np.array([d.downlink_bps for d in devices])
        share = np.array([model.cell_share(a) for a in ids], dtype=float)
        out_bits = np.array([j.output_bits for j in jobs])
        with np.errstate(divide="ignore", invalid="ignore"):
            e_cell = np.where(
                admitted & (down_bps > 0),
                transmission_energy_j(
                    out_bits, np.where(down_bps > 0, down_bps, 1.0) * share / link.bs_power_w
                ),
                0.0,
            )
        model.energy.add_many(ids, "uplink", e_up, service=self.service)
        model.energy.add_many(ids, "downlink", e_down, service=self.service)
        model.energy.add_many([NETWORK] * len(ids), "compute", e_edge, service=self.service)
        model.energy.add_many([NETWORK] * len(ids), "downlink", e_cell, service=self.service)
        generated = np.array([j.generated_s for j in jobs])
        latency = settled.finish_s + down_s - generated
        met = settled.met
        energy = e_edge + e_radio + e_cell
        for k, job in enumerate(jobs):
            self.records.append(
                {
                    "tick": metas[k][3],
                    "sim_time_s": job.generated_s,
                    "agent_id": job.agent_id,
                    "job_kind": job.kind,
                    "server": self.server_ids[int(server[k])] if server[k] >= 0 else "",
                    "admitted": bool(admitted[k]),
                    "queueing_s": float(settled.start_s[k] - settled.arrival_s[k]),
                    "latency_s": float(latency[k]),
                    "deadline_met": bool(met[k]),
                    "energy_j": float(energy[k]),
                }
            )

    def server_load(self) -> dict[str, tuple[int, float]]:
        """Each edge server's queue length now and its utilisation so far (for the map)."""
        queues = self.pool.queue_lengths.tolist()
        busy = self.pool.utilisation().tolist()
        return {s: (int(q), float(u)) for s, q, u in zip(self.server_ids, queues, busy, strict=True)}

    def summary(self) -> dict[str, float]:
        """Service figures over every settled job."""
        if not self.records:
            return {}
        recs = self.records
        out = summarise(
            admitted=np.array([r["admitted"] for r in recs], dtype=bool),
            met=np.array([r["deadline_met"] for r in recs], dtype=bool),
            queueing_s=np.array([r["queueing_s"] for r in recs]),
            latency_s=np.array([r["latency_s"] for r in recs]),
            energy_j=np.array([r["energy_j"] for r in recs]),
            utilisation=self.pool.utilisation(),
        )
        for kind in sorted({r["job_kind"] for r in recs}):
            mine = [r for r in recs if r["job_kind"] == kind]
            out[f"{kind}_deadline_met_share"] = float(np.mean([r["deadline_met"] for r in mine]))
        return out

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the compute service over every settled job."""
        return compute_service_report(
            self.service,
            self.summary(),
            self.targets,
            self.config,
            tls=tls,
            authenticated=authenticated,
            privacy_detail=self.privacy_detail,
        )
