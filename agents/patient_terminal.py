"""Patient terminals (paper §2.3.6): collect cases, desensitise them on the device, send them to the edge.

A :class:`PatientTerminal` is the twin's model of one terminal (place, link, compute, registered
training data). A :class:`TerminalHost` is the terminals' side as an MQTT endpoint: it holds the raw
case records **with their identifiers**, and on each tick of the diagnosis service runs the data
management service's device side (:class:`twin.services.data_management.DataCollector`) on every new
case, so that only desensitised fields and standardised features leave, in one signed batch per tick.
Confirmed diagnoses of labelled cases travel with them (a clinician's confirmation). In federated mode
the host also keeps each terminal's training window up to date for the federated device host it sits
beside (same process, same side), following the model-management policy the network publishes.

The terminals' side is described by a :class:`TerminalPart` (their cases, histories and the data
service's settings) and built where the terminals run: as one host in the run's process, or split among
the device-host workers of ``--workers`` (:mod:`twin.workers`), each worker's part feeding the training
windows of the devices its own device host trains. A terminal's desensitisation, near-duplicate memory
and training window depend on that terminal only, and the network sorts the cases it receives by
terminal, so the split changes no result.
"""

from __future__ import annotations

import base64
import logging
from collections.abc import Collection, Mapping
from dataclasses import dataclass, field, replace
from typing import TYPE_CHECKING, Any, ClassVar

import numpy as np
import torch
from mesa.experimental.continuous_space import ContinuousSpace

from agents.device import Device
from agents.host import DeviceHost
from broker.bus import Bus, Message
from broker.json_codec import decode_json, encode_json
from broker.topics import Topics
from twin.auth import Credentials, json_digest, sign_document
from twin.errors import PayloadError
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.services.data_management import DataCollector, DataServiceConfig, RecordSchema

if TYPE_CHECKING:
    from twin.workers import PartContext

log = logging.getLogger(__name__)

CASES_SCHEMA = "twin.diagnosis.cases.v1"
ANSWER_SCHEMA = "twin.diagnosis.answers.v1"
POLICY_SCHEMA = "twin.diagnosis.policy.v1"
MIN_TRAINING_CASES = 4


class PatientTerminal(Device):
    """A patient terminal in a clinic or at home: low compute, collects and desensitises cases."""

    kind: ClassVar[str] = "patient-terminal"

    def __init__(
        self,
        model: Any,
        space: ContinuousSpace,
        *,
        agent_id: str,
        position_m: tuple[float, float],
        compute: ComputeProfile,
        data: LocalData,
        site: str,
    ) -> None:
        super().__init__(
            model, space, agent_id=agent_id, position_m=position_m, height_m=1.5, compute=compute, data=data
        )
        self.site = site


@dataclass(slots=True)
class TrainingWindow:
    """A terminal's labelled training cases: its history, then the cases it collects, most recent last."""

    history: LocalData
    limit: int
    ticks: list[int] = field(default_factory=list)
    x: list[np.ndarray] = field(default_factory=list)
    y: list[int] = field(default_factory=list)

    def add(self, tick: int, x: np.ndarray, y: int) -> None:
        """One more labelled case."""
        self.ticks.append(tick)
        self.x.append(np.asarray(x, dtype=np.float32))
        self.y.append(int(y))
        if len(self.ticks) > self.limit:
            del self.ticks[0], self.x[0], self.y[0]

    def data(self, since_tick: int | None) -> LocalData:
        """Training data: history + cases (``since_tick`` None), else the cases from ``since_tick`` on.

        At least :data:`MIN_TRAINING_CASES` of the most recent cases, at most ``limit`` cases in all.
        """
        if since_tick is None:
            x = [*self.history.x.numpy(), *self.x][-self.limit :]
            y = [*self.history.y.tolist(), *self.y][-self.limit :]
        else:
            first = next((i for i, t in enumerate(self.ticks) if t >= since_tick), len(self.ticks))
            first = min(first, max(0, len(self.ticks) - MIN_TRAINING_CASES))
            x, y = self.x[first:], self.y[first:]
        if not x:
            return self.history
        return LocalData(torch.from_numpy(np.stack(x)), torch.tensor(y, dtype=torch.int64))


@dataclass(frozen=True, slots=True)
class TerminalCases:
    """What one terminal will collect: ``per_tick`` raw records per tick, their diagnoses and flags."""

    records: list[dict[str, Any]]
    labels: np.ndarray
    labelled: np.ndarray
    per_tick: int

    def of_tick(self, tick: int) -> range:
        """Indices of the cases collected at ``tick`` (empty past the end)."""
        start = tick * self.per_tick
        return range(min(start, len(self.records)), min(start + self.per_tick, len(self.records)))


def encode_features(x: np.ndarray) -> str:
    """Standardised features as they travel: base64 of little-endian float32."""
    return base64.b64encode(np.asarray(x, dtype="<f4").tobytes()).decode()


@dataclass(frozen=True, slots=True)
class TerminalPart:
    """The patient terminals' side for some terminals, as data (:class:`twin.workers.WorkerPart`)."""

    service: str
    """The diagnosis service (its ticks, the batches it expects, its answers)."""
    policy_topic: str
    """Where model management publishes its re-training policy (which cases the terminals train on)."""
    schema: RecordSchema
    """The case records' fields (identifiers, quasi-identifiers, features) for the data service."""
    data: DataServiceConfig
    """The data service's settings (each host's :class:`DataCollector` is built from them)."""
    cases: Mapping[str, TerminalCases]
    """Terminal → the cases it will collect."""
    history: Mapping[str, LocalData]
    """Terminal → its labelled cases before the run (the start of its training window)."""
    training_window: int
    """Most recent labelled cases a terminal trains on."""
    federated_service: str | None
    """The federated service whose device-side data the terminals keep up to date (None: central)."""

    @property
    def device_ids(self) -> Collection[str]:
        """The terminals it holds."""
        return self.cases.keys()

    def split(self, devices: Collection[str]) -> TerminalPart | None:
        """The same side for ``devices`` only (None when none of them is a terminal of it)."""
        wanted = set(devices)
        cases = {a: c for a, c in self.cases.items() if a in wanted}
        if not cases:
            return None
        return replace(self, cases=cases, history={a: self.history[a] for a in cases})

    def build(self, ctx: PartContext) -> TerminalHost:
        """The terminal host of these terminals, beside the device host that trains them (federated)."""
        federated = None
        if self.federated_service is not None:
            if ctx.devices is None:
                raise ValueError("federated terminals need their device host (the devices' training data)")
            federated = (ctx.devices, self.federated_service)
        return TerminalHost(
            host_id=ctx.host_id,
            bus=ctx.bus,
            topics=ctx.topics,
            credentials=ctx.credentials,
            service=self.service,
            policy_topic=self.policy_topic,
            collector=DataCollector(self.schema, self.data),
            cases=self.cases,
            windows={a: TrainingWindow(self.history[a], self.training_window) for a in self.cases},
            federated=federated,
        )


class TerminalHost:
    """The patient terminals of one process, as one MQTT endpoint of the diagnosis service."""

    def __init__(
        self,
        *,
        host_id: str,
        bus: Bus,
        topics: Topics,
        credentials: Credentials,
        service: str,
        policy_topic: str,
        collector: DataCollector,
        cases: Mapping[str, TerminalCases],
        windows: Mapping[str, TrainingWindow],
        federated: tuple[DeviceHost, str] | None,
    ) -> None:
        self.host_id = host_id
        self.bus = bus
        self.topics = topics
        self.credentials = credentials
        self.service = service
        self.policy_topic = policy_topic
        self.collector = collector
        self.deduplicate = collector.config.deduplicate
        self.cases = dict(sorted(cases.items()))
        self.windows = dict(windows)
        self.federated = federated
        self.since_tick: int | None = None
        self.last_tick = -1
        self.answered = 0

    def subscriptions(self) -> tuple[str, ...]:
        """Topics this host listens on: ticks, its answers, the model-management policy."""
        return (
            self.topics.tick(self.service),
            self.topics.response(self.service, self.host_id),
            self.policy_topic,
        )

    def handles(self, topic: str) -> bool:
        """Whether ``topic`` is addressed to this host."""
        return topic in self.subscriptions()

    def on_message(self, message: Message) -> None:
        """Handle a tick, an answer or a policy; bad input is counted, never raised."""
        try:
            doc = decode_json(message.payload, max_bytes=1 << 24)
            if not self.credentials.verify_network(message.topic, json_digest(doc), doc.get("auth")):
                raise PayloadError("forged", f"message on {message.topic} not signed by the run's network")
            if message.topic == self.policy_topic:
                since = doc.get("since_tick")
                if (
                    doc.get("schema") != POLICY_SCHEMA
                    or not isinstance(since, int)
                    or isinstance(since, bool)
                ):
                    raise PayloadError("malformed", "diagnosis policy has a wrong schema")
                self.since_tick = since
            elif message.topic == self.topics.tick(self.service):
                self._on_tick(doc)
            elif doc.get("schema") == ANSWER_SCHEMA and isinstance(doc.get("answers"), list):
                self.answered += len(doc["answers"])
            else:
                raise PayloadError("malformed", "diagnosis answer has a wrong schema")
        except PayloadError as exc:
            self.bus.stats.reject(exc.kind)
            log.warning("terminal host %s rejected %s on %s: %s", self.host_id, exc.kind, message.topic, exc)

    def _on_tick(self, doc: Mapping[str, Any]) -> None:
        tick = doc.get("tick")
        if (
            not isinstance(tick, int)
            or isinstance(tick, bool)
            or tick < 0
            or doc.get("run_id") != self.topics.run_id
        ):
            raise PayloadError("malformed", "diagnosis tick has a wrong index or run")
        if tick <= self.last_tick:
            raise PayloadError("duplicate", f"diagnosis tick {tick} already answered")
        self.last_tick = tick
        batch = []
        for agent_id, cases in self.cases.items():  # one case at a time: the data service's unit of work
            for i in cases.of_tick(tick):
                collected = self.collector.collect(agent_id, cases.records[i])
                confirmed = int(cases.labels[i]) if bool(cases.labelled[i]) else None
                batch.append(
                    {
                        "agent_id": agent_id,
                        "case": i,
                        "released": collected.released,
                        "features_f32": encode_features(collected.features),
                        "lossless": collected.lossless,
                        "near_duplicate": collected.near_duplicate,
                        "confirmed_class": confirmed,
                    }
                )
                window = self.windows.get(agent_id)
                if (
                    window is not None
                    and confirmed is not None
                    and not (self.deduplicate and collected.near_duplicate)
                ):
                    window.add(tick, collected.features, confirmed)
        if self.federated is not None:
            device_host, fl_service = self.federated
            role = device_host.federated.get(fl_service)
            if role is not None:
                for agent_id in role.data:
                    role.data[agent_id] = self.windows[agent_id].data(self.since_tick)
        body = {
            "schema": CASES_SCHEMA,
            "run_id": self.topics.run_id,
            "host": self.host_id,
            "tick": tick,
            "cases": batch,
        }
        topic = self.topics.request(self.service, self.host_id)
        signed = sign_document(body, topic, lambda t, d: self.credentials.sign(self.host_id, t, d))
        self.bus.publish(topic, encode_json(signed), qos=1)
