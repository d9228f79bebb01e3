"""The recipes in recipes/ (Telegraf, Node-RED, Grafana) fed with real messages of a recorded run."""

from __future__ import annotations

import json
import re
import shutil
import subprocess
import tomllib
from pathlib import Path
from typing import Any

import pytest
import yaml
from stream_recording import Recording

from broker.topics import topic_matches
from twin.schemas import load_schema
from twin.telemetry import classify_topic, parse_message

pytestmark = pytest.mark.broker

RECIPES = Path(__file__).parents[2] / "recipes"
NODE_HARNESS = Path(__file__).with_name("node_red_function.js")
MEASUREMENT_TYPES = {
    "twin_kpi": "kpi",
    "twin_status": "status",
    "twin_telemetry": "telemetry",
    "twin_event": "event",
}


def _string_properties(schema: dict[str, Any]) -> set[str]:
    """Properties a document may carry as a string (``const`` and ``enum`` of strings included)."""
    names = set()
    for name, spec in schema["properties"].items():
        types = spec.get("type", [])
        if (
            "string" in types
            or isinstance(spec.get("const"), str)
            or any(isinstance(v, str) for v in spec.get("enum", []))
        ):
            names.add(name)
    return names


def _telegraf_json_metric(doc: dict[str, Any], plugin: dict[str, Any]) -> dict[str, dict[str, Any]]:
    """What Telegraf's ``json`` parser makes of a flat document: tags, and numbers/bools/named strings."""
    tags = {k: str(v) for k, v in doc.items() if k in plugin.get("tag_keys", []) and v is not None}
    fields: dict[str, Any] = {}
    for key, value in doc.items():
        if key in tags or value is None:
            continue
        if isinstance(value, bool | int | float):
            fields[key] = float(value) if not isinstance(value, bool) else value
        elif isinstance(value, str) and key in plugin.get("json_string_fields", []):
            fields[key] = value
    return {"tags": tags, "fields": fields}


def _documents(recording: Recording, topic_filter: str) -> list[tuple[str, dict[str, Any]]]:
    """(message type, document) of each recorded message on ``topic_filter``."""
    out = []
    for record in recording.live:
        if topic_matches(topic_filter, record["topic"]):
            message = parse_message(record["topic"], record.get("payload", "").encode())
            assert message is not None, f"{topic_filter} matches {record['topic']}, not a telemetry topic"
            out.append((message.message_type, message.document))
    return out


def test_telegraf_mqtt_consumers_map_every_message(embedded_recording: Recording) -> None:
    """Each Telegraf mqtt_consumer gets one message type; its tags exist; no string of the schema is lost."""
    # Prepare
    config = tomllib.loads((RECIPES / "telegraf.conf").read_text())
    consumers = config["inputs"]["mqtt_consumer"]
    # Execute
    seen = {}
    for plugin in consumers:
        message_type = MEASUREMENT_TYPES[plugin["name_override"]]
        schema = load_schema(message_type)
        docs = [d for topic in plugin["topics"] for d in _documents(embedded_recording, topic)]
        metrics = [_telegraf_json_metric(doc, plugin) for _, doc in docs]
        seen[message_type] = len(docs)
        # Assert
        assert plugin["data_format"] == "json" and plugin["servers"] == ["tcp://127.0.0.1:1883"]
        assert {t for t, _ in docs} == {message_type}
        named = set(plugin.get("tag_keys", [])) | set(plugin.get("json_string_fields", []))
        assert named <= set(schema["properties"]), named - set(schema["properties"])
        assert _string_properties(schema) - named <= {"schema", "auth"}  # a signature is no measurement
        required_numbers = {k for k in schema["required"] if k not in _string_properties(schema)}
        for metric, (_, doc) in zip(metrics, docs, strict=True):
            assert {"run_id", "scenario"} <= set(metric["tags"])
            assert required_numbers <= set(metric["fields"])
            assert metric["fields"] or metric["tags"]
            assert all(metric["fields"][k] == doc[k] for k in metric["fields"])
    assert set(seen) == set(MEASUREMENT_TYPES.values()) and all(seen.values())


def _run_function(flow_path: Path, node_id: str, docs: list[tuple[str, dict[str, Any]]], tmp: Path) -> Any:
    messages = tmp / f"{node_id}.jsonl"
    messages.write_text("".join(json.dumps({"topic": t, "payload": d}) + "\n" for t, d in docs))
    proc = subprocess.run(
        ["node", str(NODE_HARNESS), str(flow_path), node_id, str(messages)],
        capture_output=True,
        text=True,
        timeout=30,
        check=True,
    )
    return json.loads(proc.stdout)


@pytest.mark.skipif(shutil.which("node") is None, reason="Node.js is not installed")
def test_node_red_flow_functions_on_recorded_messages(embedded_recording: Recording, tmp_path: Path) -> None:
    """The Node-RED flow subscribes to the contract's topics; its functions turn real messages into output."""
    # Prepare
    flow_path = RECIPES / "node-red-flow.json"
    flow = json.loads(flow_path.read_text())
    by_id = {n["id"]: n for n in flow}
    inputs = [n for n in flow if n["type"] == "mqtt in"]
    recorded = {}
    for node in inputs:
        docs = [
            (r["topic"], parse_message(r["topic"], r["payload"].encode()).document)
            for r in embedded_recording.live
            if topic_matches(node["topic"], r["topic"])
        ]
        recorded[node["wires"][0][0]] = docs
    # Execute
    results = {fn: _run_function(flow_path, fn, docs, tmp_path) for fn, docs in recorded.items()}
    # Assert
    assert all(n["datatype"] == "json" and by_id[n["broker"]]["type"] == "mqtt-broker" for n in inputs)
    assert {classify_topic(t)[0] for docs in recorded.values() for t, _ in docs} == {
        "kpi",
        "status",
        "telemetry",
        "event",
    }
    kpis = [d for _, d in recorded["twin_kpi_series"]]
    series = re.search(r"const series = \[(.*?)\]", by_id["twin_kpi_series"]["func"]).group(1)
    names = re.findall(r'"(\w+)"', series)
    assert set(names) <= set(load_schema("kpi")["properties"])
    assert [[m["payload"] for m in out[0]] for out in results["twin_kpi_series"]["outputs"]] == [
        [k[n] for n in names] for k in kpis
    ]
    assert results["twin_status_text"]["outputs"][-1]["payload"] == "finished"
    assert results["twin_status_text"]["status"]["fill"] == "green"
    states = [out for out in results["twin_device_states"]["outputs"] if out][-1]["payload"]
    assert sum(states.values()) == embedded_recording.of_type("meta")[0]["devices"]
    events = results["twin_event_line"]["outputs"]
    assert len(events) == len(embedded_recording.of_type("event")) and all(
        " s hh-" in e["payload"] for e in events
    )
    assert not any(r["warnings"] for r in results.values())


def _grafana_frame_fields(doc: dict[str, Any]) -> dict[str, str]:
    """Fields the Grafana MQTT data source makes of a JSON object: one per top-level key (framer.go)."""
    kinds = {str: "string", bool: "bool", int: "number", float: "number"}
    fields = {"Time": "time"}
    fields.update({k: kinds.get(type(v), "json") for k, v in doc.items() if v is not None})
    return fields


def test_grafana_datasource_and_dashboard_fit_the_stream(embedded_recording: Recording) -> None:
    """The provisioned MQTT data source and the dashboard's topics and fields match real messages."""
    # Prepare
    provisioning = yaml.safe_load((RECIPES / "grafana-mqtt-datasource.yaml").read_text())
    dashboard = json.loads((RECIPES / "grafana-dashboard.json").read_text())
    source = provisioning["datasources"][0]
    plugin_options = {"uri", "username", "clientID", "tlsAuth", "tlsAuthWithCACert", "tlsSkipVerify"}
    # Execute
    checked = 0
    for panel in dashboard["panels"]:
        topic = panel["targets"][0]["topic"].replace("${run_id}", embedded_recording.run_id)
        topic = topic.replace("${device_kind}", "home-health")
        docs = [d for _, d in _documents(embedded_recording, topic)]
        wanted = set(panel["transformations"][0]["options"]["include"]["names"])
        for doc in docs:
            fields = _grafana_frame_fields(doc)
            # Assert
            assert wanted <= set(fields), (panel["title"], wanted - set(fields))
            if panel["type"] == "timeseries":
                assert {fields[w] for w in wanted - {"Time"}} == {"number"}, panel["title"]
            checked += 1
        assert docs, panel["title"]
    assert source["type"] == "grafana-mqtt-datasource" and set(source["jsonData"]) <= plugin_options
    assert source["jsonData"]["uri"] == "tcp://127.0.0.1:1883"
    assert all(p["datasource"]["uid"] == source["uid"] for p in dashboard["panels"])
    assert [v["name"] for v in dashboard["templating"]["list"]] == ["run_id", "device_kind"]
    assert checked > 10
