"""Live split inference over MQTT (paper §2.4.1 and §2.3.2): robot head, edge tail, split chosen per request.

Every ``interval_s`` the network publishes one signed tick naming each robot's split point ``k``, chosen
from the robot's live uplink rate and its serving edge's current load by the Table 3-13 method
(:mod:`twin.services.split_inference`). On the devices' side (:class:`SplitInferenceDevices`) each robot
senses a frame, runs blocks ``0..k-1`` of the CNN it holds (the global model of its cluster it last
downloaded) and either decides (``k = L``) or sends the activation; one message per host and tick. The
network runs blocks ``k..L-1`` with the **same model version** (its cluster agent keeps every version),
in one batch per (cluster, version, k), and answers each host once. Latency and energy are the twin's:
modelled from FLOPs, bits, rates, the edge's load and HARQ retransmissions; accuracy is scored against
the true label, which never leaves the twin.

The robots' side is described by a :class:`SplitInferencePart` (their frames, the CNN's architecture,
each robot's cluster) and built where the robots run: beside the device host of the run's process, or
split among the device-host workers of ``--workers`` (:mod:`twin.workers`), each worker's part reading
the models its own device host received. A robot's head depends only on the robot (fixed-size row
blocks, :func:`twin.learning.cnn.run_blocks`) and the network orders requests by robot, so the split
changes no result.
"""

from __future__ import annotations

import base64
import binascii
import math
from collections import defaultdict
from collections.abc import Callable, Collection
from dataclasses import dataclass, replace
from typing import TYPE_CHECKING, Any

import numpy as np
import torch

from agents.clustered import ClusterNetworkAgent
from agents.host import DeviceHost
from agents.host_batches import accept_host_batch
from broker.bus import Message
from broker.json_codec import decode_json, encode_json
from twin.auth import json_digest, sign_document
from twin.energy import NETWORK
from twin.errors import PayloadError
from twin.kpi import SplitProfile, transmission_energy_j
from twin.learning.cnn import run_blocks
from twin.qoais import ServiceReport
from twin.services.latency import harq_retransmissions, latency_stats
from twin.services.split_inference import (
    DeterministicLatencyTargets,
    SplitInferenceConfig,
    choose_split_points,
    edge_load_step,
    split_costs,
    split_inference_report,
)

if TYPE_CHECKING:
    from twin.model import TwinModel
    from twin.workers import PartContext

TICK_SCHEMA = "twin.split.tick.v1"
REQUEST_SCHEMA = "twin.split.request.v1"
RESPONSE_SCHEMA = "twin.split.response.v1"
MAX_JSON_BYTES = 64 << 20


def encode_activation(values: torch.Tensor) -> str:
    """An activation as it travels: base64 of its little-endian float32 values."""
    return base64.b64encode(values.detach().to(torch.float32).numpy().astype("<f4").tobytes()).decode()


def decode_activation(text: object, size: int) -> np.ndarray | None:
    """The float32 values of an encoded activation, or None unless exactly ``size`` finite values."""
    if not isinstance(text, str) or len(text) > 4 * (4 * size // 3 + 4):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * size:
        return None
    values = np.frombuffer(raw, dtype="<f4")
    return values if bool(np.isfinite(values).all()) else None


class SplitInferenceDevices:
    """The robots' side of split inference in one device host: sense, run the head, send one batch."""

    def __init__(
        self,
        host: DeviceHost,
        *,
        service: str,
        net: torch.nn.Sequential,
        model_service: dict[str, str],
        frames: dict[str, torch.Tensor],
    ) -> None:
        self.host = host
        self.host_id = host.host_id
        """The host it answers as: its device host's (one key per host, requests signed with it)."""
        self.service = service
        self.net = net
        self.model_service = dict(model_service)
        self.frames = dict(sorted(frames.items()))
        self.last_tick = -1
        self.answered = 0
        topics = host.topics
        self._tick_topic = topics.tick(service)
        self._response_topic = topics.response(service, self.host_id)

    def subscriptions(self) -> tuple[str, ...]:
        """This service's ticks and the answers addressed to this host."""
        return (self._tick_topic, self._response_topic)

    def subscribe(self, subscribe: Callable[[str], None]) -> None:
        """Subscribe to this service's ticks and to the answers addressed to this host."""
        for topic_filter in self.subscriptions():
            subscribe(topic_filter)

    def handles(self, topic: str) -> bool:
        """Ticks of the service and answers to this host."""
        return topic in (self._tick_topic, self._response_topic)

    def on_message(self, message: Message) -> None:
        """Handle a tick or an answer; bad input is counted, never raised."""
        try:
            doc = decode_json(message.payload, max_bytes=MAX_JSON_BYTES)
            if not self.host.credentials.verify_network(message.topic, json_digest(doc), doc.get("auth")):
                raise PayloadError("forged", f"message on {message.topic} not signed by the run's network")
            if message.topic == self._tick_topic:
                self._on_tick(doc)
            else:
                if doc.get("schema") != RESPONSE_SCHEMA or not isinstance(doc.get("answers"), list):
                    raise PayloadError("malformed", "split response has a wrong schema")
                self.answered += len(doc["answers"])
        except PayloadError as exc:
            self.host.bus.stats.reject(exc.kind)

    def _on_tick(self, doc: dict[str, Any]) -> None:
        tick, split = doc.get("tick"), doc.get("split")
        if doc.get("schema") != TICK_SCHEMA or doc.get("run_id") != self.host.topics.run_id:
            raise PayloadError("malformed", "split tick has a wrong schema or run")
        if not isinstance(tick, int) or isinstance(tick, bool) or tick <= self.last_tick:
            raise PayloadError("duplicate" if isinstance(tick, int) else "malformed", "bad or repeated tick")
        if not isinstance(split, dict):
            raise PayloadError("malformed", "split tick has no split points")
        n_blocks = len(self.net)
        mine = {a: k for a, k in split.items() if a in self.frames}
        if not all(
            isinstance(k, int) and not isinstance(k, bool) and 0 <= k <= n_blocks for k in mine.values()
        ):
            raise PayloadError("malformed", "split point out of range")
        self.last_tick = tick
        results = self.sense_and_run(tick, mine)
        body = {
            "schema": REQUEST_SCHEMA,
            "run_id": self.host.topics.run_id,
            "host": self.host_id,
            "tick": tick,
        }
        body["results"] = results
        topic = self.host.topics.request(self.service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.host.credentials.sign(self.host_id, t, d))
        self.host.bus.publish(topic, encode_json(signed), qos=1)

    def sense_and_run(self, tick: int, split: dict[str, int]) -> list[dict[str, Any]]:
        """Each robot senses its frame of ``tick`` and runs its head, batched per (model version, split)."""
        groups: dict[tuple[str, int, int], list[str]] = defaultdict(list)
        params: dict[tuple[str, int], dict[str, torch.Tensor]] = {}
        for agent_id, k in sorted(split.items()):
            service = self.model_service[agent_id]
            version, held = self.host.deployed(service, agent_id)
            groups[(service, version, k)].append(agent_id)
            params[(service, version)] = held
        n_blocks = len(self.net)
        out: dict[str, dict[str, Any]] = {}
        for (service, version, k), members in sorted(groups.items()):
            frames = self.frames
            x = torch.stack([frames[a][tick % frames[a].shape[0]] for a in members])
            head = run_blocks(self.net, params[(service, version)], x, 0, k)
            probs = torch.softmax(head, dim=1) if k == n_blocks else None
            for i, agent_id in enumerate(members):
                result: dict[str, Any] = {"agent_id": agent_id, "model_version": version, "split_point": k}
                if probs is not None:
                    confidence, decided = probs[i].max(dim=0)
                    result["class"], result["confidence"] = int(decided), float(confidence)
                else:
                    result["activation_f32"] = encode_activation(head[i].reshape(-1))
                out[agent_id] = result
        return [out[a] for a in sorted(out)]


@dataclass(frozen=True, slots=True)
class SplitInferencePart:
    """The robots' side of split inference for some robots, as data (:class:`twin.workers.WorkerPart`)."""

    service: str
    """The split-inference service (its ticks, the batches it expects)."""
    net: torch.nn.Sequential
    """The CNN's architecture (the parameters are those each robot's device host received)."""
    model_service: dict[str, str]
    """Robot → the federated service (its cluster) whose global model it runs."""
    frames: dict[str, torch.Tensor]
    """Robot → the frames its camera sees, one per tick in turn."""

    @property
    def device_ids(self) -> Collection[str]:
        """The robots it holds."""
        return self.frames.keys()

    def split(self, devices: Collection[str]) -> SplitInferencePart | None:
        """The same side for ``devices`` only (None when none of them is a robot of it)."""
        wanted = set(devices)
        frames = {a: f for a, f in self.frames.items() if a in wanted}
        if not frames:
            return None
        return replace(self, frames=frames, model_service={a: self.model_service[a] for a in frames})

    def build(self, ctx: PartContext) -> SplitInferenceDevices:
        """The robots' side on ``ctx``'s device host, running the models those robots received there."""
        if ctx.devices is None:
            raise ValueError("the robots' split inference needs their device host (their models)")
        if ctx.devices.host_id != ctx.host_id:
            raise ValueError(
                f"split inference answers as its device host {ctx.devices.host_id}, not {ctx.host_id}"
            )
        return SplitInferenceDevices(
            ctx.devices,
            service=self.service,
            net=self.net,
            model_service=self.model_service,
            frames=self.frames,
        )


class LiveSplitInference:
    """The network side: choose split points, tick, run the tails, answer, record each request."""

    def __init__(
        self,
        model: TwinModel,
        *,
        service: str,
        clusters: dict[str, ClusterNetworkAgent],
        net: torch.nn.Sequential,
        profile: SplitProfile,
        activation_sizes: tuple[int, ...],
        labels: dict[str, torch.Tensor],
        config: SplitInferenceConfig,
        targets: DeterministicLatencyTargets,
        members: dict[str, set[str]],
    ) -> None:
        self.model = model
        self.service = service
        self.net = net
        self.profile = profile
        self.activation_sizes = activation_sizes  # values sent at split point k (index k), 0 for the last
        self.cluster_of = {a: c for c, agent in clusters.items() for a in agent.members}
        self.clusters = clusters
        self.labels = labels
        self.config = config
        self.targets = targets
        self.members = {h: set(a) for h, a in members.items() if a}
        self._host_of = {a: h for h, ids in self.members.items() for a in ids}
        self.records: list[dict[str, Any]] = []
        self.tick_index = 0
        self.edge_load: np.ndarray | None = None
        self._split: dict[str, int] = {}
        self._batches: dict[str, list[dict[str, Any]]] = {}
        self._waiting = False
        model.route(f"{model.topics.service_root(service)}/request", self._on_message)
        model.services.append(self)

    def set_members(self, members: dict[str, set[str]]) -> None:
        """Which host holds which robots (when the robots move to ``--workers``)."""
        self.members = {h: set(a) for h, a in members.items() if a}
        self._host_of = {a: h for h, ids in self.members.items() for a in ids}

    def start(self, at_s: float) -> None:
        """Schedule the first control-loop tick."""
        if self.config.enabled and self.members:
            self.model.schedule_event(self.tick, at=at_s)

    # ---- deciding -----------------------------------------------------------------------------------
    def decide(self, agent_ids: list[str]) -> tuple[np.ndarray, dict[str, np.ndarray]]:
        """Split point of each robot now, from its live uplink rate and its serving edge's load."""
        model = self.model
        cells = [bs.agent_id for bs in model.base_stations]
        self.edge_load = edge_load_step(
            model.seeds.numpy(f"split/edge-load/{self.tick_index}"),
            self.edge_load,
            len(cells),
            self.config.edge_load_mean,
            self.config.edge_load_spread,
        )
        robots = [model.device(a) for a in agent_ids]
        cell_index = {c: i for i, c in enumerate(cells)}
        load = np.array(
            [self.edge_load[cell_index[r.serving_cell]] if r.serving_cell else 0.99 for r in robots]
        )
        edge = model.edge_profile
        rate = np.array([r.uplink_bps for r in robots], dtype=float)
        latency, energy = split_costs(
            self._wire_profile(),
            uplink_bps=rate,
            ue_flops_per_s=np.array([r.compute.flops_per_s for r in robots]),
            ue_power_w=np.array([r.compute.power_w for r in robots]),
            radio_power_w=model.link_cfg.ue_radio_power_w,
            edge_flops_per_s=edge.flops_per_s * (1.0 - load),
            edge_efficiency_flops_per_j=edge.efficiency_flops_per_j,
        )
        split = choose_split_points(
            latency,
            energy,
            budget_s=self.targets.latency_p99_s,
            policy=self.config.policy,
            objective=self.config.objective,
            min_split_point=1 if self.config.raw_frames_stay else 0,
        )
        return split, {"latency_s": latency, "energy_j": energy, "edge_load": load, "uplink_bps": rate}

    def _wire_profile(self) -> SplitProfile:
        """The profiled split points with activations sized at ``activation_bits`` per value on the air."""
        points = [
            p._replace(tx_bits=float(self.activation_sizes[k] * self.config.activation_bits))
            if 0 < k < len(self.profile.points) - 1
            else p
            for k, p in enumerate(self.profile.points)
        ]
        return SplitProfile(tuple(points), self.profile.raw_input_bits, self.profile.name)

    # ---- one tick -----------------------------------------------------------------------------------
    def tick(self) -> None:
        """One control-loop inference of every robot, split as decided now."""
        model = self.model
        agent_ids = sorted(self._host_of)
        split, costs = self.decide(agent_ids)
        self._split = dict(zip(agent_ids, split.tolist(), strict=True))
        self._batches = {}
        self._waiting = True
        doc = {
            "schema": TICK_SCHEMA,
            "run_id": model.run_id,
            "service": self.service,
            "tick": self.tick_index,
            "sim_time_s": float(model.time),
            "split": self._split,
        }
        topic = model.topics.tick(self.service)
        model.bus.publish(topic, encode_json(sign_document(doc, topic, model.keys.sign)), qos=1)
        model.wait_for(
            lambda: self.members.keys() <= self._batches.keys(),
            what=f"split-inference results of tick {self.tick_index}",
            progress=lambda: len(self._batches),
        )
        self._waiting = False
        results = {r["agent_id"]: r for batch in self._batches.values() for r in batch}
        finals = self._run_tails([results[a] for a in agent_ids])
        self._record(agent_ids, [results[a] for a in agent_ids], finals, split, costs)
        answers: dict[str, list[dict[str, Any]]] = defaultdict(list)
        for agent_id in agent_ids:
            if results[agent_id]["split_point"] < len(self.net):
                answers[self._host_of[agent_id]].append(
                    {"agent_id": agent_id, "final_class": finals[agent_id]}
                )
        for host_id, host_answers in sorted(answers.items()):
            topic = model.topics.response(self.service, host_id)
            answer = {
                "schema": RESPONSE_SCHEMA,
                "run_id": model.run_id,
                "host": host_id,
                "tick": self.tick_index,
                "answers": host_answers,
            }
            model.bus.publish(topic, encode_json(sign_document(answer, topic, model.keys.sign)), qos=1)
        self.tick_index += 1
        model.schedule_event(self.tick, at=model.time + self.config.interval_s)

    def _run_tails(self, results: list[dict[str, Any]]) -> dict[str, int]:
        """The decision of every request: the robot's own, or the edge's tail on the sent activation."""
        n_blocks = len(self.net)
        finals: dict[str, int] = {}
        groups: dict[tuple[str, int, int], list[dict[str, Any]]] = defaultdict(list)
        for r in results:
            if r["split_point"] == n_blocks:
                finals[r["agent_id"]] = int(r["class"])
            else:
                groups[(self.cluster_of[r["agent_id"]], r["model_version"], r["split_point"])].append(r)
        for (cluster, version, k), rs in sorted(groups.items()):
            params = self.clusters[cluster].versions[version]
            x = torch.from_numpy(np.stack([r["activation"] for r in rs]))
            if k > 0:
                x = x.reshape(len(rs), *self._shape_after(k))
            logits = run_blocks(self.net, params, x, k, n_blocks)
            for r, c in zip(rs, logits.argmax(dim=1).tolist(), strict=True):
                finals[r["agent_id"]] = int(c)
        return finals

    def _shape_after(self, k: int) -> tuple[int, ...]:
        x = torch.zeros(1, int(self.activation_sizes[0]))
        with torch.no_grad():
            for block in list(self.net)[:k]:
                x = block(x)
        return tuple(x.shape[1:])

    # ---- receiving ----------------------------------------------------------------------------------
    def _on_message(self, message: Message) -> None:
        got = accept_host_batch(self, message, schema=REQUEST_SCHEMA, max_bytes=MAX_JSON_BYTES)
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
        """The host's results if each is well-formed, at its assigned split point, and all are there."""
        if not isinstance(results, list):
            return None
        n_blocks = len(self.net)
        n_classes = next(iter(self.clusters.values())).task.n_classes
        seen: set[str] = set()
        for r in results:
            if not isinstance(r, dict) or r.get("agent_id") not in self.members[host_id]:
                return None
            agent_id, k, version = r["agent_id"], r.get("split_point"), r.get("model_version")
            cluster = self.clusters[self.cluster_of[agent_id]]
            if (
                not isinstance(k, int)
                or k != self._split.get(agent_id)
                or not isinstance(version, int)
                or version not in cluster.versions
            ):
                return None
            if k == n_blocks:
                c, conf = r.get("class"), r.get("confidence")
                if not (isinstance(c, int) and 0 <= c < n_classes and isinstance(conf, float)):
                    return None
            else:
                activation = decode_activation(r.get("activation_f32"), int(self.activation_sizes[k]))
                if activation is None:
                    return None
                r["activation"] = activation.copy()
            seen.add(agent_id)
        return results if seen == self.members[host_id] and len(results) == len(seen) else None

    # ---- records ------------------------------------------------------------------------------------
    def _record(
        self,
        agent_ids: list[str],
        results: list[dict[str, Any]],
        finals: dict[str, int],
        split: np.ndarray,
        costs: dict[str, np.ndarray],
    ) -> None:
        """Model each request's latency and energy (SPEC §7 at its split point, plus HARQ and downlink)."""
        model, link, edge = self.model, self.model.link_cfg, self.model.edge_profile
        robots = [model.device(a) for a in agent_ids]
        last = len(self.net)
        rows = np.arange(len(agent_ids))
        offloaded = split < last
        reliability = np.where(offloaded, np.array([r.reliability for r in robots]), 1.0)
        retx = harq_retransmissions(
            model.seeds.numpy(f"split/harq/{self.tick_index}"),
            reliability,
            model.radio_cfg.harq_transmissions,
        )
        retx = np.where(offloaded, retx, 0)
        down_bps = np.array([r.downlink_bps for r in robots], dtype=float)
        with np.errstate(divide="ignore"):
            down_s = np.where(offloaded, self.config.result_bits / down_bps, 0.0)
        latency = costs["latency_s"][rows, split] + retx * self.config.harq_rtt_s + down_s
        profile = self._wire_profile()
        ue_flops, tx_bits, net_flops = (
            a[split] for a in (profile.ue_flops, profile.tx_bits, profile.net_flops)
        )
        e_ue = ue_flops / np.array([r.compute.efficiency_flops_per_j for r in robots])
        with np.errstate(divide="ignore", invalid="ignore"):
            e_up = np.where(
                tx_bits > 0, link.ue_radio_power_w * tx_bits * (1 + retx) / costs["uplink_bps"], 0.0
            )
        e_down = link.ue_radio_power_w * down_s
        e_edge = net_flops / edge.efficiency_flops_per_j
        share = np.array([model.cell_share(a) for a in agent_ids], dtype=float)
        e_cell = np.where(
            offloaded, transmission_energy_j(self.config.result_bits, down_bps * share / link.bs_power_w), 0.0
        )
        ledger = model.energy
        ledger.add_many(agent_ids, "inference", e_ue, service=self.service)
        ledger.add_many(agent_ids, "uplink", e_up, service=self.service)
        ledger.add_many(agent_ids, "downlink", e_down, service=self.service)
        ledger.add_many([NETWORK] * len(agent_ids), "inference", e_edge, service=self.service)
        ledger.add_many([NETWORK] * len(agent_ids), "downlink", e_cell, service=self.service)
        energy = e_ue + e_up + e_down + e_edge + e_cell
        now = float(model.time)
        for i, agent_id in enumerate(agent_ids):
            labels = self.labels[agent_id]
            label = int(labels[self.tick_index % len(labels)])
            final = finals[agent_id]
            if offloaded[i]:
                robots[i].escalate(now, float(latency[i]))
            self.records.append(
                {
                    "tick": self.tick_index,
                    "sim_time_s": now,
                    "agent_id": agent_id,
                    "cluster": self.cluster_of[agent_id],
                    "model_version": int(results[i]["model_version"]),
                    "split_point": int(split[i]),
                    "uplink_bps": float(costs["uplink_bps"][i]),
                    "edge_load": float(costs["edge_load"][i]),
                    "retransmissions": int(retx[i]),
                    "label": label,
                    "final_class": final,
                    "correct": final == label,
                    "reliability": float(reliability[i]),
                    "latency_s": float(latency[i]),
                    "on_time": bool(latency[i] <= self.targets.latency_p99_s),
                    "energy_j": float(energy[i]),
                }
            )

    def summary(self) -> dict[str, Any]:
        """Service-level figures over all requests so far (p50, p99, jitter against the budget)."""
        if not self.records:
            return {}
        correct = np.array([r["correct"] for r in self.records], dtype=float)
        reliability = np.array([r["reliability"] for r in self.records])
        split = np.array([r["split_point"] for r in self.records])
        last = len(self.net)
        stats = latency_stats([r["latency_s"] for r in self.records], self.targets.latency_p99_s)
        retx = np.array([r["retransmissions"] for r in self.records])
        offloaded = split < last
        used = ", ".join(f"{k}: {int((split == k).sum())}" for k in np.unique(split).tolist())
        return {
            "requests": float(len(self.records)),
            "accuracy": float(correct.mean()),
            "service_accuracy": float((correct * reliability).mean()),
            "latency_p50_s": stats.p50_s,
            "latency_p99_s": stats.p99_s,
            "latency_max_s": stats.max_s if math.isfinite(stats.max_s) else math.inf,
            "jitter_s": stats.jitter_s,
            "on_time_share": stats.on_time_share,
            "split_share": float(offloaded.mean()),
            "raw_share": float((split == 0).mean()),
            "feature_share": float(((split > 0) & offloaded).mean()),
            "retransmission_share": float((retx[offloaded] > 0).mean()) if offloaded.any() else 0.0,
            "split_points_used": used,
            "energy_per_request_j": float(np.mean([r["energy_j"] for r in self.records])),
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the control-loop inference: accuracy, p99 vs budget, jitter vs bound, energy."""
        return split_inference_report(
            self.service, self.summary(), self.targets, tls=tls, authenticated=authenticated
        )
