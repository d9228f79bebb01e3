"""Device hosts: the device side of every service, as an MQTT endpoint of its own.

A :class:`DeviceHost` holds a set of devices' own data, sensor windows and the models they received.
It shares nothing with the network agent: it reads each round's plan and global model **from the
wire** (so the wire precision, a late or a corrupted global model have their real effect), trains its
selected devices as one vectorised cohort, and publishes one update per device; for a request service
it senses, runs the preliminary inference with the model each device actually holds, and sends all its
devices' results of a tick in one message.

A host needs a bus, the run's topics and seed, and nothing of the Mesa model, so the same class runs in
the run's process (the default), in a worker process, or beside a real device (``twin device``).
"""

from __future__ import annotations

import base64
import binascii
import logging
import math
import time
from collections import defaultdict
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
from torch import nn

from broker.bus import Bus, Message
from broker.codec import WireDtype
from broker.json_codec import decode_json, encode_json
from broker.model_exchange import ModelExchange, ReceivedModel, ResendRequest
from broker.topics import Topics, parse_model_topic
from broker.update_batch import rows_per_batch
from twin.auth import NETWORK, Credentials, json_digest, sign_document
from twin.errors import PayloadError
from twin.learning.cohort import (
    LocalData,
    Params,
    StackedData,
    batch_invariant_logits,
    keyed_schedule,
    shardable,
    train_cohort_stacked,
)
from twin.learning.round_plan import PLAN_SCHEMA, RoundPlan, parse_round_plan
from twin.parallel import map_shards, shard_bounds
from twin.rng import SeedStreams

log = logging.getLogger(__name__)

TICK_SCHEMA = "twin.inference.tick.v1"
BATCH_REQUEST_SCHEMA = "twin.inference.request.v1"
BATCH_RESPONSE_SCHEMA = "twin.inference.response.v1"
MAX_JSON_BYTES = 64 << 20
COHORT_SIZE = 512
"""Devices trained together in one vmap cohort; updates are published as each cohort finishes, so the
network sees progress while a host with thousands of devices trains (a device's result does not depend
on the cohort it trained in)."""
MIN_SHARD = 32
"""Fewest devices a shard of a cohort trains on its own thread (fewer: not worth a thread)."""

__all__ = [
    "BATCH_REQUEST_SCHEMA",
    "BATCH_RESPONSE_SCHEMA",
    "PLAN_SCHEMA",
    "TICK_SCHEMA",
    "DeviceHost",
]


@dataclass(slots=True)
class _Deployed:
    """The model a device holds for on-device inference: the global model it last downloaded."""

    version: int
    params: Params


@dataclass(slots=True)
class _FederatedRole:
    """This host's part in one federated service."""

    net: nn.Module
    data: dict[str, LocalData]
    initial: Params
    plans: dict[int, RoundPlan] = field(default_factory=dict)
    globals: dict[int, Params] = field(default_factory=dict)
    trained: set[int] = field(default_factory=set)
    uploaded: set[int] = field(default_factory=set)
    deployed: dict[str, _Deployed] = field(default_factory=dict)
    stacked: tuple[list[LocalData], StackedData] | None = None  # the last cohort's data, padded


@dataclass(slots=True)
class _InferenceRole:
    """This host's part in one two-stage inference service."""

    net: nn.Module
    model_service: str
    windows: dict[str, torch.Tensor]  # agent_id -> (n_windows, features)
    confidence_threshold: float
    escalate_anomalies: bool
    normal_class: int
    answered: int = 0
    last_tick: int = -1  # ticks are answered once each, in order: a replayed tick costs no inference


class DeviceHost:
    """The devices of one process (or worker, or real device), as one MQTT endpoint."""

    def __init__(
        self,
        *,
        host_id: str,
        bus: Bus,
        topics: Topics,
        seed: int,
        chunk_bytes: int,
        max_payload_bytes: int,
        credentials: Credentials,
        wire_dtype: WireDtype = "fp32",
        subscribe: Callable[[str], None] | None = None,
        pack_updates: bool = False,
    ) -> None:
        self.host_id = host_id
        self.pack_updates = pack_updates
        """Send each cohort's updates as packed batches (``broker.update_batch``), not one per device."""
        self.bus = bus
        self.topics = topics
        self.seeds = SeedStreams(seed)
        self.credentials = credentials
        self.exchange = ModelExchange(
            bus,
            topics,
            chunk_bytes=chunk_bytes,
            max_payload_bytes=max_payload_bytes,
            wire_dtype=wire_dtype,
            signer=credentials.sign,
            verifier=lambda sender, topic, digest, tag: (
                sender == NETWORK and credentials.verify_network(topic, digest, tag)
            ),
        )
        self._subscribe = subscribe or bus.subscribe
        self.cohort_size = COHORT_SIZE
        self.federated: dict[str, _FederatedRole] = {}
        self.inference: dict[str, _InferenceRole] = {}
        self.updates_sent = 0
        self._batch_of: dict[str, str] = {}  # a device's update topic → the packed batch it left in
        self._batch_resent: dict[str, float] = {}  # batch topic → wall-clock of its last resend

    # ---- joining services ----------------------------------------------------------------------
    def join_federated(
        self, service: str, *, net: nn.Module, template: Params, data: Mapping[str, LocalData]
    ) -> None:
        """Take part in federated ``service`` with these devices' local data.

        ``template`` is the architecture's tensors (names and shapes; a received model must match it)
        and the model a device holds before it first downloads a global model.
        """
        if not data:
            return
        self.exchange.register_template(service, template)
        self.federated[service] = _FederatedRole(
            net, dict(sorted(data.items())), {k: v.detach().clone() for k, v in template.items()}
        )
        for topic_filter in self.topics.device_filters(service):
            self._subscribe(topic_filter)

    def join_inference(
        self,
        service: str,
        *,
        model_service: str,
        windows: Mapping[str, torch.Tensor],
        confidence_threshold: float,
        escalate_anomalies: bool,
        normal_class: int = 0,
    ) -> None:
        """Sense and infer for request ``service`` with the models received for ``model_service``."""
        role = self.federated.get(model_service)
        if role is None or not windows:
            return
        self.inference[service] = _InferenceRole(
            role.net,
            model_service,
            dict(sorted(windows.items())),
            confidence_threshold,
            escalate_anomalies,
            normal_class,
        )
        self._subscribe(self.topics.tick(service))
        self._subscribe(self.topics.response(service, self.host_id))

    @property
    def device_ids(self) -> list[str]:
        """Every device this host holds, sorted."""
        ids: set[str] = set()
        for role in self.federated.values():
            ids.update(role.data)
        return sorted(ids)

    def deployed(self, service: str, agent_id: str) -> tuple[int, Params]:
        """(version, params) of the model ``agent_id`` holds for ``service`` (version 0: initial)."""
        role = self.federated[service]
        held = role.deployed.get(agent_id)
        return (held.version, held.params) if held else (0, role.initial)

    # ---- receiving -------------------------------------------------------------------------------
    def handles(self, topic: str) -> bool:
        """Whether ``topic`` is addressed to this host (round plans, global models, its resends, ticks)."""
        parsed = parse_model_topic(self.topics, topic)
        if parsed is not None:
            if parsed.service not in self.federated:
                return False
            if parsed.kind in ("select", "global"):
                return True
            return parsed.kind == "resend" and parsed.agent_id in self.federated[parsed.service].data
        for service in self.inference:
            if topic in (self.topics.tick(service), self.topics.response(service, self.host_id)):
                return True
        return False

    def on_message(self, message: Message) -> None:
        """Handle one message addressed to this host; bad input is counted, never raised."""
        parsed = parse_model_topic(self.topics, message.topic)
        try:
            if parsed is not None and parsed.kind == "select":
                self._on_plan(parsed.service, parsed.round_index, message.payload)
                return
            if parsed is not None:
                received = self.exchange.receive(message)
                if isinstance(received, ReceivedModel) and received.kind == "global":
                    self._on_global(received)
                elif isinstance(received, ResendRequest):
                    self._on_resend(received)
                elif received is not None:
                    self.bus.stats.reject("unexpected")
                return
            for service in self.inference:
                if message.topic == self.topics.tick(service):
                    self._on_tick(service, message.payload)
                    return
                if message.topic == self.topics.response(service, self.host_id):
                    self._on_response(service, message.payload)
                    return
            self.bus.stats.reject("unknown")
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)
            log.warning("device host %s rejected %s on %s: %s", self.host_id, exc.kind, message.topic, exc)

    def _on_plan(self, service: str, round_index: int, payload: bytes) -> None:
        role = self.federated[service]
        topic = self.topics.select(service, round_index)
        plan = parse_round_plan(
            payload,
            run_id=self.topics.run_id,
            service=service,
            round_index=round_index,
            verify=lambda digest, tag: self.credentials.verify_network(topic, digest, tag),
        )
        if round_index in role.plans or round_index in role.trained:
            raise PayloadError("duplicate", f"round plan {round_index} of {service} already received")
        role.plans[round_index] = plan
        self._maybe_train(service, round_index)

    def _on_global(self, received: ReceivedModel) -> None:
        role = self.federated[received.service]
        if received.round_index in role.trained:
            raise PayloadError("duplicate", "global model of a round already trained")
        role.globals[received.round_index] = dict(received.payload.tensors)
        self._maybe_train(received.service, received.round_index)

    def _on_resend(self, request: ResendRequest) -> None:
        topic = self.topics.update(request.service, request.round_index, request.agent_id)
        batch = self._batch_of.get(topic)
        if batch is None:
            if not self.exchange.resend(topic, request.chunks):
                self.bus.stats.reject("unknown")
            return
        # The network asks per device, so one wave of its requests names a batch once per device in
        # it: the batch goes out again (whole: the network knows missing devices, not chunks) at most
        # once a second. Wall-clock only decides how many copies travel, never what is aggregated.
        now = time.monotonic()
        if now - self._batch_resent.get(batch, -math.inf) >= 1.0:
            self._batch_resent[batch] = now
            self.exchange.resend(batch, None)

    # ---- federated training ---------------------------------------------------------------------
    def _maybe_train(self, service: str, round_index: int) -> None:
        """Once both the plan and the global model of a round are here: train the selected, upload."""
        role = self.federated[service]
        plan, global_params = role.plans.get(round_index), role.globals.get(round_index)
        if plan is None or global_params is None:
            return
        role.trained.add(round_index)
        for old in [r for r in role.plans if r <= round_index]:
            del role.plans[old]
        for old in [r for r in role.globals if r <= round_index]:
            del role.globals[old]
        self.exchange.forget_sent(round_index, service=service)
        self.exchange.forget_received(round_index + 1, service=service)  # older global models: no use
        mine = [a for a in plan.selected if a in role.data]
        if not mine:
            return
        role.uploaded.add(round_index)
        held = _Deployed(round_index - 1, global_params)
        self._batch_of = {
            t: b for t, b in self._batch_of.items() if not _before(self.topics, t, service, round_index)
        }
        self._batch_resent = {
            t: w for t, w in self._batch_resent.items() if not _before(self.topics, t, service, round_index)
        }
        for start in range(0, len(mine), self.cohort_size):  # updates leave as each cohort finishes
            cohort = mine[start : start + self.cohort_size]
            self._train_cohort(service, role, plan, global_params, round_index, start, cohort)
            for agent_id in cohort:
                role.deployed[agent_id] = held

    def _train_cohort(
        self,
        service: str,
        role: _FederatedRole,
        plan: RoundPlan,
        global_params: Params,
        round_index: int,
        first: int,
        cohort: list[str],
    ) -> None:
        """Train one cohort (in shards on parallel threads, for the MLP) and publish its updates.

        Each shard trains its devices and, packed, encodes and signs their batches on its own thread;
        this thread then publishes everything in the cohort's order, so what travels — batches,
        their ids, bytes and order — is the same however many shards there were. (Training in
        smaller pieces and publishing each at once, to overlap the transport, measured slower here:
        the broker then competes with training for the same cores.)
        """
        # The same devices' same data, round after round. The cache holds the data objects it was made
        # from and is used only while every device still has exactly those (a terminal re-training on
        # recent cases replaces its data): a stale copy is never trained on.
        sources = [role.data[a] for a in cohort]
        cached = role.stacked
        if (
            cached is None
            or len(cached[0]) != len(sources)
            or any(old is not new for old, new in zip(cached[0], sources, strict=True))
        ):
            cached = role.stacked = (sources, StackedData.of(sources))
        stacked = cached[1]
        schedule = keyed_schedule(
            [int(role.data[a].y.shape[0]) for a in cohort],
            epochs=plan.local_epochs,
            batch_size=plan.batch_size,
            keys=[self.seeds.key(f"fl/batches/{round_index}/{a}") for a in cohort],
        )
        per_batch = 1
        if self.pack_updates:
            layout = self.exchange.layout(service)
            per_batch = rows_per_batch(layout, self.exchange.wire_dtype, self.exchange.chunk_bytes)
        parallel = shardable(role.net, global_params)
        bounds = (
            shard_bounds(len(cohort), min_shard=MIN_SHARD, align=per_batch)
            if parallel
            else [(0, len(cohort))]
        )

        def train(a: int, b: int) -> Params:
            return train_cohort_stacked(
                role.net,
                global_params,
                stacked.rows(a, b),
                schedule.rows(a, b),
                lr=plan.lr,
                proximal_mu=plan.proximal_mu,
            )

        def shard(a: int, b: int) -> Params | list[tuple[str, bytes, list[str]]]:
            trained = train(a, b)
            if not self.pack_updates:
                return trained
            return self._encode_packed(service, round_index, first + a, cohort[a:b], trained, per_batch)

        threads = torch.get_num_threads()
        torch.set_num_threads(1)  # small models: intra-op threads only add synchronisation (shards don't)
        try:
            results = map_shards(shard, bounds)
        finally:
            torch.set_num_threads(threads)
        for (a, _), result in zip(bounds, results, strict=True):
            if isinstance(result, list):
                for topic, payload, agents in result:
                    self.exchange.publish_encoded(topic, payload)
                    for agent_id in agents:
                        self._batch_of[self.topics.update(service, round_index, agent_id)] = topic
                    self.updates_sent += len(agents)
                continue
            for i, agent_id in enumerate(cohort[a : a + _rows(result)]):
                params = {k: v[i] for k, v in result.items()}
                meta = {"round": round_index, "service": service, "agent_id": agent_id, "host": self.host_id}
                self.exchange.send(self.topics.update(service, round_index, agent_id), params, meta)
                self.updates_sent += 1

    def _encode_packed(
        self,
        service: str,
        round_index: int,
        first: int,
        agents: list[str],
        trained: Params,
        per_batch: int,
    ) -> list[tuple[str, bytes, list[str]]]:
        """Devices' updates as packed batches of ``per_batch`` rows (topic, payload, devices); pure.

        A batch is one MQTT message (no chunks) when a row fits in one; its id is the host and the
        position of its first device in the round's list, so shards name the same batches.
        """
        rows = self.exchange.layout(service).flatten(trained)
        out = []
        for start in range(0, len(agents), per_batch):
            part = agents[start : start + per_batch]
            topic, payload = self.exchange.encode_batch(
                service,
                round_index,
                f"{self.host_id}.{first + start}",
                rows[start : start + per_batch],
                part,
                sign=self.credentials.sign,
            )
            out.append((topic, payload, part))
        return out

    # ---- two-stage inference ---------------------------------------------------------------------
    def _network_document(self, topic: str, payload: bytes, max_bytes: int) -> dict[str, Any]:
        """A JSON message from the network, its signature checked before anything else."""
        doc = decode_json(payload, max_bytes=max_bytes)
        if not self.credentials.verify_network(topic, json_digest(doc), doc.get("auth")):
            raise PayloadError("forged", f"message on {topic} not signed by the run's network")
        return doc

    def _on_tick(self, service: str, payload: bytes) -> None:
        doc = self._network_document(self.topics.tick(service), payload, 4096)
        tick = doc.get("tick")
        if doc.get("schema") != TICK_SCHEMA or doc.get("run_id") != self.topics.run_id:
            raise PayloadError("malformed", "inference tick has a wrong schema or run")
        if not isinstance(tick, int) or isinstance(tick, bool) or tick < 0:
            raise PayloadError("malformed", "inference tick index is not a non-negative integer")
        role = self.inference[service]
        if tick <= role.last_tick:
            raise PayloadError("duplicate", f"inference tick {tick} already answered")
        role.last_tick = tick
        results = self.sense_and_infer(service, tick)
        body = {
            "schema": BATCH_REQUEST_SCHEMA,
            "run_id": self.topics.run_id,
            "host": self.host_id,
            "tick": tick,
            "results": results,
        }
        topic = self.topics.request(service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.credentials.sign(self.host_id, t, d))
        self.bus.publish(topic, encode_json(signed), qos=1)

    def sense_and_infer(self, service: str, tick: int) -> list[dict[str, Any]]:
        """Every device senses its window of ``tick`` and infers with the model it holds (batched).

        A device escalates (sends its window) when it is unsure (confidence below the threshold) or, if
        configured, when it sees an anomaly.
        """
        role = self.inference[service]
        groups: dict[int, list[str]] = defaultdict(list)
        versions: dict[int, Params] = {}
        for agent_id in role.windows:
            version, params = self.deployed(role.model_service, agent_id)
            groups[version].append(agent_id)
            versions[version] = params
        out: dict[str, dict[str, Any]] = {}
        for version, members in groups.items():
            x = torch.stack([_window(role.windows[a], tick) for a in members])
            probs = torch.softmax(batch_invariant_logits(role.net, versions[version], x), dim=1)
            confidence, prelim = probs.max(dim=1)
            for i, agent_id in enumerate(members):
                c, p = float(confidence[i]), int(prelim[i])
                anomaly = p != role.normal_class and role.escalate_anomalies
                result: dict[str, Any] = {
                    "agent_id": agent_id,
                    "model_version": version,
                    "prelim_class": p,
                    "confidence": c,
                    "escalate": c < role.confidence_threshold or anomaly,
                }
                if result["escalate"]:
                    result["window_f32"] = encode_window(x[i])
                out[agent_id] = result
        return [out[a] for a in sorted(out)]

    def _on_response(self, service: str, payload: bytes) -> None:
        doc = self._network_document(self.topics.response(service, self.host_id), payload, MAX_JSON_BYTES)
        answers = doc.get("answers")
        if doc.get("schema") != BATCH_RESPONSE_SCHEMA or not isinstance(answers, list):
            raise PayloadError("malformed", "inference response has a wrong schema")
        self.inference[service].answered += len(answers)


def _rows(stacked: Params) -> int:
    return int(next(iter(stacked.values())).shape[0])


def _before(topics: Topics, topic: str, service: str, round_index: int) -> bool:
    """Whether ``topic`` is of ``service`` and a round before ``round_index``."""
    parsed = parse_model_topic(topics, topic)
    return parsed is not None and parsed.service == service and parsed.round_index < round_index


def encode_window(window: torch.Tensor) -> str:
    """A sensed window as it travels: base64 of its little-endian float32 values."""
    return base64.b64encode(window.detach().to(torch.float32).numpy().astype("<f4").tobytes()).decode()


def decode_window(text: object, width: int) -> np.ndarray | None:
    """The float32 values of an encoded window, or None unless exactly ``width`` finite values."""
    if not isinstance(text, str) or len(text) > 4 * (4 * width // 3 + 4):
        return None
    try:
        raw = base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError):
        return None
    if len(raw) != 4 * width:
        return None
    values = np.frombuffer(raw, dtype="<f4")
    return values if bool(np.isfinite(values).all()) else None


def _window(windows: torch.Tensor, tick: int) -> torch.Tensor:
    return windows[tick % windows.shape[0]]
