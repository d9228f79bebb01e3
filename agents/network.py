"""The network agent (operator's network AI): orchestrates federated training rounds over MQTT.

One round (paper §3.2.3.2, five steps): publish the round plan and the global model → device hosts
download it and train their selected devices locally → they upload one update per device → the network
waits for every expected update (or declares the sender a straggler) → it aggregates **sorted by sender
id**, evaluates on held-out data, records KPIs. The network selects, publishes, waits, aggregates and
evaluates; it never does a device's work (``agents/host.py`` does).
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, ClassVar

import numpy as np
import torch
from mesa import Agent
from torch import nn

from agents.device import Device, DeviceState, RoundTiming
from broker.json_codec import encode_json
from broker.model_exchange import ReceivedModel, ResendRequest
from twin.auth import sign_document
from twin.energy import NETWORK
from twin.kpi import co2_kg, compute_energy_j
from twin.learning.aggregation import ClientUpdate, Params, Strategy
from twin.learning.cohort import argmax_sharded, evaluate
from twin.learning.round_plan import ModelSpec, RoundPlan
from twin.learning.task import TaskData
from twin.settings import BusConfig, FederatedConfig, QoAISTargets

if TYPE_CHECKING:
    from twin.model import TwinModel

log = logging.getLogger(__name__)


@dataclass(slots=True)
class RoundState:
    """Book-keeping of the round in progress."""

    index: int
    start_s: float
    selected: list[str]
    offline: list[str] = field(default_factory=list)
    arrivals_s: dict[str, float] = field(default_factory=dict)
    updates: dict[str, ClientUpdate] = field(default_factory=dict)
    energy_mark: dict[tuple[str, str], float] = field(default_factory=dict)
    timings: dict[str, RoundTiming] = field(default_factory=dict)


class NetworkAgent(Agent):
    """Aggregates models, keeps a registry of global models, and records each round's KPIs."""

    kind: ClassVar[str] = "network"

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        net: nn.Module,
        initial: Params,
        task: TaskData,
        strategy: Strategy,
        fl: FederatedConfig,
        bus_cfg: BusConfig,
        train_flops_per_sample: float,
        targets: QoAISTargets,
        model_spec: ModelSpec,
    ) -> None:
        super().__init__(model)
        self.agent_id = "network"
        self.service = service
        self.net = net
        self.initial_params: Params = {k: v.clone() for k, v in initial.items()}
        self.global_params: Params = {k: v.clone() for k, v in initial.items()}
        self.task = task
        self.strategy = strategy
        self.fl = fl
        self.bus_cfg = bus_cfg
        self.train_flops_per_sample = train_flops_per_sample
        self.targets = targets
        self.model_spec = model_spec
        self.registry: dict[int, float] = {}
        self.round: RoundState | None = None
        self.rounds_done = 0
        self.last_accuracy = float("nan")
        self._all_data: (
            tuple[tuple[tuple[str, int, int], ...], torch.Tensor, torch.Tensor, torch.Tensor, torch.Tensor]
            | None
        ) = None
        self.kpi_labels: dict[str, str] = {}
        """Columns put first in each KPI row (e.g. the service, when several federated services run)."""
        model.exchange.register_template(service, self.global_params)
        self.model_bits = 8 * model.exchange.payload_bytes(self.global_params)

    # ---- round life cycle -------------------------------------------------------------------
    def start(self, at_s: float) -> None:
        """Schedule the first round."""
        self.model.schedule_event(self.start_round, at=at_s)

    def start_round(self) -> None:
        """Select devices, publish the round plan and the global model, wait for the updates.

        The network never trains: device hosts read the plan and the global model from the wire, train
        and upload. What decides the result is the twin's own physics — each device's modelled
        download + compute + upload time (from its link, its compute profile and its registered data
        size) and its registered sample count as aggregation weight — never a field a sender sets.
        """
        model = self.model
        index = self.rounds_done + 1
        devices = self.candidates()
        rng = model.seeds.numpy(f"fl/select/{index}")
        n_pick = max(1, round(self.fl.clients_per_round * len(devices)))
        picked = (
            sorted(rng.choice(len(devices), size=n_pick, replace=False))
            if n_pick < len(devices)
            else range(len(devices))
        )
        state = RoundState(
            index, model.time, [devices[i].agent_id for i in picked], energy_mark=model.energy.snapshot()
        )
        self.round = state
        active = self._plan_devices(state)
        plan = RoundPlan(
            run_id=model.run_id,
            service=self.service,
            round_index=index,
            sim_time_s=float(model.time),
            deadline_s=self.fl.deadline_s,
            selected=tuple(d.agent_id for d in active),
            local_epochs=self.fl.local_epochs,
            batch_size=self.fl.batch_size,
            lr=self.fl.lr,
            proximal_mu=self.strategy.proximal_mu,
            model=self.model_spec,
        )
        expected = [d.agent_id for d in active]
        publish_round_and_wait(
            model, plan, self.global_params, expected, state.updates, what=f"updates of round {index}"
        )
        deadline = state.start_s + self.fl.deadline_s
        on_time = [state.arrivals_s[a] for a in expected if state.arrivals_s[a] <= deadline]
        waits_for_deadline = len(on_time) < len(expected)
        end_s = deadline if waits_for_deadline or not on_time else max(on_time)
        for agent_id in expected:
            if state.arrivals_s[agent_id] > deadline:
                model.device(agent_id).mark(DeviceState.STRAGGLER)
        model.schedule_event(self.end_round, at=end_s)

    def _plan_devices(self, state: RoundState) -> list[Device]:
        """Drop-outs, then each active device's modelled timeline and energy for this round."""
        model = self.model
        rng = model.seeds.numpy(f"fl/dropout/{state.index}")
        drops = rng.random(len(state.selected)) < self.fl.dropout_prob
        active: list[Device] = []
        for agent_id, dropped in zip(state.selected, drops, strict=True):
            device = model.device(agent_id)
            if dropped:
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
        down_bps = np.array([d.downlink_bps for d in active], dtype=float)
        up_bps = np.array([d.uplink_bps for d in active], dtype=float)
        compute_s = flops / np.array([d.compute.flops_per_s for d in active], dtype=float)
        with np.errstate(divide="ignore"):
            download_s = np.where(
                down_bps > 0, self.model_bits / np.where(down_bps > 0, down_bps, 1.0), np.inf
            )
            upload_s = np.where(up_bps > 0, self.model_bits / np.where(up_bps > 0, up_bps, 1.0), np.inf)
        model.book_round_energy(
            self.service,
            active,
            flops=flops,
            download_s=download_s,
            upload_s=upload_s,
            bits=self.model_bits,
            max_s=fl.deadline_s,
        )
        for device, dl, comp, ul in zip(
            active, download_s.tolist(), compute_s.tolist(), upload_s.tolist(), strict=True
        ):
            timing = RoundTiming(dl, comp, ul)
            device.set_round(state.start_s, timing)
            state.timings[device.agent_id] = timing
            state.arrivals_s[device.agent_id] = state.start_s + timing.total_s
        return active

    def on_model(self, received: ReceivedModel) -> None:
        """Take a complete update of this service (called from :meth:`TwinModel.pump`).

        Its weight is the device's registered sample count and its arrival time the twin's own model
        of the device's round; an update from a device that was not asked this round is refused.
        """
        state = self.round
        if received.kind != "update":
            self.model.bus.stats.reject("unexpected")
            return
        if state is None or received.round_index != state.index:
            self.model.bus.stats.reject("late")
            return
        agent_id = received.agent_id
        if agent_id is None or agent_id not in state.timings:
            self.model.bus.stats.reject("unexpected")
            return
        n_samples = self.model.device(agent_id).n_samples
        state.updates[agent_id] = ClientUpdate(agent_id, n_samples, received.payload.tensors, received.row)
        self.model.accepted += 1

    def on_resend_request(self, request: ResendRequest) -> None:
        """A device host asks for (chunks of) a global model again."""
        topic = self.model.topics.global_model(self.service, request.round_index)
        if not self.model.exchange.resend(topic, request.chunks):
            self.model.bus.stats.reject("unknown")

    def end_round(self) -> None:
        """Aggregate the on-time updates sorted by sender, evaluate, record the round's KPIs."""
        model = self.model
        state = self.round
        assert state is not None
        deadline = state.start_s + self.fl.deadline_s
        accepted = [state.updates[a] for a in sorted(state.updates) if state.arrivals_s[a] <= deadline]
        stragglers = sorted(a for a in state.updates if state.arrivals_s[a] > deadline)
        self.global_params = self.strategy.aggregate(self.global_params, accepted)
        agg_flops = 2.0 * sum(v.numel() for v in self.global_params.values()) * max(1, len(accepted))
        edge = model.edge_profile
        model.energy.add(
            NETWORK,
            "aggregation",
            float(compute_energy_j(agg_flops, edge.efficiency_flops_per_j)),
            service=self.service,
        )
        accuracy, loss = evaluate(self.net, self.global_params, self.task.test_x, self.task.test_y)
        self.registry[state.index] = accuracy
        self.last_accuracy = accuracy
        participants = [model.device(a) for a in state.selected]
        reliability = float(np.mean([d.reliability for d in participants])) if participants else 0.0
        device_j, network_j = model.energy.since(state.energy_mark, service=self.service)
        coverage = model.coverage(
            self.accuracy_by_device(),
            accuracy,
            min_rate_bps=self.targets.min_rate_bps,
            min_accuracy=self.targets.accuracy,
        )
        row = {
            **self.kpi_labels,
            "round": state.index,
            "sim_time_s": model.time,
            "round_latency_s": model.time - state.start_s,
            "selected": len(state.selected),
            "accepted": len(accepted),
            "stragglers": len(stragglers),
            "offline": len(state.offline),
            "samples": sum(u.n_samples for u in accepted),
            "accuracy": accuracy,
            "loss": loss,
            "link_reliability": reliability,
            "service_accuracy": accuracy * reliability,
            "coverage": coverage.share,
            "device_download_s": _median([t.download_s for t in state.timings.values()]),
            "device_compute_s": _median([t.compute_s for t in state.timings.values()]),
            "device_upload_s": _median([t.upload_s for t in state.timings.values()]),
            "energy_device_j": device_j,
            "energy_network_j": network_j,
            "energy_round_j": device_j + network_j,
            "energy_total_j": model.energy.total(),
            "co2_total_g": 1000.0 * float(co2_kg(model.energy.total(), model.carbon.ecr_kg_per_kwh)),
            "bits_up": self.model_bits * len(state.updates),
            "bits_down": self.model_bits * (len(state.selected) - len(state.offline)),
        }
        model.record_kpi(row)
        for agent_id in stragglers:
            device = model.device(agent_id)
            model.telemetry.event(
                device.kind, agent_id, model.steps, model.time, "straggler", round=state.index
            )
        for device in participants:
            device.end_round()
        model.exchange.forget_sent(state.index, service=self.service)
        model.exchange.forget_received(state.index + 1, service=self.service)  # late chunks: no use
        self.rounds_done = state.index
        self.round = None
        if model.rounds_limit is not None and self.rounds_done >= model.rounds_limit:
            self.on_rounds_limit()
            return
        self.schedule_next_round()

    def schedule_next_round(self) -> None:
        """After a round: the next one ``fl.round_interval_s`` later (a subclass may train in campaigns)."""
        self.model.schedule_event(self.start_round, at=self.model.time + self.fl.round_interval_s)

    def candidates(self) -> list[Device]:
        """The devices this service selects from, in id order (every device of the world)."""
        return sorted(self.model.devices, key=lambda d: d.agent_id)

    def on_rounds_limit(self) -> None:
        """The service has run its last round (``--rounds``): the run ends."""
        self.model.running = False

    def accuracy_by_device(self) -> dict[str, float]:
        """Accuracy of the current global model on each device's own data (one batched forward pass)."""
        devices = self.candidates()
        key = tuple((d.agent_id, id(d.data.x), id(d.data.y)) for d in devices)
        if self._all_data is None or self._all_data[0] != key:  # the devices' data, joined once
            sizes = torch.tensor([int(d.data.y.shape[0]) for d in devices], dtype=torch.long)
            owner = torch.repeat_interleave(torch.arange(len(devices)), sizes)
            x = torch.cat([d.data.x for d in devices])
            y = torch.cat([d.data.y for d in devices])
            self._all_data = (key, x, y, owner, sizes)
        _, x, y, owner, sizes = self._all_data
        correct = (argmax_sharded(self.net, self.global_params, x) == y).double()
        hits = torch.bincount(owner, weights=correct, minlength=len(devices))
        share = (hits.float() / sizes.clamp_min(1).float()).tolist()  # float32, as a per-device mean
        return {
            d.agent_id: (a if n else float("nan"))
            for d, a, n in zip(devices, share, sizes.tolist(), strict=True)
        }

    def telemetry(self) -> dict[str, float | int | str]:
        """Flat telemetry fields of the network agent."""
        return {
            "rounds_done": self.rounds_done,
            "accuracy": _finite(self.last_accuracy),
            "model_bits": self.model_bits,
        }


def publish_round_and_wait(
    model: TwinModel,
    plan: RoundPlan,
    global_params: Params,
    expected: list[str],
    received: Mapping[str, object],
    *,
    what: str,
) -> int:
    """One round's exchange, network side: publish the plan and the global model, wait for the updates.

    The signed plan and the global model go out retained; then the network waits until every
    ``expected`` device's update is in ``received`` (filled by ``on_model``). Waiting asks the missing
    devices again; if none has answered, the plan and the global model may be lost and are published
    again. Returns the global model's payload size in bytes.
    """
    service, index = plan.service, plan.round_index
    plan_topic = model.topics.select(service, index)
    global_topic = model.topics.global_model(service, index)
    plan_bytes = encode_json(sign_document(plan.to_document(), plan_topic, model.keys.sign))
    model.bus.publish(plan_topic, plan_bytes, qos=1, retain=True)
    meta = {"round": index, "service": service, "sender": NETWORK, "sim_time_s": model.time}
    size = model.exchange.send(global_topic, global_params, meta, retain=True)

    def ask_again() -> None:
        missing = [a for a in expected if a not in received]
        for agent_id in missing:
            model.exchange.request_resend(service, index, agent_id)
        if len(missing) == len(expected):  # nobody has trained: the plan or the model may be lost
            model.bus.publish(plan_topic, plan_bytes, qos=1, retain=True)
            model.exchange.resend(global_topic, None)

    model.wait_for(
        lambda: len(received) == len(expected),
        what=what,
        progress=lambda: len(received),
        resend=ask_again,
    )
    return size


def _median(values: list[float]) -> float:
    """Median of the finite values (NaN when there is none)."""
    finite = [v for v in values if np.isfinite(v)]
    return float(np.median(finite)) if finite else float("nan")


def _finite(value: float) -> float:
    return value if np.isfinite(value) else -1.0
