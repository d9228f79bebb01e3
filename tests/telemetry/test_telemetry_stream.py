"""A run's live stream, recorded by separate subscriber processes on the embedded broker and Mosquitto."""

from __future__ import annotations

import json
import math
import uuid
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest
from stream_recording import (
    ROUNDS,
    TELEMETRY_INTERVAL_S,
    Recording,
    clear_retained,
    read_jsonl,
    start_recorder,
    wait_recorder,
)

from broker.mqtt_bus import MqttBus
from broker.topics import Topics, topic_matches
from broker.url import parse_broker_url
from twin.outputs import EVENTS_FILE, KPI_FILE
from twin.schemas import load_schema
from twin.telemetry import QOS, RETAINED, TelemetryPublisher, classify_topic, parse_message, status_payload

pytestmark = pytest.mark.broker

ENVELOPE = ("schema", "run_id", "scenario")


def _same(a: Any, b: Any) -> bool:
    """Equal, with NaN (Parquet) equal to None (JSON null) and to NaN."""
    missing_a = a is None or (isinstance(a, float) and math.isnan(a))
    missing_b = b is None or (isinstance(b, float) and math.isnan(b))
    return (missing_a and missing_b) or a == b


def _rows_equal(streamed: list[dict[str, Any]], table: pd.DataFrame, *, same_keys: bool = True) -> None:
    """Streamed documents equal the table's rows, in order (``same_keys``: no key more or less)."""
    rows = table.to_dict("records")
    assert len(streamed) == len(rows), f"{len(streamed)} streamed vs {len(rows)} rows"
    for doc, row in zip(streamed, rows, strict=True):
        if same_keys:
            assert set(doc) == set(row), set(doc) ^ set(row)
        different = {
            k: (doc.get(k), row.get(k)) for k in set(doc) | set(row) if not _same(doc.get(k), row.get(k))
        }
        assert not different, different


def test_every_message_validates_against_its_schema(recording: Recording) -> None:
    """Every telemetry message both recorders got validates against its message type's JSON Schema."""
    # Prepare
    validators = {t: jsonschema.Draft202012Validator(load_schema(t)) for t in QOS}
    sources = [
        recording.live,
        recording.retained,
        *([recording.mosquitto_sub] if recording.mosquitto_sub else []),
    ]
    # Execute
    checked = 0
    errors = []
    for records in sources:
        for record in records:
            message = parse_message(record["topic"], record.get("payload", "").encode())
            if message is None:
                continue
            errors += [
                f"{record['topic']}: {e.message}"
                for e in validators[message.message_type].iter_errors(message.document)
            ]
            checked += 1
    # Assert
    assert not errors, errors[:5]
    assert checked > 100


def test_topics_and_payloads_agree(recording: Recording) -> None:
    """Run id, kind and agent id in each topic are those of its payload; only documented topics occur."""
    # Prepare
    model_traffic = [f"twin/v1/{recording.run_id}/ml/#", f"twin/v1/{recording.run_id}/svc/#"]
    # Execute
    outside = [
        r["topic"]
        for r in recording.live
        if classify_topic(r["topic"]) is None and not any(topic_matches(f, r["topic"]) for f in model_traffic)
    ]
    mismatched = []
    for record in recording.live:
        message = parse_message(record["topic"], record.get("payload", "").encode())
        if message is not None:
            doc = message.document
            if (doc["run_id"], doc.get("kind"), doc.get("agent_id")) != (
                recording.run_id,
                message.kind,
                message.agent_id,
            ):
                mismatched.append(record["topic"])
    # Assert
    assert not outside, outside[:5]
    assert not mismatched, mismatched[:5]


def test_kpi_stream_equals_parquet_rows(recording: Recording) -> None:
    """The KPI records streamed are exactly kpi.parquet's rows: same order, none missing or duplicated."""
    # Prepare
    table = pd.read_parquet(recording.result.run_dir / KPI_FILE)
    # Execute
    streams = [recording.of_type("kpi")]
    if recording.mosquitto_sub is not None:
        streams.append(recording.of_type("kpi", recording.mosquitto_sub))
    # Assert
    assert len(table) == ROUNDS
    for streamed in streams:
        _rows_equal([{k: v for k, v in d.items() if k not in ENVELOPE} for d in streamed], table)
        assert [d["round"] for d in streamed] == list(range(1, ROUNDS + 1))


def test_event_stream_equals_events_parquet(recording: Recording) -> None:
    """The events streamed are exactly events.parquet's records."""
    # Prepare
    table = pd.read_parquet(recording.result.run_dir / EVENTS_FILE)
    # Execute
    streamed = recording.of_type("event")
    # Assert
    assert len(streamed) > 0
    _rows_equal(streamed, table, same_keys=False)


def test_qos_and_retain_follow_the_contract(recording: Recording) -> None:
    """Telemetry arrives at QoS 0, the rest at QoS 1; meta and the final status are retained after the run."""
    # Prepare
    delivered: dict[str, set[int]] = {}
    # Execute
    for record in recording.live:
        where = classify_topic(record["topic"])
        if where is not None:
            delivered.setdefault(where[0], set()).add(record["qos"])
    retained = {classify_topic(r["topic"])[0]: r for r in recording.retained if classify_topic(r["topic"])}
    expected = {t: {q} for t, q in QOS.items()}
    if recording.broker_name == "embedded":
        # amqtt forwards at the subscription's QoS instead of min(published, granted) (MQTT 3.1.1 §3.8.4)
        expected["telemetry"] = delivered["telemetry"]
    # Assert
    assert delivered == expected
    assert set(retained) == RETAINED and all(r["retain"] for r in retained.values())
    final = parse_message(retained["status"]["topic"], retained["status"]["payload"].encode())
    assert final is not None
    assert final.document["status"] == "finished" and final.document["rounds_completed"] == ROUNDS


def test_status_goes_running_then_finished_and_nothing_after(recording: Recording) -> None:
    """The status stream is meta, running … finished; no last-will 'aborted' follows a clean end."""
    # Prepare
    run_topics = [r["topic"].rsplit("/", 1)[-1] for r in recording.live if r["topic"].count("/") == 3]
    # Execute
    statuses = [d["status"] for d in recording.of_type("status")]
    # Assert
    assert statuses == ["running", "finished"]
    assert run_topics[:2] == ["meta", "status"]
    assert run_topics[-1] == "status"


def test_telemetry_comes_at_the_configured_rate(recording: Recording) -> None:
    """Every agent reports once per bus.telemetry_interval_s of simulated time, and the meta says the rate."""
    # Prepare
    meta = recording.of_type("meta")[0]
    samples = recording.of_type("telemetry")
    agents = meta["devices"] + meta["base_stations"] + 1
    # Execute
    times = sorted({d["sim_time_s"] for d in samples})
    per_time = {t: len({d["agent_id"] for d in samples if d["sim_time_s"] == t}) for t in times}
    # Assert
    assert meta["config"]["bus.telemetry_interval_s"] == TELEMETRY_INTERVAL_S
    assert len(times) >= 2
    assert all(b - a == TELEMETRY_INTERVAL_S for a, b in zip(times, times[1:], strict=False))
    assert set(per_time.values()) == {agents}


def test_a_burst_then_the_final_status_all_arrive_on_the_embedded_broker(
    twin_broker_url: str, tmp_path: Path
) -> None:
    """After a burst, finish() holds the run until the broker passed everything on (amqtt drops the rest)."""
    # Prepare
    run_id = f"burst-test-{uuid.uuid4().hex[:8]}"
    recorder = start_recorder(
        twin_broker_url, f"twin/v1/{run_id}/#", tmp_path / "burst.jsonl", "--until-final", "0.5"
    )
    bus = MqttBus(parse_broker_url(twin_broker_url))
    publisher = TelemetryPublisher(bus, Topics(run_id), "burst")
    # Execute
    for step in range(600):
        publisher.agent("drone", f"d-{step % 50:02d}", step, float(step), {"state": "idle"})
        if step % 30 == 0:
            publisher.kpi({"round": step // 30 + 1, "sim_time_s": float(step)})
    publisher.finish("finished", rounds_completed=20, sim_time_s=600.0)
    bus.close()
    code = wait_recorder(recorder)
    clear_retained(twin_broker_url, run_id, tmp_path / "retained.jsonl")
    # Assert
    records = [r for r in read_jsonl(tmp_path / "burst.jsonl") if r["topic"].endswith(("/kpi", "/status"))]
    assert code == 0
    assert [json.loads(r["payload"]).get("round") for r in records][:-1] == list(range(1, 21))
    assert json.loads(records[-1]["payload"])["status"] == "finished"


def test_a_clean_close_sends_everything_and_no_last_will(mosquitto_url: str, tmp_path: Path) -> None:
    """Closing the bus right after a burst of QoS-1 messages delivers them all; the will stays unused."""
    # Prepare
    run_id = f"close-test-{uuid.uuid4().hex[:8]}"
    topics = Topics(run_id)
    recorder = start_recorder(
        mosquitto_url, f"twin/v1/{run_id}/#", tmp_path / "close.jsonl", "--until-final", "1.0"
    )
    bus = MqttBus(
        parse_broker_url(mosquitto_url), will=(topics.status, status_payload(run_id, "burst", "aborted"))
    )
    publisher = TelemetryPublisher(bus, topics, "burst")
    # Execute
    for index in range(500):
        publisher.kpi({"round": index + 1, "sim_time_s": float(index)})
    publisher.status("finished")
    bus.close()
    code = wait_recorder(recorder)
    retained = clear_retained(mosquitto_url, run_id, tmp_path / "retained.jsonl")
    # Assert
    records = read_jsonl(tmp_path / "close.jsonl")
    assert code == 0
    assert [json.loads(r["payload"]).get("round") for r in records[:-1]] == list(range(1, 501))
    assert [json.loads(r["payload"])["status"] for r in records if r["topic"] == topics.status] == [
        "finished"
    ]
    assert [json.loads(r["payload"])["status"] for r in retained] == ["finished"]
