"""The optional Prometheus endpoint: values from the telemetry, bounded labels, lifecycle with the run."""

from __future__ import annotations

import socket
import subprocess
import sys
import urllib.request
from collections.abc import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from stream_recording import Recording

from twin.errors import ConfigError
from twin.metrics import MetricsExporter, kpi_metric_name
from twin.runner import RunOptions, RunSession
from twin.telemetry import parse_message

ALLOWED_LABELS = {"scenario", "run_id", "kind", "state", "status", "event"}


def _scrape(port: int) -> dict[str, list[Sample]]:
    """Samples by metric name, read from ``/metrics`` with prometheus_client's own parser."""
    with urllib.request.urlopen(f"http://127.0.0.1:{port}/metrics", timeout=10) as response:
        text = response.read().decode()
    samples: dict[str, list[Sample]] = {}
    for family in text_string_to_metric_families(text):
        for sample in family.samples:
            samples.setdefault(sample.name, []).append(sample)
    return samples


@pytest.fixture
def exporter() -> Iterator[MetricsExporter]:
    """An exporter serving on a free port."""
    metrics = MetricsExporter()
    metrics.serve(0, addr="127.0.0.1")
    yield metrics
    metrics.close()


@pytest.mark.broker
def test_metrics_from_a_recorded_stream(embedded_recording: Recording, exporter: MetricsExporter) -> None:
    """Fed a run's stream, the endpoint shows its last KPIs, final status, agents by state and events."""
    # Prepare
    meta = embedded_recording.of_type("meta")[0]
    last_kpi = embedded_recording.of_type("kpi")[-1]
    # Execute
    for record in embedded_recording.live:
        message = parse_message(record["topic"], record.get("payload", "").encode())
        if message is not None:
            exporter.observe(message.message_type, message.document)
    assert exporter.port is not None
    samples = _scrape(exporter.port)
    # Assert
    assert samples[kpi_metric_name("accuracy")][0].value == last_kpi["accuracy"]
    assert samples["twin_rounds_completed"][0].value == last_kpi["round"]
    status = {s.labels["status"]: s.value for s in samples["twin_run_status"]}
    assert status == {"running": 0.0, "finished": 1.0, "stopped": 0.0, "aborted": 0.0}
    agents = samples["twin_agents"]
    assert sum(s.value for s in agents) == meta["devices"] + meta["base_stations"] + 1
    assert sum(s.value for s in agents if s.labels["kind"] == "home-health") == meta["devices"]
    assert sum(s.value for s in samples["twin_events_total"]) == len(embedded_recording.of_type("event"))
    assert sum(s.value for s in samples["twin_telemetry_samples_total"]) == len(
        embedded_recording.of_type("telemetry")
    )


@pytest.mark.broker
def test_labels_are_bounded(embedded_recording: Recording, exporter: MetricsExporter) -> None:
    """No metric has a label outside scenario/run_id/kind/state/status/event, nor a device id as a value."""
    # Prepare
    telemetry = embedded_recording.of_type("telemetry")
    device_ids = {d["agent_id"] for d in telemetry} - {d["kind"] for d in telemetry}
    for record in embedded_recording.live:
        message = parse_message(record["topic"], record.get("payload", "").encode())
        if message is not None:
            exporter.observe(message.message_type, message.document)
    # Execute
    assert exporter.port is not None
    samples = [s for family in _scrape(exporter.port).values() for s in family if s.name.startswith("twin_")]
    # Assert
    assert {name for s in samples for name in s.labels} <= ALLOWED_LABELS
    assert not {value for s in samples for value in s.labels.values()} & device_ids
    assert len(samples) < 80


def test_run_serves_metrics_while_it_runs_and_stops_after() -> None:
    """A run with a metrics port serves its latest KPIs during the run and releases the port at the end."""
    # Prepare
    session = RunSession(RunOptions(scenario="home-health", rounds=1, broker="local", metrics_port=0))
    session.open()
    assert session.metrics is not None and session.metrics.port is not None
    port = session.metrics.port
    # Execute
    while session.step() and not (session.model and session.model.kpi_rows):
        pass
    during = _scrape(port)
    session.close()
    # Assert
    assert session.model is not None
    assert during[kpi_metric_name("accuracy")][0].value == session.model.kpi_rows[-1]["accuracy"]
    assert {s.labels["status"]: s.value for s in during["twin_run_status"]}["running"] == 1.0
    with pytest.raises(OSError):
        socket.create_connection(("127.0.0.1", port), timeout=1).close()


def test_a_taken_port_is_a_config_error() -> None:
    """A metrics port already in use is a ConfigError naming it (exit 2 on the CLI, one line)."""
    # Prepare
    taken = socket.socket()
    taken.bind(("0.0.0.0", 0))
    taken.listen()
    port = taken.getsockname()[1]
    # Execute
    try:
        with pytest.raises(ConfigError, match=f"--metrics-port {port}"):
            RunSession(RunOptions(scenario="home-health", rounds=1, broker="local", metrics_port=port)).open()
        proc = subprocess.run(
            [
                sys.executable,
                "-m",
                "twin",
                "run",
                "home-health",
                "--broker",
                "local",
                "--metrics-port",
                str(port),
            ],
            capture_output=True,
            text=True,
            timeout=120,
        )
    finally:
        taken.close()
    # Assert
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and str(port) in lines[0]


def test_hostile_contents_cannot_create_series() -> None:
    """9 000 documents with made-up runs, kinds, events, states and KPI keys: labels stay bounded."""
    from prometheus_client import generate_latest

    exporter = MetricsExporter()
    run = {"scenario": "home-health", "run_id": "r1"}
    exporter.observe("status", {**run, "status": "running"})
    for i in range(3000):
        exporter.observe("telemetry", {**run, "kind": f"kind-{i}", "agent_id": f"a{i}", "state": f"s{i}"})
        exporter.observe("event", {**run, "kind": f"k{i}", "agent_id": f"a{i}", "event": f"e{i}"})
        exporter.observe("kpi", {**run, "round": 1, f"made_up_{i}": 1.0, "accuracy": 0.5})
        exporter.observe("kpi", {"scenario": "x", "run_id": f"other-{i}", "accuracy": 0.1})
    text = generate_latest(exporter.registry).decode()
    series = [line for line in text.splitlines() if line.startswith("twin_")]
    assert len(series) < 250
    assert "made_up" not in text and "other-" not in text and 'state="s1"' not in text
    assert exporter.ignored == 3000
