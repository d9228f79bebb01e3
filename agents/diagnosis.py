"""Network side of ``disease-diagnosis``: edge training in campaigns, cascade inference, data and models.

- :class:`CampaignTrainer`: the edge (MEC) server's training of the diagnosis model, in **campaigns** of
  ``fl.rounds`` rounds started by model management — federated across the terminals (the rounds of
  :class:`agents.network.NetworkAgent`), or central on the desensitised cases the edge received.
- :class:`DiagnosisService`: every tick the terminals send their new desensitised cases; the edge
  infers, escalates the cases it is unsure of to the core model (:mod:`twin.services.cascade`),
  answers each terminal host, and feeds the data service's ledger and the model-management monitor.
- :class:`DataManagementService` and :class:`ModelManagementService`: the records and QoAIS of the
  data service (§2.4.9) and of model management (§2.4.7), with the re-training policy it publishes.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections.abc import Callable, Mapping, Sequence
from dataclasses import replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from agents.host_batches import accept_host_batch
from agents.network import NetworkAgent
from agents.patient_terminal import ANSWER_SCHEMA, CASES_SCHEMA, POLICY_SCHEMA, TrainingWindow
from broker.bus import Message
from broker.json_codec import encode_json
from twin.auth import sign_document
from twin.energy import NETWORK
from twin.kpi import co2_kg, compute_energy_j
from twin.learning.cohort import LocalData, Params, batch_invariant_logits, evaluate
from twin.learning.task import TaskData
from twin.qoais import ServiceReport
from twin.service_reports import federated_training_report
from twin.services.cascade import (
    CascadeConfig,
    CascadeTargets,
    cascade_cost,
    cascade_report,
    cascade_summary,
    escalation_mask,
)
from twin.services.data_management import DataServiceLedger, DataServiceTargets, data_service_report
from twin.services.model_management import (
    DriftMonitor,
    ModelManagementConfig,
    ModelManagementTargets,
    model_management_report,
)
from twin.settings import QoAISTargets

if TYPE_CHECKING:
    from twin.model import TwinModel

MAX_BATCH_BYTES = 64 << 20


def train_central(
    net: nn.Module,
    params: Params,
    data: LocalData,
    *,
    epochs: int,
    batch_size: int,
    lr: float,
    rng: np.random.Generator,
) -> Params:
    """Train ``params`` on pooled ``data``: minibatch SGD, shuffled by ``rng`` (plain autograd, one model)."""
    trained = {k: v.detach().clone().requires_grad_(True) for k, v in params.items()}
    n = int(data.y.shape[0])
    for _ in range(epochs):
        order = torch.from_numpy(rng.permutation(n))
        for start in range(0, n, batch_size):
            batch = order[start : start + batch_size]
            logits = functional_call(net, trained, (data.x[batch],))
            loss = nn.functional.cross_entropy(logits, data.y[batch])
            grads = torch.autograd.grad(loss, list(trained.values()))
            with torch.no_grad():
                trained = {
                    k: (p - lr * g).requires_grad_(True)
                    for (k, p), g in zip(trained.items(), grads, strict=True)
                }
    return {k: v.detach() for k, v in trained.items()}


class CampaignTrainer(NetworkAgent):
    """The edge's training of the diagnosis model, in campaigns of ``fl.rounds`` rounds."""

    def __init__(self, *args: Any, mode: str, pool: Callable[[], LocalData], **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.mode = mode
        self.pool = pool
        self.remaining = 0
        self.campaigns = 0
        self.on_campaign_done: list[Callable[[], None]] = []
        self.drifted_task: TaskData | None = None
        self.data_ledger: DataServiceLedger | None = None
        """What the terminals released (central mode trains on it: its privacy is the training's)."""
        self._central: tuple[int, float, int, float] | None = None

    def training_report(
        self, rows: Sequence[Mapping[str, Any]], targets: QoAISTargets, *, tls: bool, authenticated: bool
    ) -> ServiceReport:
        """QoAIS of the training; in central mode its privacy is that of the cases it trains on.

        Federated: :func:`~twin.service_reports.federated_training_report` (only models leave the
        terminals). Central: the desensitised cases leave the terminals, so the privacy level is the
        data-management service's (:attr:`data_ledger`), not "only models leave".
        """
        report = federated_training_report(
            self.service,
            rows,
            targets,
            tls=tls,
            authenticated=authenticated,
            baseline_accuracy=self.task.majority_baseline(),
        )
        if self.mode == "federated" or self.data_ledger is None:
            return report
        ledger = self.data_ledger
        detail = (
            f"central: desensitised cases leave the terminals ({ledger.k_anonymity}-anonymous) and the edge "
            "trains on them"
            if not ledger.identifier_fields_seen
            else "central: identifier fields reached the network with the cases"
        )
        indicators = tuple(
            replace(i, achieved=ledger.privacy_level, detail=detail) if i.dimension == "privacy" else i
            for i in report.indicators
        )
        return replace(report, kind="central training", indicators=indicators)

    def population_drifted(self) -> None:
        """The population drifted: the held-out cases the model is evaluated on are the drifted ones."""
        if self.drifted_task is not None:
            self.task = self.drifted_task

    def begin_campaign(self, at_s: float) -> bool:
        """Start a campaign at ``at_s`` unless one is running; whether one was started."""
        if self.remaining:
            return False
        self.remaining = self.fl.rounds
        self.model.schedule_event(self.start_round, at=at_s)
        return True

    def schedule_next_round(self) -> None:
        """The next round of the campaign, or the campaign's end (the listeners deploy the model)."""
        self.remaining -= 1
        if self.remaining > 0:
            super().schedule_next_round()
            return
        self.campaigns += 1
        for listener in self.on_campaign_done:
            listener()

    def start_round(self) -> None:
        """A federated round, or in central mode ``fl.local_epochs`` epochs over the edge's pool."""
        if self.mode == "federated":
            super().start_round()
            return
        model = self.model
        data = self.pool()
        index = self.rounds_done + 1
        n = int(data.y.shape[0])
        epochs = self.fl.local_epochs
        self.global_params = train_central(
            self.net,
            self.global_params,
            data,
            epochs=epochs,
            batch_size=self.fl.batch_size,
            lr=self.fl.lr,
            rng=model.seeds.numpy(f"central/{index}"),
        )
        flops = self.train_flops_per_sample * n * epochs
        edge = model.edge_profile
        joules = float(compute_energy_j(flops, edge.efficiency_flops_per_j))
        model.energy.add(NETWORK, "compute", joules, service=self.service)
        start = float(model.time)
        self._central = (index, start, n, joules)
        model.schedule_event(self._end_central, at=start + flops / edge.flops_per_s)

    def _end_central(self) -> None:
        model = self.model
        assert self._central is not None
        index, start_s, n, joules = self._central
        accuracy, loss = evaluate(self.net, self.global_params, self.task.test_x, self.task.test_y)
        self.registry[index] = accuracy
        self.last_accuracy = accuracy
        compute_s = float(model.time) - start_s
        # The edge model serves the terminals over their links: coverage and service accuracy as in a
        # federated round, with the terminals whose cases it was trained on as the participants.
        terminals = self.candidates()
        reliability = float(np.mean([d.reliability for d in terminals])) if terminals else 0.0
        coverage = model.coverage(
            self.accuracy_by_device(),
            accuracy,
            min_rate_bps=self.targets.min_rate_bps,
            min_accuracy=self.targets.accuracy,
        )
        model.record_kpi(
            {
                **self.kpi_labels,
                "round": index,
                "sim_time_s": model.time,
                "round_latency_s": compute_s,
                "selected": 0,
                "accepted": 0,
                "stragglers": 0,
                "offline": 0,
                "samples": n,
                "accuracy": accuracy,
                "loss": loss,
                "link_reliability": reliability,
                "service_accuracy": accuracy * reliability,
                "coverage": coverage.share,
                "device_download_s": math.nan,
                "device_compute_s": compute_s,
                "device_upload_s": math.nan,
                "energy_device_j": 0.0,
                "energy_network_j": joules,
                "energy_round_j": joules,
                "energy_total_j": model.energy.total(),
                "co2_total_g": 1000.0 * float(co2_kg(model.energy.total(), model.carbon.ecr_kg_per_kwh)),
                "bits_up": 0.0,
                "bits_down": 0.0,
            }
        )
        self.rounds_done = index
        self.schedule_next_round()


class DataManagementService:
    """Records and QoAIS of the data service (its device side runs in the terminal hosts)."""

    def __init__(self, service: str, ledger: DataServiceLedger, targets: DataServiceTargets) -> None:
        self.service = service
        self.ledger = ledger
        self.targets = targets
        self.records: list[dict[str, Any]] = []

    def summary(self) -> dict[str, float]:
        """The data service's KPIs so far."""
        return self.ledger.summary()

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the data service."""
        return data_service_report(
            self.service, self.summary(), self.targets, tls=tls, authenticated=authenticated
        )


class ModelManagementService:
    """Monitors the deployed edge model, publishes the re-training policy and starts campaigns."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        trainer: CampaignTrainer,
        config: ModelManagementConfig,
        targets: ModelManagementTargets,
        drift_at_s: float | None,
        retrain_core: Callable[[int | None], None],
    ) -> None:
        self.model = model
        self.service = service
        self.trainer = trainer
        self.config = config
        self.targets = targets
        self.drift_at_s = drift_at_s
        self.retrain_core = retrain_core
        self.monitor = DriftMonitor(config)
        self.records: list[dict[str, Any]] = []
        self.pending: tuple[int, int] | None = None  # (alarm tick, since tick) of a re-training to start
        self.since_tick: int | None = None
        self.policy_topic = f"{model.topics.service_root(service)}/policy"
        trainer.on_campaign_done.append(self._deployed)

    def _deployed(self) -> None:
        """A campaign ended: the core model follows, the new edge model is watched from now on."""
        self.retrain_core(self.since_tick)
        self.monitor.arm()

    def observe(self, tick: int, edge_correct: list[bool]) -> None:
        """The deployed edge model's results on the labelled cases of ``tick``; maybe start re-training."""
        check = self.monitor.observe(tick, edge_correct)
        started = False
        if check.alarm and self.config.enabled and check.since_tick is not None:
            self.pending = (tick, check.since_tick)
        if self.pending is not None and tick >= self.pending[0] + self.config.fresh_ticks:
            self.since_tick = self.pending[1]
            self._publish_policy(self.since_tick)
            started = self.trainer.begin_campaign(float(self.model.time))
            self.pending = None
        self.records.append(
            {
                "tick": tick,
                "sim_time_s": float(self.model.time),
                "tick_accuracy": float(np.mean(edge_correct)) if edge_correct else math.nan,
                "window_accuracy": check.accuracy,
                "reference_accuracy": check.reference,
                "alarm": check.alarm,
                "retrain_started": started,
                "campaigns_done": self.trainer.campaigns,
                "model_round": self.trainer.rounds_done,
            }
        )

    def _publish_policy(self, since_tick: int) -> None:
        doc = {"schema": POLICY_SCHEMA, "run_id": self.model.run_id, "since_tick": since_tick}
        payload = encode_json(sign_document(doc, self.policy_topic, self.model.keys.sign))
        self.model.bus.publish(self.policy_topic, payload, qos=1, retain=True)

    def summary(self) -> dict[str, float]:
        """Alarms, re-trainings and the monitored accuracy."""
        if not self.records:
            return {}
        return {
            "checks": float(len(self.records)),
            "alarms": float(sum(bool(r["alarm"]) for r in self.records)),
            "retrainings": float(sum(bool(r["retrain_started"]) for r in self.records)),
            "campaigns_done": float(self.trainer.campaigns),
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of model management."""
        return model_management_report(self.service, self.records, self.targets, drift_at_s=self.drift_at_s)


class DiagnosisService:
    """Network side of the cascade: ticks, the edge's and the core's inference, answers, records."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        trainer: CampaignTrainer,
        core_net: nn.Module,
        core_params: Params,
        config: CascadeConfig,
        targets: CascadeTargets,
        labels: dict[str, np.ndarray],
        per_tick: int,
        members: dict[str, set[str]],
        edge_flops: float,
        core_flops: float,
        data: DataManagementService,
        windows: dict[str, TrainingWindow],
    ) -> None:
        self.model = model
        self.service = service
        self.trainer = trainer
        self.core_net = core_net
        self.core_params = core_params
        self.config = config
        self.targets = targets
        self.labels = labels
        self.per_tick = per_tick
        self.members = {h: set(a) for h, a in members.items() if a}
        self.edge_flops = edge_flops
        self.core_flops = core_flops
        self.data = data
        self.windows = windows
        self.management: ModelManagementService | None = None
        self.pool: list[tuple[int, np.ndarray, int]] = []  # labelled cases received: (tick, x, class)
        self.records: list[dict[str, Any]] = []
        self.tick_index = 0
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def set_members(self, members: dict[str, set[str]]) -> None:
        """Which host holds which terminals (when the terminals move to ``--workers``)."""
        self.members = {h: set(a) for h, a in members.items() if a}

    def start(self) -> None:
        """Schedule the first tick."""
        self.model.schedule_event(self.tick, at=self.config.start_s)

    def tick(self) -> None:
        """One tick: terminals send their cases, the edge (and the core) diagnose, terminals get answers."""
        model = self.model
        self._batches, self._waiting = {}, True
        doc = {
            "schema": "twin.inference.tick.v1",
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
        }
        topic = model.topics.tick(self.service)
        model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what=f"cases of tick {self.tick_index}",
            progress=lambda: len(self._batches),
        )
        self._waiting = False
        cases = sorted(
            (c for b in self._batches.values() for c in b), key=lambda c: (c["agent_id"], c["case"])
        )
        if cases:
            self._diagnose(cases)
        self.tick_index += 1
        if self.tick_index >= self.config.ticks:
            model.running = False
            return
        model.schedule_event(self.tick, at=model.time + self.config.interval_s)

    def _diagnose(self, cases: list[dict[str, Any]]) -> None:
        model = self.model
        x = torch.from_numpy(np.stack([c["x"] for c in cases]))
        edge_probs = torch.softmax(
            batch_invariant_logits(self.trainer.net, self.trainer.global_params, x), dim=1
        )
        confidence, edge_class = (t.numpy() for t in edge_probs.max(dim=1))
        escalated = escalation_mask(confidence, self.config.confidence_threshold)
        final = edge_class.copy()
        if escalated.any():
            core_logits = batch_invariant_logits(
                self.core_net, self.core_params, x[torch.from_numpy(escalated)]
            )
            final[escalated] = core_logits.argmax(dim=1).numpy()
        devices = [model.device(c["agent_id"]) for c in cases]
        bits = np.array([float(c["bits"]) for c in cases])
        up_bps = np.array([d.uplink_bps for d in devices])
        down_bps = np.array([d.downlink_bps for d in devices])
        cost = cascade_cost(
            escalated=escalated,
            record_bits=bits,
            uplink_bps=up_bps,
            downlink_bps=down_bps,
            edge=model.edge_profile,
            edge_flops=self.edge_flops,
            core_flops=self.core_flops,
            config=self.config,
        )
        link = model.link_cfg
        ids = [d.agent_id for d in devices]
        with np.errstate(divide="ignore", invalid="ignore"):
            e_up = link.ue_radio_power_w * np.where(up_bps > 0, bits / np.where(up_bps > 0, up_bps, 1.0), 0.0)
            e_down = link.ue_radio_power_w * np.where(
                down_bps > 0, self.config.result_bits / np.where(down_bps > 0, down_bps, 1.0), 0.0
            )
        ledger, service = model.energy, self.service
        ledger.add_many(ids, "uplink", e_up, service=service)
        ledger.add_many(ids, "downlink", e_down, service=service)
        ledger.add_many(
            [NETWORK] * len(ids), "inference", cost.edge_compute_j + cost.core_compute_j, service=service
        )
        ledger.add_many(
            [NETWORK] * len(ids), "downlink", cost.backhaul_j, service=service
        )  # backhaul: network transmission
        energy = e_up + e_down + cost.edge_compute_j + cost.core_compute_j + cost.backhaul_j
        now, tick = float(model.time), self.tick_index
        edge_correct_labelled: list[bool] = []
        answers: dict[str, list[dict[str, Any]]] = {}
        for i, c in enumerate(cases):
            agent_id = c["agent_id"]
            label = int(self.labels[agent_id][c["case"]])
            if escalated[i]:
                devices[i].escalate(now, float(cost.latency_s[i]))
            self.records.append(
                {
                    "tick": tick,
                    "sim_time_s": now,
                    "agent_id": agent_id,
                    "case": int(c["case"]),
                    "label": label,
                    "edge_class": int(edge_class[i]),
                    "edge_confidence": float(confidence[i]),
                    "escalated": bool(escalated[i]),
                    "final_class": int(final[i]),
                    "correct": bool(final[i] == label),
                    "edge_correct": bool(edge_class[i] == label),
                    "reliability": float(devices[i].reliability),
                    "latency_s": float(cost.latency_s[i]),
                    "energy_j": float(energy[i]),
                    "record_bits": float(bits[i]),
                }
            )
            confirmed = c["confirmed_class"]
            if confirmed is not None:
                edge_correct_labelled.append(bool(edge_class[i] == confirmed))
                if not (self.data.ledger.config.deduplicate and c["near_duplicate"]):
                    self.pool.append((tick, c["x"], confirmed))
                    self.windows[agent_id].add(tick, c["x"], confirmed)
            answers.setdefault(self._host_of(agent_id), []).append(
                {"agent_id": agent_id, "case": c["case"], "diagnosis": int(final[i])}
            )
        self.data.ledger.add(
            [c["released"] for c in cases],
            [c["lossless"] for c in cases],
            [c["near_duplicate"] for c in cases],
        )
        self.data.ledger.released_bits += float(bits.sum())
        self.data.records.append(
            {
                "tick": tick,
                "sim_time_s": now,
                "collected": len(cases),
                "lossless": sum(bool(c["lossless"]) for c in cases),
                "near_duplicates": sum(bool(c["near_duplicate"]) for c in cases),
                "privacy_level": self.data.ledger.privacy_level,
                "k_anonymity": self.data.ledger.k_anonymity,
            }
        )
        since = self.management.since_tick if self.management is not None else None
        for agent_id, window in self.windows.items():
            device = model.device(agent_id)
            device.data = window.data(since)
        for host_id, host_answers in sorted(answers.items()):
            topic = model.topics.response(self.service, host_id)
            doc = {
                "schema": ANSWER_SCHEMA,
                "run_id": model.run_id,
                "host": host_id,
                "tick": tick,
                "answers": host_answers,
            }
            model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        if self.management is not None:
            self.management.observe(tick, edge_correct_labelled)

    def progress(self) -> tuple[int, int]:
        """Ticks served so far and ticks of the run (what ``--rounds`` sets; the CLI's progress line)."""
        return self.tick_index, self.config.ticks

    def summary(self) -> dict[str, float]:
        """Cases, escalations, accuracy per tier, latency and energy so far."""
        return cascade_summary(self.records)

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the diagnosis service; its privacy is that of the records its terminals release."""
        level = self.data.ledger.privacy_level
        detail = f"cases leave the terminals desensitised ({self.data.ledger.k_anonymity}-anonymous)"
        return cascade_report(
            self.service,
            self.summary(),
            self.targets,
            privacy_level=level,
            privacy_detail=detail,
            tls=tls,
            authenticated=authenticated,
        )

    def _host_of(self, agent_id: str) -> str:
        return next(h for h, ids in self.members.items() if agent_id in ids)

    def pool_data(self, since_tick: int | None, history: LocalData, limit: int) -> LocalData:
        """The edge's pooled labelled cases: history + all (``since_tick`` None), else from ``since_tick``."""
        fresh = [(x, y) for t, x, y in self.pool if since_tick is None or t >= since_tick][-limit:]
        if since_tick is None:
            xs = [*history.x.numpy(), *(x for x, _ in fresh)][-limit:]
            ys = [*history.y.tolist(), *(y for _, y in fresh)][-limit:]
        else:
            xs, ys = [x for x, _ in fresh], [y for _, y in fresh]
        if not xs:
            return history
        return LocalData(torch.from_numpy(np.stack(xs)), torch.tensor(ys, dtype=torch.int64))

    def _on_message(self, message: Message) -> None:
        got = accept_host_batch(self, message, schema=CASES_SCHEMA, max_bytes=MAX_BATCH_BYTES)
        if got is None:
            return
        host_id, doc = got
        stats = self.model.bus.stats
        cases = self._validate(host_id, doc.get("cases"))
        if cases is None:
            stats.reject("malformed")
            return
        self._batches[host_id] = cases
        self.model.accepted += 1

    def _validate(self, host_id: str, cases: Any) -> list[dict[str, Any]] | None:
        """The host's cases if each is well-formed and from one of its terminals, else None."""
        if not isinstance(cases, list):
            return None
        width = self.trainer.task.in_features
        n_classes = self.trainer.task.n_classes
        for c in cases:
            if not isinstance(c, dict) or c.get("agent_id") not in self.members[host_id]:
                return None
            index, confirmed, released = c.get("case"), c.get("confirmed_class"), c.get("released")
            if not isinstance(index, int) or not 0 <= index < len(self.labels[c["agent_id"]]):
                return None
            if confirmed is not None and not (isinstance(confirmed, int) and 0 <= confirmed < n_classes):
                return None
            if (
                not isinstance(released, dict)
                or not isinstance(c.get("lossless"), bool)
                or not isinstance(c.get("near_duplicate"), bool)
            ):
                return None
            x = _decode_features(c.get("features_f32"), width)
            if x is None:
                return None
            c["x"] = x
            c["bits"] = 8 * len(encode_json({k: v for k, v in c.items() if k != "x"}))
        return cases


def _decode_features(text: object, width: int) -> np.ndarray | None:
    if not isinstance(text, str):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * width:
        return None
    values = np.frombuffer(raw, dtype="<f4").astype(np.float32)
    return values if bool(np.isfinite(values).all()) else None
