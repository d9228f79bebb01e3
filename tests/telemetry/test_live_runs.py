"""Live runs: announced at start, listed by `twin runs`, replayable from `telemetry.parquet`."""

from __future__ import annotations

import json
import re
import subprocess
import sys
import time
import urllib.request
import uuid
from dataclasses import replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from stream_recording import clear_retained

from broker.bus import LocalBus
from broker.connect import open_bus
from broker.topics import Topics
from twin.runner import RunOptions, RunSession, run_scenario
from twin.telemetry import (
    RUN_KEY_FILE,
    TELEMETRY_FILE,
    RunSigner,
    TelemetryPublisher,
    TelemetryTable,
    load_public_key,
    verify_document,
)

LOCAL_RUN = RunOptions(
    scenario="home-health", rounds=1, broker="local", overrides={"bus.telemetry_interval_s": "2"}
)


def test_the_meta_is_signed_dated_and_the_samples_are_kept(tmp_path: Path) -> None:
    """The meta carries started_at and the run's key (also in the run directory); telemetry.parquet holds
    every sample published, in order."""
    # Prepare
    seen: list[tuple[str, dict[str, Any]]] = []
    session = RunSession(replace(LOCAL_RUN, out_dir=tmp_path))
    session.open()
    assert session.model is not None
    session.model.telemetry.sinks.append(lambda kind, doc: seen.append((kind, dict(doc))))
    # Execute
    while session.step():
        pass
    result = session.close()
    # Assert
    key = load_public_key(result.run_dir / RUN_KEY_FILE)
    assert session.model.telemetry.samples.dropped == 0
    samples = [doc for kind, doc in seen if kind == "telemetry"]
    table = pd.read_parquet(result.run_dir / TELEMETRY_FILE)
    assert len(samples) > 0 and len(table) == len(samples)
    for column in ("agent_id", "kind", "step", "sim_time_s"):
        assert table[column].tolist() == [doc[column] for doc in samples]
    assert table["state"].dropna().tolist() == [doc["state"] for doc in samples if "state" in doc]
    status = [doc for kind, doc in seen if kind == "status"][-1]
    assert verify_document(status, Topics(result.run_id).status, key)
    assert not verify_document({**status, "rounds_completed": 0}, Topics(result.run_id).status, key)


def test_the_retained_meta_has_started_at_and_verifies(tmp_path: Path) -> None:
    """The retained meta names the run's public key, is signed by it and says when the run started."""
    # Prepare
    before = datetime.now(UTC).replace(microsecond=0)
    session = RunSession(replace(LOCAL_RUN, out_dir=tmp_path))
    model = session.open()
    # Execute
    assert isinstance(model.bus, LocalBus)
    retained = model.bus._retained[Topics(session.run_id).meta]  # LocalBus keeps what is retained
    session.close("stopped")
    # Assert
    meta = json.loads(retained)
    started = datetime.strptime(meta["started_at"], "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC)
    assert before <= started <= datetime.now(UTC)
    assert bytes.fromhex(meta["run_public_key"]) == load_public_key(session.run_dir / RUN_KEY_FILE)
    assert verify_document(meta, Topics(session.run_id).meta, bytes.fromhex(meta["run_public_key"]))
    assert "started_at" not in json.loads((session.run_dir / "summary.json").read_text())
    assert meta["progress_unit"] == "round"  # what its rounds_limit counts (fl.rounds)


def test_the_telemetry_table_is_bounded_and_keeps_every_column() -> None:
    """Samples of different agents (different keys, types) make one table; past the cap they are counted."""
    # Prepare
    table = TelemetryTable(chunk_rows=2, max_rows=4)
    docs: list[dict[str, Any]] = [
        {"schema": "twin.telemetry.v1", "kind": "gnb", "agent_id": "gnb-00", "served_devices": 3},
        {"schema": "twin.telemetry.v1", "kind": "hh", "agent_id": "hh-1", "state": "idle", "energy_j": 0.5},
        {"schema": "twin.telemetry.v1", "kind": "gnb", "agent_id": "gnb-00", "served_devices": 2.5},
        {"schema": "twin.telemetry.v1", "kind": "hh", "agent_id": "hh-1", "state": "training"},
        {"schema": "twin.telemetry.v1", "kind": "hh", "agent_id": "hh-1", "state": "sending"},
    ]
    # Execute
    for doc in docs:
        table.append(doc)
    rows = table.table().to_pylist()
    # Assert
    assert table.dropped == 1 and len(rows) == 4
    assert [r["state"] for r in rows] == [None, "idle", None, "training"]
    assert [r["served_devices"] for r in rows] == [3.0, None, 2.5, None]
    assert "schema" not in rows[0]


def test_on_start_comes_before_the_first_round_and_metrics_outlive_the_run(tmp_path: Path) -> None:
    """on_start sees the run announced and no round yet; /metrics still serves `finished` afterwards."""
    # Prepare
    at_start: dict[str, Any] = {}

    def on_start(session: RunSession) -> None:
        assert session.model is not None
        at_start.update(run_id=session.run_id, rounds=len(session.model.kpi_rows), time=session.model.time)

    # Execute
    result = run_scenario(replace(LOCAL_RUN, out_dir=tmp_path, metrics_port=0), on_start=on_start)
    assert result.metrics is not None and result.metrics.port is not None
    try:
        with urllib.request.urlopen(f"http://127.0.0.1:{result.metrics.port}/metrics", timeout=10) as page:
            text = page.read().decode()
    finally:
        result.metrics.close()
    # Assert
    assert at_start == {"run_id": result.run_id, "rounds": 0, "time": 0}
    assert re.search(r'twin_run_status\{[^}]*status="finished"[^}]*\} 1\.0', text)


def test_twin_run_prints_its_id_and_metrics_url_at_start(tmp_path: Path) -> None:
    """`twin run --format json` says the run id and metrics URL on stderr; stdout stays one JSON document."""
    # Prepare
    command = [sys.executable, "-m", "twin", "run", "home-health", "--rounds", "1", "--broker", "local"]
    # Execute
    proc = subprocess.run(
        [*command, "--format", "json", "--metrics-port", "0", "--out", str(tmp_path)],
        capture_output=True,
        text=True,
        timeout=300,
    )
    # Assert
    assert proc.returncode == 0, proc.stderr
    run_id = json.loads(proc.stdout)["run_id"]
    assert f"run {run_id} started on local://" in proc.stderr
    assert re.search(r"Prometheus metrics: http://127\.0\.0\.1:\d+/metrics", proc.stderr)


def _fake_run(url: str, started_at: str, status: str) -> tuple[str, Any, TelemetryPublisher]:
    run_id = f"runs-test-{uuid.uuid4().hex[:8]}"
    handle = open_bus(url)
    publisher = TelemetryPublisher(handle.bus, Topics(run_id), "home-health", signer=RunSigner())
    publisher.meta(
        {"seed": 0, "config": {}, "devices": 1, "base_stations": 1, "broker": url, "started_at": started_at}
    )
    publisher.finish(status)
    return run_id, handle, publisher


@pytest.mark.broker
def test_twin_runs_lists_newest_first_and_watch_follows_the_newest_running(
    mosquitto_url: str, tmp_path: Path
) -> None:
    """`twin runs` lists runs newest first from their retained messages; `twin watch` without an id
    follows the newest running one until it ends."""
    # Prepare
    older_id, older, _ = _fake_run(mosquitto_url, "2099-01-01T00:00:00Z", "finished")
    newer_id, newer, publisher = _fake_run(mosquitto_url, "2099-01-02T00:00:00Z", "running")
    try:
        # Execute
        started = time.monotonic()
        listed = subprocess.run(
            [sys.executable, "-m", "twin", "runs", "--broker", mosquitto_url, "--format", "json"],
            capture_output=True,
            text=True,
            timeout=60,
        )
        listing_s = time.monotonic() - started
        watcher = subprocess.Popen(
            [sys.executable, "-m", "twin", "watch", "--broker", mosquitto_url, "--timeout", "60"],
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
        )
        assert watcher.stderr is not None
        first = watcher.stderr.readline()
        publisher.finish("finished", rounds_completed=1)
        out, err = watcher.communicate(timeout=60)
    finally:
        older.close()
        newer.close()
        for run_id in (older_id, newer_id):
            clear_retained(mosquitto_url, run_id, tmp_path / f"{run_id}.jsonl")
    # Assert
    assert listed.returncode == 0, listed.stderr
    runs = json.loads(listed.stdout)
    assert [r["run_id"] for r in runs[:2]] == [newer_id, older_id]
    assert [(r["status"], r["started_at"], r["signed"]) for r in runs[:2]] == [
        ("running", "2099-01-02T00:00:00Z", True),
        ("finished", "2099-01-01T00:00:00Z", True),
    ]
    assert listing_s < 30
    assert first.startswith(f"watching run {newer_id} on "), first + err
    assert watcher.returncode == 0 and "finished" in out


def test_a_field_that_is_a_number_for_one_kind_and_text_for_another_is_kept_as_text() -> None:
    """Agent kinds may give one field name different types (a robot's ``line`` 'machining', another's 3):
    within a chunk and across chunks, the table keeps every value, as text."""
    # Prepare
    table = TelemetryTable(chunk_rows=2)
    lines: list[Any] = [1, "machining", 3, 4]
    # Execute
    for i, line in enumerate(lines):
        table.append({"schema": "twin.telemetry.v1", "kind": "robot", "agent_id": f"r-{i}", "line": line})
    rows = table.table().to_pylist()
    # Assert
    assert [r["line"] for r in rows] == ["1", "machining", "3", "4"]
