"""Federated training with **store and forward** for devices that are out of coverage for long stretches.

The network agent of :mod:`agents.network`, with one change of physics: a device's round is not a
timeline fixed at the round's start but a **transfer the twin drains second by second** from the
device's link at that second (terrestrial, satellite or none, :mod:`twin.satellite_model`):

download the global model (bits ÷ the downlink rate of each second; a one-way delay on arrival) →
train (FLOPs ÷ FLOP/s) → upload the update (bits ÷ the uplink rate of each second; a one-way delay).

While a device has no link its transfer waits: the device **stores** the update and **forwards** it
when a terrestrial cell or a satellite pass serves it again. The arrival time is always the twin's,
computed from its own link model, never taken from the sender; the update's bytes travel over MQTT at
once (the device host trains when the plan and global model reach it), and the network holds them
until their modelled arrival.

Aggregation (:mod:`twin.learning.staleness`): an update is aggregated **into the round in which it
arrives** — the first round closed at or after its arrival — as the change it made to the global model
it started from, weighted by its sample count × ``(1 + τ)^−a`` (τ = rounds late). Each (device, round)
update is aggregated **exactly once** (:attr:`StoreForwardTraining.aggregated` logs where); a device
still storing an update is not selected again until it has forwarded it. Updates still in flight when
the run ends are counted (``in_flight``), never silently dropped. After the last round the service is
over (:meth:`~agents.network.NetworkAgent.on_rounds_limit` is called, which ends the run unless a
subclass lets other services go on) and nothing is drained any more.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

import numpy as np

from agents.device import Device, DeviceState, RoundTiming
from agents.network import NetworkAgent, RoundState, _median
from twin.energy import NETWORK
from twin.kpi import co2_kg, compute_energy_j
from twin.learning.aggregation import ClientUpdate, Params
from twin.learning.cohort import evaluate
from twin.learning.staleness import StaleUpdate, aggregate_with_staleness

if TYPE_CHECKING:
    from collections.abc import Callable

    from twin.model import TwinModel

HORIZON_S = 1e7
"""How far ahead the twin predicts a transfer at the round's start (at the links of that instant)."""


@dataclass(slots=True)
class Transfer:
    """One device's round as the twin models it: phases of work left, drained second by second."""

    agent_id: str
    origin_round: int
    clock_s: float
    phases: list[tuple[str, float]]
    """(``down``/``up`` bits, ``compute`` FLOPs, ``wait`` seconds of propagation) still to do, in order."""
    done_s: float | None = None
    """When the update has fully arrived at the network (None: still stored or in flight)."""
    radio_s: float = 0.0
    contacts: list[str] = field(default_factory=list)
    """Bearer used by each completed transfer (download, upload)."""


@dataclass(frozen=True, slots=True)
class LinkNow:
    """A device's link during one second: rates, one-way delay, bearer."""

    downlink_bps: float
    uplink_bps: float
    latency_s: float
    bearer: str


@dataclass(slots=True)
class Progress:
    """What one :func:`advance` moved: radio seconds each way and downlink bits (for energy)."""

    down_s: float = 0.0
    up_s: float = 0.0
    down_bits: float = 0.0


def advance(transfer: Transfer, until_s: float, link: LinkNow, flops_per_s: float) -> Progress:
    """Drain ``transfer`` from its clock up to ``until_s`` with ``link`` constant over that span.

    A transfer phase stops (the device stores) while its rate is 0; a completed transfer adds the
    link's one-way delay before the next phase; compute needs no link.
    """
    progress = Progress()
    t = transfer.clock_s
    while t < until_s and transfer.phases:
        kind, left = transfer.phases[0]
        budget = until_s - t
        if kind in ("down", "up"):
            rate = link.downlink_bps if kind == "down" else link.uplink_bps
            if rate <= 0:
                break  # no link: stored until one serves the device
            dt = min(budget, left / rate)
            if kind == "down":
                progress.down_s += dt
                progress.down_bits += dt * rate
            else:
                progress.up_s += dt
            t += dt
            if left <= rate * budget:
                transfer.phases.pop(0)
                transfer.contacts.append(link.bearer)
                if link.latency_s > 0:
                    transfer.phases.insert(0, ("wait", link.latency_s))
            else:
                transfer.phases[0] = (kind, left - rate * budget)
        else:
            rate = flops_per_s if kind == "compute" else 1.0
            dt = min(budget, left / rate)
            t += dt
            if left <= rate * budget:
                transfer.phases.pop(0)
            else:
                transfer.phases[0] = (kind, left - rate * budget)
    if not transfer.phases and transfer.done_s is None:
        transfer.done_s = t
    transfer.clock_s = max(transfer.clock_s, until_s if transfer.phases else t)
    transfer.radio_s += progress.down_s + progress.up_s
    return progress


def link_now(device: Any) -> LinkNow:
    """The link a device has this second (bearer and delay from :mod:`twin.satellite_model`)."""
    return LinkNow(
        float(device.downlink_bps),
        float(device.uplink_bps),
        float(getattr(device, "link_latency_s", 0.0)),
        str(getattr(device, "bearer", "terrestrial")),
    )


class StoreForwardTraining(NetworkAgent):
    """Federated rounds whose late updates are stored by the devices and aggregated when they arrive."""

    def __init__(
        self,
        model: TwinModel,
        *,
        staleness_exponent: float,
        satellite_joules_per_bit: float,
        round_metrics: Callable[[Params], dict[str, float]] | None = None,
        **kwargs: Any,
    ) -> None:
        """The network agent of :class:`agents.network.NetworkAgent` (same keyword arguments), and more.

        Args:
            model: the twin.
            staleness_exponent: ``a`` of the staleness discount ``(1 + τ)^−a``.
            satellite_joules_per_bit: network energy of one bit sent through the satellite.
            round_metrics: extra KPI columns computed from each round's new global model.
            **kwargs: as :class:`~agents.network.NetworkAgent`.
        """
        super().__init__(model, **kwargs)
        if staleness_exponent < 0:
            raise ValueError(f"staleness exponent must be >= 0, got {staleness_exponent}")
        self.staleness_exponent = staleness_exponent
        self.satellite_joules_per_bit = satellite_joules_per_bit
        self.round_metrics = round_metrics
        self.transfers: dict[tuple[str, int], Transfer] = {}
        self.pending: dict[tuple[str, int], ClientUpdate] = {}
        """Updates received over the bus whose modelled arrival has not come yet (stored at the device)."""
        self.bases: dict[int, Params] = {}
        self.aggregated: dict[tuple[str, int], int] = {}
        """(device, round it trained in) → round it was aggregated into: each key once."""
        self.delivered_s: dict[tuple[str, int], float] = {}
        """(device, round it trained in) → the twin's arrival time of that update, once aggregated."""
        self.storing: list[str] = []
        self.finished = False
        """Whether the last round is over: nothing is drained after it (what is stored stays in flight)."""
        self._draining = False

    # ---- planning: transfers instead of fixed timelines -------------------------------------------
    def _plan_devices(self, state: RoundState) -> list[Device]:
        """Drop-outs, devices still storing an update, then a transfer per active device."""
        model = self.model
        self.bases[state.index] = {k: v.clone() for k, v in self.global_params.items()}
        busy = {key[0] for key, t in self.transfers.items() if t.done_s is None}
        rng = model.seeds.numpy(f"fl/dropout/{state.index}")
        drops = rng.random(len(state.selected)) < self.fl.dropout_prob
        active: list[Device] = []
        self.storing = []
        for agent_id, dropped in zip(state.selected, drops, strict=True):
            device = model.device(agent_id)
            if agent_id in busy:
                self.storing.append(agent_id)
            elif dropped:
                state.offline.append(agent_id)
                device.mark(DeviceState.OFFLINE)
                model.telemetry.event(
                    device.kind, agent_id, model.steps, model.time, "offline", round=state.index
                )
            else:
                active.append(device)
        if not active:
            return active
        fl = self.fl
        n = np.array([d.n_samples for d in active], dtype=np.int64)
        steps = fl.local_epochs * -(-n // fl.batch_size)
        flops = self.train_flops_per_sample * np.minimum(steps * fl.batch_size, n * fl.local_epochs)
        efficiency = np.array([d.compute.efficiency_flops_per_j for d in active], dtype=float)
        ids = [d.agent_id for d in active]
        model.energy.add_many(ids, "compute", compute_energy_j(flops, efficiency), service=self.service)
        for device, work in zip(active, flops.tolist(), strict=True):
            transfer = Transfer(
                device.agent_id,
                state.index,
                float(state.start_s),
                [("down", float(self.model_bits)), ("compute", float(work)), ("up", float(self.model_bits))],
            )
            self.transfers[(device.agent_id, state.index)] = transfer
            link = link_now(device)
            guess = copy.deepcopy(transfer)
            advance(guess, state.start_s + HORIZON_S, link, device.compute.flops_per_s)
            timing = RoundTiming(
                _seconds(self.model_bits, link.downlink_bps),
                work / device.compute.flops_per_s,
                _seconds(self.model_bits, link.uplink_bps),
            )
            device.set_round(state.start_s, timing)
            state.timings[device.agent_id] = timing
            state.arrivals_s[device.agent_id] = guess.done_s if guess.done_s is not None else float("inf")
        if not self._draining:
            self._draining = True
            model.schedule_event(self._drain, at=model.time)
        return active

    def _drain(self) -> None:
        """One simulated second of every transfer in flight, at the links of this second."""
        model = self.model
        if self.finished:  # the service is over (the run may go on for other services)
            self._draining = False
            return
        now = float(model.time)
        power = model.link_cfg.ue_radio_power_w
        for key in sorted(self.transfers):
            transfer = self.transfers[key]
            if transfer.done_s is not None:
                continue
            device = model.device(key[0])
            link = link_now(device)
            progress = advance(transfer, now + 1.0, link, device.compute.flops_per_s)
            if progress.up_s > 0:
                model.energy.add(key[0], "uplink", power * progress.up_s, service=self.service)
            if progress.down_s > 0:
                model.energy.add(key[0], "downlink", power * progress.down_s, service=self.service)
            if progress.down_bits > 0:
                model.energy.add(
                    NETWORK,
                    "downlink",
                    progress.down_bits * self._joules_per_bit(device, link),
                    service=self.service,
                )
        if any(t.done_s is None for t in self.transfers.values()):
            model.schedule_event(self._drain, at=now + 1.0)
        else:
            self._draining = False

    def _joules_per_bit(self, device: Any, link: LinkNow) -> float:
        """Network energy per downlink bit: satellite beam, or base station power ÷ the cell's rate."""
        if link.bearer == "satellite":
            return self.satellite_joules_per_bit
        cell_bps = link.downlink_bps * self.model.cell_share(device.agent_id)
        return self.model.link_cfg.bs_power_w / cell_bps if cell_bps > 0 else 0.0

    # ---- closing a round: aggregate what has arrived -------------------------------------------------
    def arrival_s(self, agent_id: str, origin_round: int) -> float | None:
        """The twin's arrival time of an update (None while it is stored or in flight)."""
        transfer = self.transfers.get((agent_id, origin_round))
        return None if transfer is None else transfer.done_s

    def end_round(self) -> None:
        """Aggregate every update that has arrived by now (fresh and forwarded), evaluate, record KPIs."""
        model = self.model
        state = self.round
        assert state is not None
        now = float(model.time)
        for agent_id in sorted(state.updates):
            self.pending[(agent_id, state.index)] = state.updates[agent_id]
        due = sorted(
            key for key in self.pending if (arrival := self.arrival_s(*key)) is not None and arrival <= now
        )
        contributions: list[StaleUpdate] = []
        for key in due:
            if key in self.aggregated:
                raise RuntimeError(f"update {key} would be aggregated twice")
            update = self.pending.pop(key)
            self.delivered_s[key] = float(self.transfers.pop(key).done_s or now)
            self.aggregated[key] = state.index
            contributions.append(
                StaleUpdate(key[0], key[1], update.n_samples, update.params, self.bases[key[1]])
            )
        self.global_params = aggregate_with_staleness(
            self.global_params, contributions, current_round=state.index, exponent=self.staleness_exponent
        )
        kept = {r for _, r in self.pending} | {state.index + 1}
        self.bases = {r: p for r, p in self.bases.items() if r in kept}
        fresh = [c for c in contributions if c.origin_round == state.index]
        forwarded = [c for c in contributions if c.origin_round < state.index]
        stored = sorted(a for (a, r) in self.pending if r == state.index)
        self._book_aggregation(len(contributions))
        accuracy, loss = evaluate(self.net, self.global_params, self.task.test_x, self.task.test_y)
        self.registry[state.index] = accuracy
        self.last_accuracy = accuracy
        participants = [model.device(a) for a in state.selected]
        # Link reliability of the participants that have a link now: a device without one delivers
        # later, over the link that then serves it (its update is stored, not lost).
        linked = [d.reliability for d in participants if d.uplink_bps > 0]
        reliability = float(np.mean(linked)) if linked else 0.0
        device_j, network_j = model.energy.since(state.energy_mark, service=self.service)
        coverage = model.coverage(
            self.accuracy_by_device(),
            accuracy,
            min_rate_bps=self.targets.min_rate_bps,
            min_accuracy=self.targets.accuracy,
        )
        bearers = model.bearer_counts() if hasattr(model, "bearer_counts") else {}
        row: dict[str, Any] = {
            "round": state.index,
            "sim_time_s": model.time,
            "round_latency_s": model.time - state.start_s,
            "selected": len(state.selected),
            "accepted": len(contributions),
            "fresh": len(fresh),
            "forwarded": len(forwarded),
            "stragglers": len(stored),
            "storing": len(self.storing),
            "in_flight": len(self.pending),
            "mean_staleness_rounds": (
                float(np.mean([state.index - c.origin_round for c in forwarded])) if forwarded else 0.0
            ),
            "offline": len(state.offline),
            "samples": sum(c.n_samples for c in contributions),
            "accuracy": accuracy,
            "loss": loss,
            "link_reliability": reliability,
            "service_accuracy": accuracy * reliability,
            "coverage": coverage.share,
            "coverage_terrestrial": float(getattr(model, "terrestrial_coverage", coverage.share)),
            "devices_terrestrial": bearers.get("terrestrial", 0),
            "devices_satellite": bearers.get("satellite", 0),
            "devices_no_link": bearers.get("none", 0),
            "device_download_s": _median([t.download_s for t in state.timings.values()]),
            "device_compute_s": _median([t.compute_s for t in state.timings.values()]),
            "device_upload_s": _median([t.upload_s for t in state.timings.values()]),
            "energy_device_j": device_j,
            "energy_network_j": network_j,
            "energy_round_j": device_j + network_j,
            "energy_total_j": model.energy.total(),
            "co2_total_g": 1000.0 * float(co2_kg(model.energy.total(), model.carbon.ecr_kg_per_kwh)),
            "bits_up": self.model_bits * len(contributions),
            "bits_down": self.model_bits * len(state.timings),
        }
        if self.round_metrics is not None:
            row.update(self.round_metrics(self.global_params))
        model.record_kpi(row)
        for c in forwarded:
            device = model.device(c.agent_id)
            model.telemetry.event(
                device.kind,
                c.agent_id,
                model.steps,
                model.time,
                "forwarded",
                round=state.index,
                origin_round=c.origin_round,
            )
        for agent_id in stored:
            device = model.device(agent_id)
            device.mark(DeviceState.STRAGGLER)
            model.telemetry.event(device.kind, agent_id, model.steps, model.time, "stored", round=state.index)
        for device in participants:
            if device.agent_id not in stored and device.agent_id not in self.storing:
                device.end_round()
        model.exchange.forget_sent(state.index, service=self.service)
        model.exchange.forget_received(state.index + 1, service=self.service)
        self.rounds_done = state.index
        self.round = None
        if model.rounds_limit is not None and self.rounds_done >= model.rounds_limit:
            self.finished = True
            self.on_rounds_limit()
            return
        model.schedule_event(self.start_round, at=model.time + self.fl.round_interval_s)

    def _book_aggregation(self, n_updates: int) -> None:
        flops = 2.0 * sum(v.numel() for v in self.global_params.values()) * max(1, n_updates)
        joules = float(compute_energy_j(flops, self.model.edge_profile.efficiency_flops_per_j))
        self.model.energy.add(NETWORK, "aggregation", joules, service=self.service)


def _seconds(bits: float, rate_bps: float) -> float:
    return float("inf") if rate_bps <= 0 else bits / rate_bps


__all__ = ["LinkNow", "StoreForwardTraining", "Transfer", "advance"]
