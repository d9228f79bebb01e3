"""`twin watch`: a live view of a run from its MQTT stream alone."""

from __future__ import annotations

import subprocess
import sys
import textwrap
import uuid
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from stream_recording import ROUNDS, Recording, clear_retained

from broker.bus import LocalBus
from broker.topics import Topics
from twin.errors import TwinError
from twin.metrics import MetricsExporter
from twin.runner import RunOptions, run_scenario
from twin.telemetry import TelemetryMessage, TelemetryPublisher, parse_message
from twin.watch import RunView, follow, render_view, subscribe_run


def _messages(recording: Recording) -> list[TelemetryMessage]:
    parsed = [parse_message(r["topic"], r.get("payload", "").encode()) for r in recording.live]
    return [m for m in parsed if m is not None]


def _watch(*args: str) -> subprocess.Popen[str]:
    """Start ``twin watch`` and wait until it has subscribed (its first line on stderr)."""
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin", "watch", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stderr is not None
    line = proc.stderr.readline()
    assert line.startswith("watching run "), line + proc.stderr.read()
    return proc


@pytest.mark.broker
def test_view_built_from_the_stream_matches_the_run(embedded_recording: Recording) -> None:
    """Fed a run's stream, the view has its meta, final status, KPI count, every agent and every event."""
    # Prepare
    view = RunView(embedded_recording.run_id)
    meta = embedded_recording.of_type("meta")[0]
    # Execute
    for message in _messages(embedded_recording):
        view.apply(message)
    # Assert
    assert view.final and view.status_name == "finished"
    assert view.meta == meta and view.kpi_records == ROUNDS
    assert view.last_kpi == embedded_recording.of_type("kpi")[-1]
    counts = view.agent_counts()
    assert sum(sum(c.values()) for c in counts.values()) == meta["devices"] + meta["base_stations"] + 1
    assert sum(view.event_counts.values()) == len(embedded_recording.of_type("event"))


def test_view_ignores_other_runs() -> None:
    """Messages of another run leave the view untouched."""
    # Prepare
    view = RunView("run-a")
    other = TelemetryMessage("status", "run-b", {"status": "finished"})
    # Execute
    view.apply(other)
    # Assert
    assert view.status_name == "waiting" and not view.final


@pytest.mark.broker
def test_render_shows_status_kpis_agents_and_events(embedded_recording: Recording) -> None:
    """The console view shows the run, its status, the latest accuracy, agents by state and events."""
    # Prepare
    view = RunView(embedded_recording.run_id)
    for message in _messages(embedded_recording):
        view.apply(message)
    console = Console(record=True, width=120)
    # Execute
    console.print(render_view(view))
    text = console.export_text()
    # Assert
    assert embedded_recording.run_id in text and "finished" in text
    assert f"{view.last_kpi['accuracy']:.4g}" in text
    assert f"round · simulated time          {ROUNDS}/{ROUNDS}" in text
    assert "home-health" in text and "latest events" in text


@pytest.mark.broker
def test_watch_follows_a_live_run_on_mosquitto(mosquitto_url: str, tmp_path: Path) -> None:
    """`twin watch` shows a run live and exits 0 when it finishes; afterwards, from retained messages."""
    # Prepare
    run_id = f"watch-test-{uuid.uuid4().hex[:8]}"
    watcher = _watch(run_id, "--broker", mosquitto_url, "--timeout", "60")
    # Execute
    result = run_scenario(
        RunOptions(
            scenario="home-health", rounds=ROUNDS, broker=mosquitto_url, out_dir=tmp_path, run_id=run_id
        )
    )
    out, err = watcher.communicate(timeout=60)
    late = subprocess.run(
        [sys.executable, "-m", "twin", "watch", run_id, "--broker", mosquitto_url],
        capture_output=True,
        text=True,
        timeout=60,
    )
    clear_retained(mosquitto_url, run_id, tmp_path / "retained.jsonl")
    # Assert
    assert watcher.returncode == 0, err
    assert "finished" in out and f"{ROUNDS} KPI records" in out
    assert f"{result.kpis['accuracy'].iloc[-1]:.4g}" in out
    assert late.returncode == 0 and "finished" in late.stdout and "0 KPI records" in late.stdout


@pytest.mark.broker
def test_watch_reports_a_run_that_died_through_its_last_will(mosquitto_url: str, tmp_path: Path) -> None:
    """A run process that dies without a goodbye shows as 'aborted' (the broker's last will); exit 4."""
    # Prepare
    run_id = f"watch-test-{uuid.uuid4().hex[:8]}"
    dying_run = textwrap.dedent(f"""
        import os
        from broker.connect import open_bus
        from broker.topics import Topics
        from twin.telemetry import TelemetryPublisher, status_payload
        topics = Topics({run_id!r})
        will = (topics.status, status_payload({run_id!r}, "home-health", "aborted"))
        handle = open_bus({mosquitto_url!r}, will=will)
        publisher = TelemetryPublisher(handle.bus, topics, "home-health")
        publisher.status("running")
        publisher.finish("running")
        os._exit(17)
    """)
    watcher = _watch(run_id, "--broker", mosquitto_url, "--timeout", "60")
    # Execute
    died = subprocess.run([sys.executable, "-c", dying_run], capture_output=True, text=True, timeout=60)
    if died.returncode != 17:
        watcher.kill()
    out, err = watcher.communicate(timeout=60)
    clear_retained(mosquitto_url, run_id, tmp_path / "retained.jsonl")
    # Assert
    assert died.returncode == 17, died.stderr
    assert watcher.returncode == 4
    assert "aborted" in out and f"run {run_id} aborted" in err


@pytest.mark.broker
@pytest.mark.parametrize(
    ("broker", "code", "words"),
    [("mqtt://127.0.0.1:1", 3, "unreachable"), ("embedded", 2, "twin broker")],
)
def test_watch_without_a_usable_broker_is_one_line(broker: str, code: int, words: str) -> None:
    """An unreachable broker (exit 3) or 'embedded' (exit 2) is a one-line error, never a traceback."""
    # Prepare
    command = [sys.executable, "-m", "twin", "watch", "some-run", "--broker", broker]
    # Execute
    proc = subprocess.run(command, capture_output=True, text=True, timeout=60)
    # Assert
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == code
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in proc.stderr


def test_follow_counts_bad_payloads_feeds_metrics_and_stops_at_the_final_status() -> None:
    """follow() reads the run's messages until its final status; bad payloads are counted, not fatal."""
    # Prepare
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health")
    publisher.status("running")
    publisher.kpi({"round": 1, "sim_time_s": 3.0, "accuracy": 0.75})
    bus.publish(Topics("run-1").kpi, b"{not json", qos=1)
    publisher.agent("home-health", "hh-0001", 3, 3.0, {"state": "training"})
    publisher.status("finished", rounds_completed=1, sim_time_s=3.0)
    metrics = MetricsExporter()
    view = RunView("run-1")
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05, metrics=metrics)
    # Assert
    assert view.status_name == "finished" and view.kpi_records == 1 and view.rejected == 1
    assert view.agent_counts() == {"home-health": Counter({"training": 1})}
    assert (
        metrics.registry.get_sample_value("twin_kpi_accuracy", {"scenario": "home-health", "run_id": "run-1"})
        == 0.75
    )


def test_follow_gives_up_after_its_timeout() -> None:
    """Without any message of the run, follow() stops after timeout_s with a TwinError naming the run."""
    # Prepare
    bus = LocalBus()
    subscribe_run(bus, "silent-run")
    # Execute, Assert
    with pytest.raises(TwinError, match="no message of run 'silent-run'"):
        follow(bus, RunView("silent-run"), timeout_s=0.3, poll_s=0.05)
