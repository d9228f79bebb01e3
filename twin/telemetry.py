"""Telemetry publisher: run meta and status (retained), run-level KPIs, per-agent telemetry and events.

Every payload is flat JSON carrying ``schema``, ``run_id``, ``scenario`` and, where it applies,
``agent_id``, ``step`` and ``sim_time_s`` (ARCHITECTURE.md, MQTT contract).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from broker.bus import Bus
from broker.codec import encode_json
from broker.topics import Topics

SCHEMAS = {
    "meta": "twin.meta.v1",
    "status": "twin.status.v1",
    "kpi": "twin.kpi.v1",
    "telemetry": "twin.telemetry.v1",
    "event": "twin.event.v1",
}


def status_payload(run_id: str, scenario: str, status: str, **fields: Any) -> bytes:
    """A status document (also used as the MQTT last will with ``status='aborted'``)."""
    return encode_json({"schema": SCHEMAS["status"], "run_id": run_id, "scenario": scenario, "status": status,
                        **fields})


class TelemetryPublisher:
    """Publishes one run's telemetry on its topic tree."""

    def __init__(self, bus: Bus, topics: Topics, scenario: str) -> None:
        self.bus = bus
        self.topics = topics
        self.scenario = scenario
        self.run_id = topics.run_id
        self.events: list[dict[str, Any]] = []

    def _base(self, schema: str) -> dict[str, Any]:
        return {"schema": SCHEMAS[schema], "run_id": self.run_id, "scenario": self.scenario}

    def meta(self, fields: Mapping[str, Any]) -> None:
        """Retained run description (config, seed, agents)."""
        self.bus.publish(self.topics.meta, encode_json({**self._base("meta"), **fields}), qos=1, retain=True)

    def status(self, status: str, **fields: Any) -> None:
        """Retained run status: ``running``, ``finished`` or ``aborted``."""
        self.bus.publish(self.topics.status, status_payload(self.run_id, self.scenario, status, **fields),
                         qos=1, retain=True)

    def kpi(self, row: Mapping[str, Any]) -> None:
        """One run-level KPI record (the same row written to the Parquet output)."""
        self.bus.publish(self.topics.kpi, encode_json({**self._base("kpi"), **row}), qos=1)

    def agent(self, kind: str, agent_id: str, step: int, sim_time_s: float, fields: Mapping[str, Any]) -> None:
        """Per-agent telemetry sample."""
        doc = {**self._base("telemetry"), "kind": kind, "agent_id": agent_id, "step": step,
               "sim_time_s": sim_time_s, **fields}
        self.bus.publish(self.topics.telemetry(kind, agent_id), encode_json(doc), qos=0)

    def event(self, kind: str, agent_id: str, step: int, sim_time_s: float, event: str, **fields: Any) -> None:
        """A discrete event (offline, straggler, round closed, escalation …)."""
        doc = {**self._base("event"), "kind": kind, "agent_id": agent_id, "step": step, "sim_time_s": sim_time_s,
               "event": event, **fields}
        self.events.append(doc)
        self.bus.publish(self.topics.events(kind, agent_id), encode_json(doc), qos=1)
