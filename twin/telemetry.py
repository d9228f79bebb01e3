"""The telemetry contract: publish a run's meta and status (retained), KPIs, agent telemetry and events.

Every payload is flat JSON carrying ``schema``, ``run_id``, ``scenario`` and, where it applies,
``agent_id``, ``step`` and ``sim_time_s`` (ARCHITECTURE.md, MQTT contract). The JSON Schema of each
message type is in :mod:`twin.schemas`; ``docs/telemetry.md`` documents the whole contract.

=========  ===========================================  ===  ========
type       topic (under ``twin/v1/{run_id}/``)          QoS  retained
=========  ===========================================  ===  ========
meta       ``meta``                                     1    yes
status     ``status`` (last will: ``aborted``)          1    yes
kpi        ``kpi``                                      1    no
telemetry  ``agents/{kind}/{agent_id}/telemetry``       0    no
event      ``agents/{kind}/{agent_id}/events``          1    no
=========  ===========================================  ===  ========
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from broker.bus import Bus
from broker.json_codec import decode_json, encode_json
from broker.topics import PREFIX, Topics
from twin.errors import PayloadError, TwinError
from twin.schemas import SCHEMA_IDS

SCHEMAS = SCHEMA_IDS
"""Message type → ``schema`` value of its payloads."""

QOS = {"meta": 1, "status": 1, "kpi": 1, "telemetry": 0, "event": 1}
"""MQTT QoS each message type is published with."""

RETAINED = frozenset({"meta", "status"})
"""Message types the broker keeps for subscribers that join later."""

FINAL_STATUSES = frozenset({"finished", "stopped", "aborted"})
"""Statuses after which a run publishes nothing more."""

MAX_MESSAGE_BYTES = 1 << 20
"""Largest telemetry payload a subscriber accepts (the meta with its config is a few kB)."""

Sink = Callable[[str, Mapping[str, Any]], None]
"""Something told of every published document: ``sink(message_type, document)``."""


def json_safe(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with every non-finite float (NaN, ±inf) replaced by ``None`` (JSON ``null``)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}


def status_document(run_id: str, scenario: str, status: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A status document; fields given as ``None`` are left out (absent rather than null)."""
    given = {k: v for k, v in fields.items() if v is not None}
    return json_safe(
        {"schema": SCHEMAS["status"], "run_id": run_id, "scenario": scenario, "status": status, **given}
    )


def status_payload(run_id: str, scenario: str, status: str, **fields: Any) -> bytes:
    """A status document as bytes (also used as the MQTT last will with ``status='aborted'``)."""
    return encode_json(status_document(run_id, scenario, status, fields))


class TelemetryPublisher:
    """Publishes one run's telemetry on its topic tree and hands each document to its sinks.

    Attributes:
        events: every event document published, in order (written to ``events.parquet``).
        sinks: callables told of every document (e.g. the Prometheus exporter).
    """

    def __init__(self, bus: Bus, topics: Topics, scenario: str) -> None:
        self.bus = bus
        self.topics = topics
        self.scenario = scenario
        self.run_id = topics.run_id
        self.events: list[dict[str, Any]] = []
        self.sinks: list[Sink] = []

    def _base(self, message_type: str) -> dict[str, Any]:
        return {"schema": SCHEMAS[message_type], "run_id": self.run_id, "scenario": self.scenario}

    def _publish(self, message_type: str, topic: str, document: dict[str, Any]) -> None:
        payload = encode_json(document)
        for sink in self.sinks:
            sink(message_type, document)
        self.bus.publish(topic, payload, qos=QOS[message_type], retain=message_type in RETAINED)

    def meta(self, fields: Mapping[str, Any]) -> None:
        """Retained run description (config, seed, agents)."""
        document = json_safe({**self._base("meta"), **fields})
        if isinstance(document.get("config"), Mapping):
            document["config"] = json_safe(document["config"])
        self._publish("meta", self.topics.meta, document)

    def status(self, status: str, **fields: Any) -> None:
        """Retained run status: ``running``, then ``finished``, ``stopped`` or ``aborted``."""
        document = status_document(self.run_id, self.scenario, status, fields)
        self._publish("status", self.topics.status, document)

    def finish(self, status: str, *, timeout_s: float = 5.0, **fields: Any) -> bool:
        """Publish the final status and wait until the broker hands it back; returns whether it did.

        A broker passes on one client's messages in order, so getting the final status back means
        everything the run published before it is on its way to subscribers. Some brokers (amqtt,
        the embedded one) drop what they have not passed on yet when the publisher disconnects.
        """
        document = status_document(self.run_id, self.scenario, status, fields)
        try:
            self.bus.subscribe(self.topics.status)
        except TwinError:
            self._publish("status", self.topics.status, document)
            return False
        self._publish("status", self.topics.status, document)
        payload = encode_json(document)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if any(
                m.topic == self.topics.status and m.payload == payload for m in self.bus.poll(min(left, 0.1))
            ):
                return True
        return False

    def kpi(self, row: Mapping[str, Any]) -> None:
        """One run-level KPI record (the same row written to the Parquet output)."""
        self._publish("kpi", self.topics.kpi, json_safe({**self._base("kpi"), **row}))

    def agent(
        self, kind: str, agent_id: str, step: int, sim_time_s: float, fields: Mapping[str, Any]
    ) -> None:
        """Per-agent telemetry sample."""
        doc = {
            **self._base("telemetry"),
            "kind": kind,
            "agent_id": agent_id,
            "step": step,
            "sim_time_s": sim_time_s,
            **fields,
        }
        self._publish("telemetry", self.topics.telemetry(kind, agent_id), json_safe(doc))

    def event(
        self, kind: str, agent_id: str, step: int, sim_time_s: float, event: str, **fields: Any
    ) -> None:
        """A discrete event (offline, straggler, round closed, escalation …)."""
        doc = json_safe(
            {
                **self._base("event"),
                "kind": kind,
                "agent_id": agent_id,
                "step": step,
                "sim_time_s": sim_time_s,
                "event": event,
                **fields,
            }
        )
        self.events.append(doc)
        self._publish("event", self.topics.events(kind, agent_id), doc)


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    """A received telemetry message: its type, where it came from and its document."""

    message_type: str
    run_id: str
    document: dict[str, Any]
    kind: str | None = None
    agent_id: str | None = None


def subscription_filters(run_id: str = "+") -> list[str]:
    """MQTT filters for the telemetry of one run (``+``: of every run), model traffic left out."""
    root = f"{PREFIX}/{run_id}"
    return [
        f"{root}/meta",
        f"{root}/status",
        f"{root}/kpi",
        f"{root}/agents/+/+/telemetry",
        f"{root}/agents/+/+/events",
    ]


def classify_topic(topic: str) -> tuple[str, str, str | None, str | None] | None:
    """``(message_type, run_id, kind, agent_id)`` of a telemetry topic; ``None`` for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        return None
    run_id, rest = parts[2], parts[3:]
    if len(rest) == 1 and rest[0] in ("meta", "status", "kpi"):
        return rest[0], run_id, None, None
    if len(rest) == 4 and rest[0] == "agents" and rest[3] in ("telemetry", "events"):
        return ("telemetry" if rest[3] == "telemetry" else "event"), run_id, rest[1], rest[2]
    return None


def parse_message(topic: str, payload: bytes) -> TelemetryMessage | None:
    """Decode a message of the telemetry contract; ``None`` for other topics and empty payloads.

    An empty payload is how a retained message is deleted, so it carries no document.

    Raises:
        PayloadError: the payload is not a JSON object, is too large, or names another schema.
    """
    where = classify_topic(topic)
    if where is None or not payload:
        return None
    message_type, run_id, kind, agent_id = where
    document = decode_json(payload, max_bytes=MAX_MESSAGE_BYTES)
    if document.get("schema") != SCHEMAS[message_type]:
        raise PayloadError(
            "malformed", f"{topic}: schema {document.get('schema')!r}, expected {SCHEMAS[message_type]!r}"
        )
    return TelemetryMessage(message_type, run_id, document, kind, agent_id)
