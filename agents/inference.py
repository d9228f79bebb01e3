"""Two-stage inference (paper §2.3.4 home health, §2.3.8 grid inspection).

Every ``interval_s`` each device senses a window and runs a **preliminary inference** with the model
it has on board (the global model it last downloaded, as decoded from the wire), in its device host
(``agents/host.py``). Uncertain results — and, if configured, every detected anomaly — are
**escalated**: the device sends the window over MQTT to the network, which infers again with its
current global model and answers. Results and answers travel as one message per host and tick.
Latency and energy are modelled (SPEC §7: FLOPs ÷ FLOP/s, bits ÷ rate, at both ends); accuracy is
measured against the true label.
"""

from __future__ import annotations

import math
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeGuard

import numpy as np
import torch

from agents.device import Device
from agents.host import BATCH_REQUEST_SCHEMA as REQUEST_SCHEMA
from agents.host import BATCH_RESPONSE_SCHEMA as RESPONSE_SCHEMA
from agents.host import TICK_SCHEMA, decode_window
from agents.host_batches import accept_host_batch
from broker.bus import Message
from broker.json_codec import encode_json
from twin.auth import sign_document
from twin.config import check_positive, check_range
from twin.energy import NETWORK
from twin.kpi import compute_energy_j, transmission_energy_j
from twin.learning.cohort import batch_invariant_logits
from twin.qoais import ServiceReport
from twin.service_reports import two_stage_inference_report
from twin.settings import InferenceTargets

if TYPE_CHECKING:
    from agents.network import NetworkAgent
    from twin.model import TwinModel

MAX_BATCH_BYTES = 64 << 20


def _is_int(value: Any) -> TypeGuard[int]:
    return isinstance(value, int) and not isinstance(value, bool)


def _is_number(value: Any) -> TypeGuard[float]:
    return isinstance(value, int | float) and not isinstance(value, bool) and math.isfinite(value)


@dataclass(frozen=True, slots=True)
class InferenceConfig:
    """How often devices infer and when they escalate to the network."""

    enabled: bool = True
    """Whether devices run inference on what they sense."""
    interval_s: float = 5.0
    """Simulated time between two inferences of a device."""
    confidence_threshold: float = 0.9
    """Confidence below which a device escalates to the network, in [0, 1]."""
    escalate_anomalies: bool = True
    """Whether a device also escalates every anomaly it detects."""
    result_bits: int = 256
    """Size of the answer the network sends back."""

    def __post_init__(self) -> None:
        check_positive("inference", interval_s=self.interval_s, result_bits=self.result_bits)
        check_range("inference", "confidence_threshold", self.confidence_threshold, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class SensorStream:
    """What one device will sense, window after window (inputs and their true labels)."""

    x: torch.Tensor
    y: torch.Tensor


class TwoStageInference:
    """The network side of two-stage inference: ticks, refinement of escalated windows, records.

    Every tick the network publishes one ``tick`` message; each device host answers with one message
    holding all its devices' preliminary results (and the windows of those that escalate); the network
    refines the escalated windows in **one batched forward pass** and answers each host with one
    message. Latency, energy and accuracy are the twin's: modelled from the links and compute profiles,
    scored against the true labels, which stay with the twin (the devices never see them).
    """

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        network: NetworkAgent,
        streams: dict[str, SensorStream],
        config: InferenceConfig,
        flops_per_inference: float,
        window_bits: float,
        targets: InferenceTargets,
        members: dict[str, set[str]],
        normal_class: int = 0,
    ) -> None:
        self.model = model
        self.service = service
        self.network = network
        self.labels = {a: s.y for a, s in streams.items()}
        self.config = config
        self.flops_per_inference = flops_per_inference
        self.window_bits = window_bits
        self.targets = targets
        self.normal_class = normal_class
        self.members = {h: set(a) for h, a in members.items() if a}
        self._host_of = {a: h for h, ids in self.members.items() for a in ids}
        self.records: list[dict[str, Any]] = []
        self.tick_index = 0
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def set_members(self, members: dict[str, set[str]]) -> None:
        """Which device host holds which devices of this service (when devices move to workers)."""
        self.members = {h: set(a) for h, a in members.items() if a}
        self._host_of = {a: h for h, ids in self.members.items() for a in ids}

    def start(self, at_s: float) -> None:
        """Schedule the first sensing tick."""
        if self.config.enabled and self.members:
            self.model.schedule_event(self.tick, at=at_s)

    def tick(self) -> None:
        """One sensing round: hosts infer on their devices, the network refines what they escalate."""
        model = self.model
        self._batches = {}
        self._waiting = True
        tick_doc = {
            "schema": TICK_SCHEMA,
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
        }
        tick_topic = model.topics.tick(self.service)
        model.bus.publish(
            tick_topic, encode_json(sign_document(tick_doc, tick_topic, model.keys.sign)), qos=1
        )
        self._wait_for_hosts()
        self._waiting = False
        results = sorted(
            (r for batch in self._batches.values() for r in batch), key=lambda r: str(r["agent_id"])
        )
        local: list[tuple[Device, dict[str, Any]]] = []
        escalated: list[tuple[Device, dict[str, Any]]] = []
        for result in results:
            device: Device = model.device(result["agent_id"])
            reachable = device.uplink_bps > 0 and device.downlink_bps > 0
            (escalated if result["escalate"] and reachable else local).append((device, result))
        self._record([d for d, _ in local], [r for _, r in local], None)
        finals = self._refine([r["window"] for _, r in escalated])
        self._record([d for d, _ in escalated], [r for _, r in escalated], finals)
        answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for (device, _), final in zip(escalated, finals, strict=True):
            answers[self._host_of[device.agent_id]].append(
                {"agent_id": device.agent_id, "final_class": final}
            )
        for host_id, host_answers in sorted(answers.items()):
            topic = model.topics.response(self.service, host_id)
            answer = {
                "schema": RESPONSE_SCHEMA,
                "run_id": model.run_id,
                "host": host_id,
                "tick": self.tick_index,
                "sim_time_s": float(model.time),
                "answers": host_answers,
            }
            model.bus.publish(topic, encode_json(sign_document(answer, topic, model.keys.sign)), qos=1)
        self.tick_index += 1
        model.schedule_event(self.tick, at=model.time + self.config.interval_s)

    def _refine(self, windows: list[np.ndarray]) -> list[int]:
        """The network's answers to every escalated window of a tick, in one forward pass."""
        if not windows:
            return []
        x = torch.from_numpy(np.stack(windows).astype(np.float32))
        logits = batch_invariant_logits(self.network.net, self.network.global_params, x)
        return [int(c) for c in logits.argmax(dim=1)]

    def _on_message(self, message: Message) -> None:
        """Accept one well-formed batch per expected host and tick; count everything else."""
        got = accept_host_batch(self, message, schema=REQUEST_SCHEMA, max_bytes=MAX_BATCH_BYTES)
        if got is None:
            return
        host_id, doc = got
        stats = self.model.bus.stats
        results = self._validate(host_id, doc.get("results"))
        if results is None:
            stats.reject("malformed")
            return
        self._batches[host_id] = results
        self.model.accepted += 1

    def _validate(self, host_id: str, results: Any) -> list[dict[str, Any]] | None:
        """The host's results if every one is well-formed and the host's devices are all there."""
        if not isinstance(results, list):
            return None
        n_classes = self.network.task.n_classes
        width = self.network.task.in_features
        seen: set[str] = set()
        for r in results:
            if not isinstance(r, dict) or r.get("agent_id") not in self.members[host_id]:
                return None
            prelim, confidence, escalate = r.get("prelim_class"), r.get("confidence"), r.get("escalate")
            if not (_is_int(prelim) and 0 <= prelim < n_classes and isinstance(escalate, bool)):
                return None
            if not (_is_number(confidence) and 0.0 <= confidence <= 1.0):
                return None
            if escalate:
                window = decode_window(r.get("window_f32"), width)
                if window is None:
                    return None
                r["window"] = window
            seen.add(r["agent_id"])
        return results if seen == self.members[host_id] and len(results) == len(seen) else None

    def _wait_for_hosts(self) -> None:
        self.model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what=f"inference results of tick {self.tick_index} (hosts {sorted(self.members)[:3]})",
            progress=lambda: len(self._batches),
        )

    def _record(self, devices: list[Device], results: list[dict[str, Any]], finals: list[int] | None) -> None:
        """Model the requests' latency and energy (SPEC §7) as arrays, book the energy, keep the records.

        ``finals`` is None for requests decided on the device, else the network's answers (escalated).
        Same convention as the federated rounds: the device pays compute and its radio both ways; the
        network pays edge compute and its downlink transmission (bits ÷ (cell rate ÷ BS power)).
        """
        if not devices:
            return
        model = self.model
        link, edge, ledger, service = model.link_cfg, model.edge_profile, model.energy, self.service
        ids = [d.agent_id for d in devices]
        flops = self.flops_per_inference
        local_s = flops / np.array([d.compute.flops_per_s for d in devices])
        energy = compute_energy_j(flops, np.array([d.compute.efficiency_flops_per_j for d in devices]))
        ledger.add_many(ids, "inference", energy, service=service)
        latency = local_s
        reliability = np.ones(len(devices))
        decided = [int(r["prelim_class"]) for r in results]
        if finals is not None:
            up_bps = np.array([d.uplink_bps for d in devices])
            down_bps = np.array([d.downlink_bps for d in devices])
            share = np.array([model.cell_share(a) for a in ids], dtype=float)
            up_s = self.window_bits / up_bps
            down_s = self.config.result_bits / down_bps
            latency = local_s + up_s + flops / edge.flops_per_s + down_s
            e_up = link.ue_radio_power_w * up_s
            e_down = link.ue_radio_power_w * down_s
            e_edge = np.full(len(devices), float(compute_energy_j(flops, edge.efficiency_flops_per_j)))
            e_cell = transmission_energy_j(self.config.result_bits, down_bps * share / link.bs_power_w)
            ledger.add_many(ids, "uplink", e_up, service=service)
            ledger.add_many(ids, "downlink", e_down, service=service)
            ledger.add_many([NETWORK] * len(ids), "inference", e_edge, service=service)
            ledger.add_many([NETWORK] * len(ids), "downlink", e_cell, service=service)
            energy = energy + e_up + e_down + e_edge + e_cell
            reliability = np.array([d.reliability for d in devices])
            decided = finals
            now = float(model.time)
            for device, seconds in zip(devices, latency.tolist(), strict=True):
                device.escalate(now, seconds)
        tick, now_s = self.tick_index, float(model.time)
        for agent_id, result, final, lat, joules, rel in zip(
            ids, results, decided, latency.tolist(), energy.tolist(), reliability.tolist(), strict=True
        ):
            labels = self.labels[agent_id]
            label = int(labels[tick % len(labels)])
            self.records.append(
                {
                    "tick": tick,
                    "sim_time_s": now_s,
                    "agent_id": agent_id,
                    "label": label,
                    "prelim_class": int(result["prelim_class"]),
                    "confidence": float(result["confidence"]),
                    "escalated": finals is not None,
                    "final_class": final,
                    "correct": final == label,
                    "reliability": rel,
                    "latency_s": lat,
                    "energy_j": joules,
                }
            )

    def summary(self) -> dict[str, float]:
        """Service-level figures over all requests so far."""
        if not self.records:
            return {}
        correct = np.array([r["correct"] for r in self.records], dtype=float)
        reliability = np.array([r["reliability"] for r in self.records])
        latency = np.array([r["latency_s"] for r in self.records])
        finite = latency[np.isfinite(latency)]
        recent = correct[-max(1, len(correct) // 4) :] * reliability[-max(1, len(correct) // 4) :]
        return {
            "requests": float(len(self.records)),
            "escalation_share": float(np.mean([r["escalated"] for r in self.records])),
            "accuracy": float(correct.mean()),
            "service_accuracy": float((correct * reliability).mean()),
            "service_accuracy_last_quarter": float(recent.mean()),
            "latency_p95_s": float(np.percentile(finite, 95)) if len(finite) else math.inf,
            "latency_mean_s": float(finite.mean()) if len(finite) else math.inf,
            "energy_per_request_j": float(np.mean([r["energy_j"] for r in self.records])),
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of this service over all its requests."""
        return two_stage_inference_report(
            self.service, self.summary(), self.targets, tls=tls, authenticated=authenticated
        )
