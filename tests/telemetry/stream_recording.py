"""Recording a run's stream with subscriber processes of their own (used by the telemetry fixtures).

A recording runs home-health for two rounds on a broker while two separate processes record its
stream: ``stream_recorder.py`` (a standalone paho client, all of ``twin/v1/{run_id}/#``) and, where
installed, Debian's ``mosquitto_sub`` (the telemetry topics). After the run a third subscriber
collects what the broker retained.
"""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from broker.mqtt_bus import MqttBus
from broker.url import parse_broker_url
from twin.runner import RunOptions, RunResult, run_scenario
from twin.telemetry import parse_message, subscription_filters

RECORDER = Path(__file__).with_name("stream_recorder.py")
RECORDER_TIMEOUT_S = 20
TELEMETRY_INTERVAL_S = 5
ROUNDS = 2


@dataclass
class Recording:
    """A run and its stream as seen by the subscriber processes."""

    broker_name: str
    broker_url: str
    run_id: str
    result: RunResult
    live: list[dict[str, Any]]
    """Every message of ``twin/v1/{run_id}/#`` received by the paho recorder during the run."""
    mosquitto_sub: list[dict[str, Any]] | None
    """The telemetry received by mosquitto_sub (None where it is not installed)."""
    retained: list[dict[str, Any]]
    """What a subscriber joining after the run received (the retained messages)."""

    def of_type(self, message_type: str, records: list[dict[str, Any]] | None = None) -> list[dict[str, Any]]:
        """Decoded documents of one message type, in arrival order."""
        docs = []
        for record in self.live if records is None else records:
            message = parse_message(record["topic"], record.get("payload", "").encode())
            if message is not None and message.message_type == message_type:
                docs.append(message.document)
        return docs


def publish(url: str, topic: str, payload: bytes, *, retain: bool = False) -> None:
    """Publish one QoS-1 message and wait until the broker has it."""
    bus = MqttBus(parse_broker_url(url))
    try:
        bus.publish(topic, payload, qos=1, retain=retain)
    finally:
        bus.close()


def start_recorder(url: str, topic_filter: str, out: Path, *options: str) -> subprocess.Popen[str]:
    """Start ``stream_recorder.py`` and wait until its subscription is acknowledged."""
    proc = subprocess.Popen(
        [
            sys.executable,
            str(RECORDER),
            url,
            topic_filter,
            str(out),
            "--timeout",
            str(RECORDER_TIMEOUT_S),
            *options,
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert proc.stdout is not None
    line = proc.stdout.readline().strip()
    if line != "ready":
        proc.kill()
        raise AssertionError(
            f"recorder did not subscribe: {line!r} {proc.stderr.read() if proc.stderr else ''}"
        )
    return proc


def wait_recorder(proc: subprocess.Popen[str]) -> int:
    """Wait until a recorder stops by itself (at the latest after its timeout); returns its exit code."""
    proc.communicate(timeout=RECORDER_TIMEOUT_S + 10)
    return proc.returncode


def start_mosquitto_sub(url: str, run_id: str, out: Path) -> subprocess.Popen[bytes] | None:
    """Start Debian's mosquitto_sub on the run's telemetry; returns once it receives (None: not installed)."""
    if shutil.which("mosquitto_sub") is None:
        return None
    address = urlsplit(url)
    probe = f"twin/v1/{run_id}-probe/ready"
    topics = [arg for topic in [*subscription_filters(run_id), probe] for arg in ("-t", topic)]
    command = [
        "mosquitto_sub",
        "-h",
        str(address.hostname),
        "-p",
        str(address.port),
        "-q",
        "1",
        "-F",
        "%r\t%q\t%t\t%p",
        *topics,
    ]
    with out.open("wb") as sink:
        proc = subprocess.Popen(command, stdout=sink, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 10
    while probe not in out.read_text(errors="replace"):
        assert time.monotonic() < deadline and proc.poll() is None, "mosquitto_sub did not subscribe"
        publish(url, probe, b"ready")
        time.sleep(0.1)
    return proc


def read_mosquitto_sub(out: Path, run_id: str) -> list[dict[str, Any]]:
    """Parse mosquitto_sub's ``retain<TAB>qos<TAB>topic<TAB>payload`` lines (the probe left out)."""
    records = []
    for line in out.read_text(encoding="utf-8").splitlines():
        retain, qos, topic, payload = line.split("\t", 3)
        if not topic.startswith(f"twin/v1/{run_id}-probe/"):
            records.append({"topic": topic, "qos": int(qos), "retain": retain == "1", "payload": payload})
    return records


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """One JSON document per line."""
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]


def clear_retained(url: str, run_id: str, out: Path) -> list[dict[str, Any]]:
    """Collect what the broker retained for a run (a subscriber joining now), then delete it."""
    late = start_recorder(url, f"twin/v1/{run_id}/#", out, "--idle", "1.0")
    assert wait_recorder(late) == 0
    retained = read_jsonl(out)
    for record in retained:
        publish(url, record["topic"], b"", retain=True)
    return retained


def record_run(name: str, url: str, folder: Path) -> Recording:
    """Run home-health on the broker at ``url`` while separate processes record its stream."""
    run_id = f"telemetry-test-{uuid.uuid4().hex[:8]}"
    live_file, sub_file, retained_file = (
        folder / "live.jsonl",
        folder / "mosquitto_sub.txt",
        folder / "ret.jsonl",
    )
    recorder = start_recorder(url, f"twin/v1/{run_id}/#", live_file, "--until-final", "1.0")
    mosquitto_sub = start_mosquitto_sub(url, run_id, sub_file)
    try:
        result = run_scenario(
            RunOptions(
                scenario="home-health",
                rounds=ROUNDS,
                broker=url,
                out_dir=folder / "runs",
                run_id=run_id,
                overrides={"bus.telemetry_interval_s": str(TELEMETRY_INTERVAL_S)},
            )
        )
        assert wait_recorder(recorder) == 0, "the recorder saw no final status"
        if mosquitto_sub is not None:
            deadline = time.monotonic() + 10
            while '"status":"finished"' not in sub_file.read_text() and time.monotonic() < deadline:
                time.sleep(0.05)
    finally:
        for proc in (recorder, mosquitto_sub):
            if proc is not None and proc.poll() is None:
                proc.terminate()
                proc.communicate(timeout=10)
    retained = clear_retained(url, run_id, retained_file)
    return Recording(
        name,
        url,
        run_id,
        result,
        read_jsonl(live_file),
        read_mosquitto_sub(sub_file, run_id) if mosquitto_sub is not None else None,
        retained,
    )
