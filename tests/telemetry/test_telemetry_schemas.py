"""The telemetry contract's schemas, its publisher and its parser, without a broker."""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import jsonschema
import pytest

from agents.device import DeviceState
from broker.bus import BusStats, LocalBus, Message
from broker.topics import Topics
from twin.errors import PayloadError
from twin.runner import RunOptions, RunSession
from twin.schemas import SCHEMA_IDS, load_schema
from twin.telemetry import QOS, RETAINED, TelemetryPublisher, classify_topic, parse_message

DOCS = Path(__file__).parents[2] / "docs" / "telemetry.md"


class RecordingBus:
    """A bus that keeps what is published (topic, payload, QoS, retain) and receives nothing."""

    url = "recording://"

    def __init__(self) -> None:
        self.stats = BusStats()
        self.published: list[tuple[str, bytes, int, bool]] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        self.published.append((topic, payload, qos, retain))

    def subscribe(self, topic_filter: str) -> None:
        """Subscriptions are accepted and never deliver."""

    def poll(self, timeout_s: float = 0.0) -> list[Message]:
        return []

    def check(self) -> None:
        """Never gone."""

    def close(self) -> None:
        """Nothing to release."""


def _publish_one_of_each(publisher: TelemetryPublisher) -> None:
    publisher.meta(
        {
            "seed": 1,
            "config": {"fl.rounds": 2, "fl.lr": 0.1},
            "devices": 1,
            "base_stations": 1,
            "broker": "local://",
            "rounds_limit": 2,
        }
    )
    publisher.status("running")
    publisher.kpi(
        {
            "round": 1,
            "sim_time_s": 3.0,
            "accuracy": 0.5,
            "device_upload_s": float("nan"),
            "loss": float("inf"),
        }
    )
    publisher.agent("home-health", "hh-0001", 3, 3.0, {"state": "idle", "sinr_db": 12.5, "x_m": 1.0})
    publisher.event("home-health", "hh-0001", 3, 3.0, "straggler", round=1)
    publisher.status("finished", rounds_completed=1, sim_time_s=3.0)


def test_schema_files_are_valid_and_named_after_their_schema() -> None:
    """Each shipped schema is valid JSON Schema 2020-12, its file named after the ``schema`` it requires."""
    # Prepare
    folder = Path(__file__).parents[2] / "twin" / "schemas"
    # Execute
    schemas = {t: load_schema(t) for t in SCHEMA_IDS}
    # Assert
    assert set(SCHEMA_IDS) == set(QOS)
    for message_type, schema in schemas.items():
        jsonschema.Draft202012Validator.check_schema(schema)
        assert schema["properties"]["schema"]["const"] == SCHEMA_IDS[message_type]
        assert {"schema", "run_id", "scenario"} <= set(schema["required"])
        assert json.loads((folder / f"{SCHEMA_IDS[message_type]}.json").read_text()) == schema
    with pytest.raises(KeyError, match="unknown telemetry message type"):
        load_schema("nope")


def test_device_states_are_all_in_the_telemetry_schema() -> None:
    """Every DeviceState a device can report is allowed by twin.telemetry.v1 (add new ones to the schema)."""
    # Prepare
    allowed = set(load_schema("telemetry")["properties"]["state"]["enum"])
    # Execute
    states = {s.value for s in DeviceState}
    # Assert
    assert states <= allowed, f"add {states - allowed} to twin/schemas/twin.telemetry.v1.json and the docs"


def test_publisher_uses_the_contract_qos_retain_and_schemas() -> None:
    """Each message type goes out with its QoS and retain flag, and every document validates."""
    # Prepare
    bus = RecordingBus()
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health")
    # Execute
    _publish_one_of_each(publisher)
    # Assert
    assert len(bus.published) == 6
    for topic, payload, qos, retain in bus.published:
        message = parse_message(topic, payload)
        assert message is not None
        jsonschema.validate(message.document, load_schema(message.message_type))
        assert (qos, retain) == (QOS[message.message_type], message.message_type in RETAINED)
    assert publisher.events == [
        parse_message(t, p).document for t, p, _, _ in bus.published if "/events" in t
    ]


def test_non_finite_values_are_sent_as_null() -> None:
    """NaN and ±inf (e.g. a median over no device) become JSON null instead of breaking the publish."""
    # Prepare
    bus = RecordingBus()
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health")
    # Execute
    publisher.kpi({"round": 1, "sim_time_s": 3.0, "device_upload_s": math.nan, "loss": -math.inf})
    # Assert
    document = json.loads(bus.published[0][1])
    assert document["device_upload_s"] is None and document["loss"] is None
    jsonschema.validate(document, load_schema("kpi"))


def test_sinks_see_every_document() -> None:
    """A sink (e.g. the Prometheus exporter) is handed each document with its message type."""
    # Prepare
    bus = RecordingBus()
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health")
    seen: list[tuple[str, dict[str, Any]]] = []
    publisher.sinks.append(lambda message_type, doc: seen.append((message_type, dict(doc))))
    # Execute
    _publish_one_of_each(publisher)
    # Assert
    assert [t for t, _ in seen] == ["meta", "status", "kpi", "telemetry", "event", "status"]
    assert [d for _, d in seen] == [json.loads(p) for _, p, _, _ in bus.published]


def test_finish_waits_for_the_broker_to_hand_the_final_status_back() -> None:
    """finish() returns True once its final status comes back, and False when it never does."""
    # Prepare
    local = TelemetryPublisher(LocalBus(), Topics("run-1"), "home-health")
    silent = TelemetryPublisher(RecordingBus(), Topics("run-2"), "home-health")
    local.status("running")
    # Execute
    echoed = local.finish("finished", rounds_completed=0, sim_time_s=0.0)
    lost = silent.finish("finished", timeout_s=0.2)
    # Assert
    assert echoed is True
    assert lost is False and json.loads(silent.bus.published[-1][1])["status"] == "finished"


def test_parser_keeps_to_the_telemetry_topics_and_rejects_bad_payloads() -> None:
    """Model traffic and empty payloads are not telemetry; bad JSON or another schema is a PayloadError."""
    # Prepare
    kpi_topic = Topics("run-1").kpi
    # Execute
    ignored = [
        parse_message(t, b"{}") for t in ("twin/v1/run-1/ml/svc/1/global", "other/kpi", "twin/v1/run-1")
    ]
    # Assert
    assert ignored == [None, None, None]
    assert parse_message(kpi_topic, b"") is None
    assert classify_topic("twin/v1/run-1/agents/gnb/gnb-00/telemetry") == (
        "telemetry",
        "run-1",
        "gnb",
        "gnb-00",
    )
    with pytest.raises(PayloadError):
        parse_message(kpi_topic, b"not json")
    with pytest.raises(PayloadError, match="expected 'twin.kpi.v1'"):
        parse_message(kpi_topic, b'{"schema": "twin.status.v1"}')


def test_docs_document_every_field_and_topic() -> None:
    """docs/telemetry.md names every property of every schema, and every topic of the tree."""
    # Prepare
    text = DOCS.read_text()
    # Execute
    missing = [f"{t}.{p}" for t in SCHEMA_IDS for p in load_schema(t)["properties"] if f"`{p}`" not in text]
    # Assert
    assert not missing, missing
    for topic in (
        "meta",
        "status",
        "kpi",
        "agents/{kind}/{agent_id}/telemetry",
        "agents/{kind}/{agent_id}/events",
    ):
        assert f"twin/v1/{{run_id}}/{topic}" in text


def test_an_aborted_run_says_why_in_its_final_status() -> None:
    """A run closed as aborted publishes status 'aborted' with the error, a valid twin.status.v1 document."""
    # Prepare
    session = RunSession(RunOptions(scenario="home-health", rounds=1, broker="local"))
    model = session.open()
    statuses: list[dict[str, Any]] = []
    model.telemetry.sinks.append(
        lambda message_type, doc: statuses.append(dict(doc)) if message_type == "status" else None
    )
    # Execute
    session.step()
    session.close("aborted", "broker gone")
    # Assert
    assert [(d["status"], d.get("error")) for d in statuses] == [("aborted", "broker gone")]
    jsonschema.validate(statuses[0], load_schema("status"))
