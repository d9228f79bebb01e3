"""`twin watch`: a live view of a run from its MQTT stream alone."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
import time
import uuid
from collections import Counter
from pathlib import Path

import pytest
from rich.console import Console
from stream_recording import ROUNDS, Recording, clear_retained

from broker.bus import LocalBus
from broker.connect import open_bus
from broker.topics import Topics
from twin.errors import TwinError
from twin.metrics import MetricsExporter
from twin.runner import RunOptions, run_scenario
from twin.telemetry import RunSigner, TelemetryMessage, TelemetryPublisher, parse_message
from twin.watch import RunView, follow, render_view, subscribe_run


def _messages(recording: Recording) -> list[TelemetryMessage]:
    parsed = [parse_message(r["topic"], r.get("payload", "").encode()) for r in recording.live]
    return [m for m in parsed if m is not None]


def _meta(publisher: TelemetryPublisher, **fields: object) -> None:
    """Publish a small meta (signed when the publisher has a signer)."""
    publisher.meta(
        {"seed": 0, "config": {}, "devices": 1, "base_stations": 1, "broker": "local://", **fields}
    )


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
    assert view.last_kpi is not None and f"{view.last_kpi['accuracy']:.4g}" in text
    assert f"round · simulated time          {ROUNDS}/{ROUNDS}" in text
    assert "home-health" in text and "latest events" in text


@pytest.mark.broker
def test_watch_follows_a_live_run_on_mosquitto(mosquitto_url: str, tmp_path: Path) -> None:
    """`twin watch` shows a run live and exits 0 when it finishes; afterwards, from retained messages."""
    # Prepare
    run_id = f"watch-test-{uuid.uuid4().hex[:8]}"
    watcher = _watch(run_id, "--broker", mosquitto_url, "--timeout", "60", "--wait", "60")
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
        from twin.telemetry import RunSigner, TelemetryPublisher, status_payload
        topics = Topics({run_id!r})
        signer = RunSigner()
        will = (topics.status, status_payload({run_id!r}, "home-health", "aborted", signer=signer))
        handle = open_bus({mosquitto_url!r}, will=will)
        publisher = TelemetryPublisher(handle.bus, topics, "home-health", signer=signer)
        publisher.meta({{"seed": 0, "config": {{}}, "devices": 0, "base_stations": 0, "broker": "x"}})
        publisher.status("running")
        publisher.finish("running")
        os._exit(17)
    """)
    watcher = _watch(run_id, "--broker", mosquitto_url, "--timeout", "60", "--wait", "60")
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
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health", signer=RunSigner())
    _meta(publisher)
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


def _signed_run(bus: LocalBus, run_id: str = "run-1", scenario: str = "home-health") -> TelemetryPublisher:
    """A run's publisher on ``bus`` with its own key, that has announced itself (meta, running)."""
    publisher = TelemetryPublisher(bus, Topics(run_id), scenario, signer=RunSigner())
    _meta(publisher)
    publisher.status("running")
    return publisher


def test_a_status_without_its_status_key_is_counted_not_fatal() -> None:
    """A retained status lacking `status` is rejected by its schema; the watch goes on to the real end."""
    # Prepare
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = _signed_run(bus)
    broken = {"schema": "twin.status.v1", "run_id": "run-1", "scenario": "home-health"}
    bus.publish(Topics("run-1").status, json.dumps(broken).encode(), retain=True)
    publisher.status("finished", rounds_completed=2, sim_time_s=9.0)
    view = RunView("run-1")
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05)
    # Assert
    assert view.rejected == 1 and view.status_name == "finished"
    assert view.status is not None and view.status["rounds_completed"] == 2


def test_markup_in_the_stream_is_shown_as_text() -> None:
    """Console markup in a scenario or error is shown verbatim; a state outside its enum is rejected."""
    # Prepare
    hostile = "[/][bold red]x[/bold red][link=file:///etc/passwd]y"
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = _signed_run(bus, scenario=hostile)
    publisher.agent("home-health", "hh-1", 1, 1.0, {"state": hostile})
    publisher.status("aborted", error=hostile)
    view = RunView("run-1")
    console = Console(record=True, width=400)
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05, on_update=lambda v: console.print(render_view(v)))
    text = console.export_text()
    # Assert
    assert view.status_name == "aborted"
    assert f"aborted — {hostile}" in text and f"scenario                        {hostile}" in text
    assert view.rejected == 1 and not view.agents


def test_a_spoofed_final_status_does_not_end_the_watch() -> None:
    """An unsigned `finished`, one signed by another key and a meta with another key are ignored."""
    # Prepare
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = _signed_run(bus)
    impostor = TelemetryPublisher(bus, Topics("run-1"), "home-health", signer=RunSigner())
    unsigned = TelemetryPublisher(bus, Topics("run-1"), "home-health")
    unsigned.status("finished", rounds_completed=99)
    impostor.status("finished", rounds_completed=98)
    _meta(impostor)
    publisher.kpi({"round": 1, "sim_time_s": 3.0, "accuracy": 0.5})
    publisher.status("aborted", rounds_completed=1, error="real end")
    view = RunView("run-1")
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05)
    # Assert
    assert view.status == {**(view.status or {}), "status": "aborted", "rounds_completed": 1}
    assert view.unauthenticated == 3 and view.kpi_records == 1
    assert view.key_source == "its first meta (trust on first use)"


def test_a_status_before_the_meta_waits_for_the_key() -> None:
    """A status that comes before any meta is held back, then taken once the signed meta brings the key."""
    # Prepare
    signer = RunSigner()
    publisher = TelemetryPublisher(LocalBus(), Topics("run-1"), "home-health", signer=signer)
    subscribe_run(publisher.bus, "run-1")
    publisher.status("finished", rounds_completed=1)
    _meta(publisher)
    received = [parse_message(m.topic, m.payload) for m in publisher.bus.poll(0.1)]
    view = RunView("run-1")
    # Execute
    accepted = [[a.message_type for a in view.apply(m)] for m in received if m is not None]
    # Assert
    assert accepted == [[], ["meta", "status"]] and view.final


def test_the_run_directory_key_beats_trust_on_first_use(tmp_path: Path) -> None:
    """With runs/<id>/run_key.pub here, a meta and status signed by any other key are refused."""
    # Prepare
    real, impostor = RunSigner(), RunSigner()
    key_file = real.save_public_key(tmp_path / "run-1")
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    fake = TelemetryPublisher(bus, Topics("run-1"), "home-health", signer=impostor)
    _meta(fake)
    fake.status("finished")
    view = RunView("run-1", key_file=key_file)
    # Execute
    for message in bus.poll(0.1):
        parsed = parse_message(message.topic, message.payload)
        assert parsed is not None
        view.apply(parsed)
    # Assert
    assert view.meta is None and view.status is None and view.unauthenticated == 2
    assert view.key_source == str(key_file) and not view.final


def test_a_key_file_that_is_not_a_key_is_one_line(tmp_path: Path) -> None:
    """`twin watch --key` of a file that is not a public key: exit 2, one line, before any connection."""
    # Prepare
    bad = tmp_path / "run_key.pub"
    bad.write_text("not a key\n")
    # Execute
    proc = subprocess.run(
        [sys.executable, "-m", "twin", "watch", "run-1", "--key", str(bad), "--broker", "mqtt://127.0.0.1:1"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    # Assert
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2 and len(lines) == 1 and "--key" in lines[0]


@pytest.mark.broker
def test_watching_an_unknown_run_fails_within_its_wait(mosquitto_url: str) -> None:
    """A run id the broker knows nothing of: one line and exit 2 after --wait seconds, not a hang."""
    # Prepare
    command = [sys.executable, "-m", "twin", "watch", f"no-such-run-{uuid.uuid4().hex[:8]}"]
    # Execute
    started = time.monotonic()
    proc = subprocess.run(
        [*command, "--broker", mosquitto_url, "--wait", "1"], capture_output=True, text=True, timeout=60
    )
    elapsed = time.monotonic() - started
    # Assert
    lines = [line for line in proc.stderr.splitlines() if line.strip() and not line.startswith("watching")]
    assert proc.returncode == 2 and len(lines) == 1 and "no run" in lines[0], proc.stderr
    assert elapsed < 30


@pytest.mark.broker
def test_spoofed_finished_over_mosquitto_keeps_twin_watch_running(mosquitto_url: str, tmp_path: Path) -> None:
    """`twin watch` ignores a retained spoofed `finished` and exits with the run's own final status."""
    # Prepare
    run_id = f"watch-test-{uuid.uuid4().hex[:8]}"
    handle = open_bus(mosquitto_url)
    run = TelemetryPublisher(handle.bus, Topics(run_id), "home-health", signer=RunSigner())
    spoof = TelemetryPublisher(handle.bus, Topics(run_id), "home-health")
    _meta(run)
    run.status("running")
    watcher = _watch(run_id, "--broker", mosquitto_url, "--timeout", "60")
    # Execute
    try:
        spoof.finish("finished", rounds_completed=7)
        time.sleep(1.0)
        still_running = watcher.poll() is None
        run.finish("aborted", error="[bold]the real end[/]")
        out, err = watcher.communicate(timeout=60)
    finally:
        handle.close()
        clear_retained(mosquitto_url, run_id, tmp_path / "retained.jsonl")
    # Assert
    assert still_running
    assert watcher.returncode == 4, err
    assert f"run {run_id} aborted: [bold]the real end[/]" in err and "1 unauthenticated" in out


@pytest.mark.parametrize(
    ("message_type", "change", "valid"),
    [
        ("status", {}, True),
        ("status", {"status": None}, False),
        ("status", {"status": "done"}, False),
        ("status", {"rounds_completed": -1}, False),
        ("status", {"extra": {"nested": 1}}, False),
        ("status", {"run_id": "run 1"}, False),
        ("kpi", {"round": 1, "sim_time_s": 2.0, "accuracy": 0.5}, True),
        ("kpi", {"round": "1", "sim_time_s": 2.0}, False),
        ("kpi", {"round": True, "sim_time_s": 2.0}, False),
        ("event", {"kind": "gnb", "agent_id": "g", "step": 1, "sim_time_s": 1, "event": "Bad Name"}, False),
        ("event", {"kind": "gnb", "agent_id": "g", "step": 1, "sim_time_s": 1, "event": "offline"}, True),
    ],
)
def test_the_schema_check_agrees_with_jsonschema(
    message_type: str, change: dict[str, object], valid: bool
) -> None:
    """The watcher's built-in schema check accepts and refuses what jsonschema does."""
    # Prepare
    import jsonschema

    from twin.schemas import SCHEMA_IDS, load_schema
    from twin.telemetry import schema_error

    document: dict[str, object] = {"schema": SCHEMA_IDS[message_type], "run_id": "run-1", "scenario": "s"}
    if message_type == "status":
        document["status"] = "running"
    document = {k: v for k, v in {**document, **change}.items() if v is not None}
    # Execute
    ours = schema_error(document, load_schema(message_type))
    theirs = jsonschema.Draft202012Validator(load_schema(message_type)).is_valid(document)
    # Assert
    assert (ours is None) == theirs == valid, ours


def _tick(bus: LocalBus, run_id: str, tick: int, service: str = "diagnosis") -> None:
    """A service's tick message (``twin.inference.tick.v1``) on the run's stream."""
    document = {
        "schema": "twin.inference.tick.v1",
        "run_id": run_id,
        "service": service,
        "tick": tick,
        "sim_time_s": float(tick),
        "auth": "ab" * 64,
    }
    bus.publish(Topics(run_id).tick(service), json.dumps(document).encode(), qos=1)


def test_a_run_in_ticks_shows_its_ticks_against_its_limit() -> None:
    """A run whose --rounds sets ticks (disease-diagnosis) shows tick k/N and its training rounds apart."""
    # Prepare: the meta's limit is the value of cascade.ticks; three ticks, one training round
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = TelemetryPublisher(bus, Topics("run-1"), "disease-diagnosis", signer=RunSigner())
    _meta(publisher, rounds_limit=5, config={"cascade.ticks": 5, "fl.rounds": 6})
    publisher.status("running")
    for tick in range(3):
        _tick(bus, "run-1", tick)
    bus.publish(Topics("run-1").tick("diagnosis"), b"{not json", qos=1)
    _tick(bus, "other-run", 4)
    publisher.kpi({"round": 1, "sim_time_s": 3.0, "accuracy": 0.5})
    publisher.status("finished", rounds_completed=1, sim_time_s=3.0)
    view = RunView("run-1")
    console = Console(record=True, width=120)
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05)
    console.print(render_view(view))
    # Assert
    progress = view.progress()
    assert (progress.unit, progress.done, progress.total, progress.rounds) == ("tick", 3, 5, 1)
    assert view.ticks_started == 3 and view.rejected == 1
    assert "tick · round · simulated time   tick 3/5 · round 1 · 3 s" in console.export_text()


def test_a_run_in_rounds_pairs_its_round_with_its_rounds_limit() -> None:
    """A federated run shows round r/R; a tick of one of its services does not change what is counted."""
    # Prepare
    bus = LocalBus()
    subscribe_run(bus, "run-1")
    publisher = TelemetryPublisher(bus, Topics("run-1"), "home-health", signer=RunSigner())
    _meta(publisher, rounds_limit=3, config={"fl.rounds": 3})
    publisher.status("running")
    _tick(bus, "run-1", 0, service="alerts")
    publisher.kpi({"round": 2, "sim_time_s": 6.0, "accuracy": 0.5})
    publisher.status("finished", rounds_completed=2, sim_time_s=6.0)
    view = RunView("run-1")
    console = Console(record=True, width=120)
    # Execute
    follow(bus, view, timeout_s=5, poll_s=0.05)
    console.print(render_view(view))
    # Assert
    assert view.progress().text() == "round 2/3"
    assert "round · simulated time          2/3 · 6 s" in console.export_text()


def test_the_meta_says_what_its_rounds_limit_counts() -> None:
    """A run's meta names its progress unit, and a watcher believes it over the older ``….ticks`` guess."""
    from twin.progress import limit_unit, meta_unit

    ticked = {"rounds_limit": 5, "config": {"cascade.ticks": 5}}
    assert meta_unit({**ticked, "progress_unit": "round"}) == "round"  # the meta's word wins
    assert meta_unit(ticked) == "tick"  # a run from before the field
    assert meta_unit({"rounds_limit": 5, "config": {"fl.rounds": 5}}) == "round"
    assert limit_unit("fl.rounds") == "round" and limit_unit("cascade.ticks") == "tick"
