"""Two-stage inference (paper §2.3.4 home health, §2.3.8 grid inspection).

Every ``interval_s`` each device senses a window and runs a **preliminary inference** with the model
it has on board (the global model of the last round it took part in). Uncertain results — and, if
configured, every detected anomaly — are **escalated**: the device sends the window over MQTT to the
network, which infers again with its current global model and answers. Latency and energy are modelled
(SPEC §7: FLOPs ÷ FLOP/s, bits ÷ rate, at both ends); accuracy is measured against the true label.
"""

from __future__ import annotations

import math
import time
from collections import defaultdict
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import numpy as np
import torch
from torch.func import functional_call

from agents.device import Device
from broker.bus import Message
from broker.json_codec import decode_json, encode_json
from twin.config import check_positive, check_range
from twin.energy import NETWORK
from twin.errors import PayloadError, RunAbortedError
from twin.kpi import compute_energy_j, transmission_energy_j
from twin.qoais import ServiceReport
from twin.service_reports import two_stage_inference_report
from twin.settings import InferenceTargets

if TYPE_CHECKING:
    from agents.network import NetworkAgent
    from twin.model import TwinModel

REQUEST_SCHEMA = "twin.inference.request.v1"
RESPONSE_SCHEMA = "twin.inference.response.v1"


@dataclass(frozen=True, slots=True)
class InferenceConfig:
    """How often devices infer and when they escalate to the network."""

    enabled: bool = True
    interval_s: float = 5.0
    confidence_threshold: float = 0.9
    escalate_anomalies: bool = True
    result_bits: int = 256

    def __post_init__(self) -> None:
        check_positive("inference", interval_s=self.interval_s, result_bits=self.result_bits)
        check_range("inference", "confidence_threshold", self.confidence_threshold, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class SensorStream:
    """What one device will sense, window after window (inputs and their true labels)."""

    x: torch.Tensor
    y: torch.Tensor


class TwoStageInference:
    """Preliminary inference on devices, refinement of escalated windows by the network."""

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
        normal_class: int = 0,
    ) -> None:
        self.model = model
        self.service = service
        self.network = network
        self.streams = streams
        self.config = config
        self.flops_per_inference = flops_per_inference
        self.window_bits = window_bits
        self.targets = targets
        self.normal_class = normal_class
        self.records: list[dict[str, Any]] = []
        self.tick_index = 0
        self._pending: dict[str, dict[str, Any]] = {}
        self._expected: set[str] = set()
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def start(self, at_s: float) -> None:
        """Schedule the first sensing tick."""
        if self.config.enabled:
            self.model.schedule_event(self.tick, at=at_s)

    def tick(self) -> None:
        """One sensing round of every device: preliminary inference, escalation, network answers."""
        model = self.model
        devices: list[Device] = [d for d in model.devices if d.agent_id in self.streams]  # type: ignore[misc]
        windows = {d.agent_id: self._window(d.agent_id) for d in devices}
        probs = self._preliminary(devices, {k: w[0] for k, w in windows.items()})
        escalated: list[Device] = []
        for device in devices:
            p = probs[device.agent_id]
            confidence, prelim = float(p.max()), int(p.argmax())
            anomaly = prelim != self.normal_class and self.config.escalate_anomalies
            reachable = device.uplink_bps > 0 and device.downlink_bps > 0
            if reachable and (confidence < self.config.confidence_threshold or anomaly):
                escalated.append(device)
                self._publish_request(device, windows[device.agent_id][0], prelim, confidence)
            else:
                self._record(device, windows[device.agent_id][1], prelim, confidence, None)
        self._expected = {d.agent_id for d in escalated}
        self._wait_for_requests()
        for device in sorted(escalated, key=lambda d: d.agent_id):
            request = self._pending.pop(device.agent_id)
            x = torch.tensor(request["window"], dtype=torch.float32).unsqueeze(0)
            with torch.no_grad():
                final = int(functional_call(self.network.net, self.network.global_params, (x,)).argmax(dim=1))
            model.bus.publish(
                model.topics.response(self.service, device.agent_id),
                encode_json(
                    {
                        "schema": RESPONSE_SCHEMA,
                        "run_id": model.run_id,
                        "agent_id": device.agent_id,
                        "tick": self.tick_index,
                        "final_class": final,
                        "sim_time_s": float(model.time),
                    }
                ),
                qos=1,
            )
            self._record(
                device, windows[device.agent_id][1], request["prelim_class"], request["confidence"], final
            )
        self.tick_index += 1
        model.schedule_event(self.tick, at=model.time + self.config.interval_s)

    def _window(self, agent_id: str) -> tuple[torch.Tensor, int]:
        stream = self.streams[agent_id]
        i = self.tick_index % len(stream.y)
        return stream.x[i], int(stream.y[i])

    def _preliminary(
        self, devices: list[Device], windows: dict[str, torch.Tensor]
    ) -> dict[str, torch.Tensor]:
        """Batched forward passes, one per deployed model version."""
        groups: dict[int, list[Device]] = defaultdict(list)
        for d in devices:
            groups[d.deployed_version].append(d)
        out: dict[str, torch.Tensor] = {}
        for members in groups.values():
            params = members[0].deployed_params or self.network.initial_params
            x = torch.stack([windows[d.agent_id] for d in members])
            with torch.no_grad():
                p = torch.softmax(functional_call(self.network.net, params, (x,)), dim=1)
            out.update({d.agent_id: p[i] for i, d in enumerate(members)})
        return out

    def _publish_request(self, device: Device, window: torch.Tensor, prelim: int, confidence: float) -> None:
        model = self.model
        doc = {
            "schema": REQUEST_SCHEMA,
            "run_id": model.run_id,
            "agent_id": device.agent_id,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
            "prelim_class": prelim,
            "confidence": confidence,
            "window": [float(v) for v in window],
        }
        model.bus.publish(model.topics.request(self.service, device.agent_id), encode_json(doc), qos=1)

    def _on_message(self, message: Message) -> None:
        """Accept well-formed requests of this tick from expected devices; count everything else."""
        stats = self.model.bus.stats
        try:
            doc = decode_json(message.payload, max_bytes=1 << 20)
        except PayloadError as exc:
            stats.reject(exc.kind)
            return
        agent_id = message.topic.rsplit("/", 1)[-1]
        valid = (
            doc.get("schema") == REQUEST_SCHEMA
            and doc.get("agent_id") == agent_id
            and isinstance(doc.get("window"), list)
            and len(doc["window"]) == self.network.task.in_features
        )
        if not valid:
            stats.reject("malformed")
        elif agent_id not in self._expected or doc.get("tick") != self.tick_index:
            stats.reject("unexpected")
        elif agent_id in self._pending:
            stats.reject("duplicate")
        else:
            self._pending[agent_id] = doc

    def _wait_for_requests(self) -> None:
        model = self.model
        deadline = time.monotonic() + model.bus_cfg.barrier_timeout_s
        while not self._expected <= self._pending.keys():
            model.bus.check()
            if time.monotonic() > deadline:
                missing = sorted(self._expected - self._pending.keys())
                raise RunAbortedError(
                    f"{len(missing)} escalated inference requests never arrived ({missing[:3]}…)"
                )
            model.pump(timeout_s=0.05)

    def _record(self, device: Device, label: int, prelim: int, confidence: float, final: int | None) -> None:
        """Model the request's latency and energy (SPEC §7), book the energy, keep the record.

        Same convention as the federated rounds: the device pays compute and its radio both ways; the
        network pays edge compute and its downlink transmission (bits ÷ (cell rate ÷ BS power)).
        """
        model = self.model
        link = model.link_cfg
        edge = model.edge_profile
        local_s = self.flops_per_inference / device.compute.flops_per_s
        energy = float(compute_energy_j(self.flops_per_inference, device.compute.efficiency_flops_per_j))
        model.energy.add(device.agent_id, "inference", energy, service=self.service)
        latency, decided = local_s, prelim
        if final is not None:
            up_s = self.window_bits / device.uplink_bps
            down_s = self.config.result_bits / device.downlink_bps
            latency = local_s + up_s + self.flops_per_inference / edge.flops_per_s + down_s
            share = model.cell_share(device.agent_id)
            bookings = (
                (device.agent_id, "uplink", link.ue_radio_power_w * up_s),
                (device.agent_id, "downlink", link.ue_radio_power_w * down_s),
                (
                    NETWORK,
                    "inference",
                    float(compute_energy_j(self.flops_per_inference, edge.efficiency_flops_per_j)),
                ),
                (
                    NETWORK,
                    "downlink",
                    float(
                        transmission_energy_j(
                            self.config.result_bits, device.downlink_bps * share / link.bs_power_w
                        )
                    ),
                ),
            )
            for agent_id, category, joules in bookings:
                model.energy.add(agent_id, category, joules, service=self.service)
                energy += joules
            decided = final
            device.escalate(float(model.time), latency)
        self.records.append(
            {
                "tick": self.tick_index,
                "sim_time_s": float(model.time),
                "agent_id": device.agent_id,
                "label": label,
                "prelim_class": prelim,
                "confidence": confidence,
                "escalated": final is not None,
                "final_class": decided,
                "correct": decided == label,
                "reliability": device.reliability if final is not None else 1.0,
                "latency_s": latency,
                "energy_j": energy,
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
