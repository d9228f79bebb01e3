"""The whole attack suite against a live run, on the embedded broker and on Mosquitto.

An attacker with publish access to the run's broker (but no key) subscribes to the run's topic tree
from a separate MQTT client and, while the run goes on:

- **untargeted**: publishes more than 1,000 hostile messages on every topic shape the run listens to
  (updates, manifests, chunks, global models, round plans, resend requests, ticks, inference requests
  and answers) with random bytes, random JSON, truncated safetensors and well-formed but unsigned
  documents;
- **targeted**: races a forged update (weights −3 × global, a made-up sample count) ahead of every
  real one, alone and packed as a host's batch on the real batch's topic; re-labels a genuine update
  of round r for round r + 1 (and the genuine packed batches' manifests and chunks); publishes the
  next round's global model and plan; forges inference requests and ticks; sends updates with bad metadata
  (``n_samples=0``, an arrival time in the past, missing fields); sends orphan chunks with no manifest
  (far more bytes than the budget) and manifests claiming 10¹² chunks.

The run must finish, its kpi/requests/events tables must equal those of a clean run, every
rejection must be counted by kind in ``summary.json``, and the run's memory must stay within the
stated budget: a chunk assembler holds at most 4 × ``bus.max_payload_bytes`` of chunks, and the run's
process has two (the network's and its device host's), plus slack for Python.
"""

from __future__ import annotations

import json
import random
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pandas as pd
import psutil
import pytest
import torch

from broker.codec import decode_model, encode_model
from broker.embedded import EmbeddedBroker
from broker.json_codec import encode_json
from broker.update_batch import Layout, encode_update_batch
from broker.url import parse_broker_url
from twin.runner import RunOptions, run_scenario

pytestmark = [pytest.mark.broker, pytest.mark.slow]

MAX_PAYLOAD = 400_000
SMALL = {
    "devices.count": "12",
    "inference.interval_s": "4",
    "bus.max_payload_bytes": str(MAX_PAYLOAD),
    "bus.chunk_bytes": "8000",  # the global model (~20 kB) travels as a manifest and chunks
}
ROUNDS = 3
UNTARGETED = 1200
ORPHAN_CHUNK_BYTES = 390_000
ORPHAN_CHUNKS = 120  # 94 MB of chunks (two rounds) that no manifest will ever claim
CHUNK_BUDGET_BYTES = 2 * 4 * MAX_PAYLOAD
MEMORY_SLACK_BYTES = 40 << 20


class Attacker:
    """A hostile MQTT client that reacts to the run's own traffic (holds no key)."""

    def __init__(self, url: str, run_id: str, seed: int = 7) -> None:
        address = parse_broker_url(url)
        self.root = f"twin/v1/{run_id}"
        self.rng = random.Random(seed)
        self.sent = 0
        self.lock = threading.Lock()
        self.selected: dict[tuple[str, int], list[str]] = {}
        self.template: dict[str, torch.Tensor] | None = None
        self.captured: dict[tuple[str, int], tuple[str, dict[str, torch.Tensor], dict[str, str]]] = {}
        self.batch_parts: dict[tuple[str, int], list[tuple[str, bytes]]] = {}
        self.seen: set[str] = set()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"attacker-{run_id}")
        self.client.max_queued_messages_set(0)
        self.client.on_message = self._on_message
        self.client.connect(address.host, address.port)
        self.client.loop_start()
        deadline = time.monotonic() + 10
        while not self.client.is_connected() and time.monotonic() < deadline:
            time.sleep(0.01)
        assert self.client.is_connected()
        self.client.subscribe(f"{self.root}/ml/#", qos=1)
        self.client.subscribe(f"{self.root}/svc/#", qos=1)
        self._flood = threading.Thread(target=self._untargeted, daemon=True)

    # -- helpers -----------------------------------------------------------------------------------
    def publish(self, topic: str, payload: bytes) -> None:
        with self.lock:
            self.sent += 1
        self.client.publish(topic, payload, qos=1)

    def close(self) -> None:
        if self._flood.is_alive():
            self._flood.join(timeout=60)
        self.client.loop_stop()
        self.client.disconnect()

    def start_flood(self) -> None:
        self._flood.start()

    def flooding(self) -> bool:
        return self._flood.is_alive()

    # -- targeted --------------------------------------------------------------------------------
    def _on_message(self, client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        topic, payload = msg.topic, bytes(msg.payload)
        if topic in self.seen:  # our own messages and re-sends come back too: react once
            return
        self.seen.add(topic)
        rest = topic[len(self.root) + 1 :].split("/")
        try:
            if rest[0] == "ml" and len(rest) == 4 and rest[3] == "select":
                doc = json.loads(payload)
                if "auth" in doc:  # only the genuine plan names who really trains
                    self.selected[(rest[1], int(rest[2]))] = list(doc.get("selected", []))
                    if self.template is None:  # the plan names the architecture: enough to forge
                        spec = doc["model"]
                        n_in, hidden, n_out = spec["in_features"], spec["hidden"], spec["n_classes"]
                        shapes = {"0": (hidden, n_in), "2": (hidden, hidden), "4": (n_out, hidden)}
                        self.template = {}
                        for layer, (rows, cols) in shapes.items():
                            self.template[f"net.{layer}.weight"] = torch.randn(rows, cols)
                            self.template[f"net.{layer}.bias"] = torch.randn(rows)
            elif rest[0] == "ml" and len(rest) > 5 and rest[3] == "updates":  # a genuine packed batch
                self.batch_parts.setdefault((rest[1], int(rest[2])), []).append(("/".join(rest[4:]), payload))
            elif rest[0] == "ml" and len(rest) >= 4 and rest[3] == "global" and rest[-1] == "manifest":
                self._race(rest[1], int(rest[2]))
            elif rest[0] == "ml" and len(rest) == 5 and rest[3] == "update":
                if len(payload) > 1000 and (rest[1], int(rest[2])) not in self.captured:
                    got = decode_model(payload, max_bytes=1 << 26)
                    if "auth" in got.metadata and got.metadata["auth"] not in ("0" * 64,):
                        self.captured[(rest[1], int(rest[2]))] = (rest[4], got.tensors, dict(got.metadata))
                        if self.template is None:
                            self.template = got.tensors
            elif rest[0] == "svc" and len(rest) == 3 and rest[2] == "tick":
                self._forge_inference(rest[1], json.loads(payload))
        except Exception:  # noqa: BLE001 (an attacker never stops: our own garbage comes back too)
            return

    def _race(self, service: str, rnd: int) -> None:
        """A global model appeared: forged updates race every real one; replays; the next round."""
        base = f"{self.root}/ml/{service}"
        if self.template is not None:
            evil = {k: -3 * v for k, v in self.template.items()}
            for agent in self.selected.get((service, rnd), []):
                meta = {"round": rnd, "service": service, "agent_id": agent, "n_samples": 7, "auth": "0" * 64}
                self.publish(f"{base}/{rnd}/update/{agent}", encode_model(evil, meta))
            bad_meta: list[dict[str, Any]] = [
                {"round": rnd, "service": service, "n_samples": 0},
                {"round": rnd, "service": service, "sim_arrival_s": -5, "n_samples": "x"},
                {"round": "nan", "service": service},
                {},
            ]
            for agent, meta in zip(self.selected.get((service, rnd), []), bad_meta, strict=False):
                self.publish(f"{base}/{rnd}/update/{agent}", encode_model(evil, {**meta, "agent_id": agent}))
            agents = self.selected.get((service, rnd), [])
            if agents:  # a forged packed batch on the topic the real host's first batch takes
                layout = Layout.of(self.template)
                rows = layout.flatten({k: torch.stack([v] * len(agents)) for k, v in evil.items()})
                batch = encode_update_batch(
                    rows,
                    agents,
                    layout=layout,
                    service=service,
                    round_index=rnd,
                    host="host-0",
                    wire_dtype="fp32",
                    sign=lambda agent, digest: "0" * 64,
                )
                self.publish(f"{base}/{rnd}/updates/host-0.0", batch)
            future = {k: torch.zeros_like(v) for k, v in self.template.items()}
            self.publish(
                f"{base}/{rnd + 1}/global",
                encode_model(future, {"round": rnd + 1, "service": service, "sender": "network"}),
            )
        captured = self.captured.get((service, rnd - 1))
        if captured is not None:  # a genuine update of the last round, re-labelled for this one
            agent, tensors, meta = captured
            self.publish(f"{base}/{rnd}/update/{agent}", encode_model(tensors, {**meta, "round": rnd}))
        for suffix, payload in self.batch_parts.get((service, rnd - 1), []):  # last round's, re-labelled
            self.publish(f"{base}/{rnd}/updates/{suffix}", payload)
        plan = {"schema": "twin.fl.round.v1", "round": rnd + 1, "selected": ["hh-0000"]}
        self.publish(f"{base}/{rnd + 1}/select", encode_json(plan))
        giant = {"schema": "twin.chunks.v1", "n_chunks": 10**12, "sha256": "a" * 64, "total_bytes": 10**12}
        victim = (self.selected.get((service, rnd)) or ["hh-0001"])[0]
        self.publish(f"{base}/{rnd}/update/{victim}/manifest", encode_json(giant))
        giant["total_bytes"] = MAX_PAYLOAD
        self.publish(f"{base}/{rnd}/global/manifest", encode_json(giant))

    def _forge_inference(self, service: str, tick: dict[str, Any]) -> None:
        base = f"{self.root}/svc/{service}"
        number = tick.get("tick", 0)
        request = {"schema": "twin.inference.request.v1", "host": "host-0", "tick": number, "results": []}
        self.publish(f"{base}/request/host-0", encode_json({**request, "auth": "ab" * 32}))
        self.publish(f"{base}/tick", encode_json({**tick, "tick": number + 1, "auth": "cd" * 64}))
        answer = {"schema": "twin.inference.response.v1", "host": "host-0", "tick": number, "answers": []}
        self.publish(f"{base}/response/host-0", encode_json({**answer, "auth": "00"}))

    # -- untargeted ------------------------------------------------------------------------------
    def _untargeted(self) -> None:
        """More than 1,000 hostile messages on every topic shape the run listens to, then orphans."""
        for topic, payload in self._hostile(UNTARGETED):
            self.publish(topic, payload)
            time.sleep(0.002)
        junk = self.rng.randbytes(ORPHAN_CHUNK_BYTES)
        for i in range(ORPHAN_CHUNKS):
            agent = f"hh-{i % 12:04d}"
            for rnd in (1, 2):  # one at a time: the attacker's own queue is not the run's memory
                topic = f"{self.root}/ml/fall-detection/{rnd}/update/{agent}/chunk/{i}"
                with self.lock:
                    self.sent += 1
                self.client.publish(topic, junk, qos=1).wait_for_publish(10)

    def _hostile(self, n: int) -> Iterator[tuple[str, bytes]]:
        rng = self.rng
        services = ("fall-detection", "health-alerts", "bogus")
        for i in range(n):
            service = rng.choice(services)
            rnd = rng.choice((0, 1, 2, 3, 99, -1))
            agent = rng.choice(("hh-0000", "hh-0003", "network", "ghost", "hh-9999"))
            topic = rng.choice(
                (
                    f"{self.root}/ml/{service}/{rnd}/update/{agent}",
                    f"{self.root}/ml/{service}/{rnd}/update/{agent}/manifest",
                    f"{self.root}/ml/{service}/{rnd}/update/{agent}/chunk/{rng.randrange(-2, 50)}",
                    f"{self.root}/ml/{service}/{rnd}/global",
                    f"{self.root}/ml/{service}/{rnd}/global/chunk/{rng.randrange(0, 5)}",
                    f"{self.root}/ml/{service}/{rnd}/select",
                    f"{self.root}/ml/{service}/{rnd}/resend/{agent}",
                    f"{self.root}/ml/{service}/{rnd}/update/{agent}/extra/level",
                    f"{self.root}/ml/{service}/{rnd}/updates/{agent}.{rng.randrange(3)}",
                    f"{self.root}/ml/{service}/{rnd}/updates/host-0.0/manifest",
                    f"{self.root}/ml/{service}/{rnd}/updates/host-0.{rng.randrange(3)}/chunk/{rng.randrange(5)}",
                    f"{self.root}/svc/{service}/tick",
                    f"{self.root}/svc/{service}/request/host-{rng.randrange(3)}",
                    f"{self.root}/svc/{service}/response/host-{rng.randrange(3)}",
                )
            )
            kind = i % 6
            if kind == 0:
                payload = rng.randbytes(rng.randrange(0, 3000))
            elif kind == 1:
                doc = {rng.choice(("schema", "tick", "round", "x")): rng.random() for _ in range(3)}
                payload = json.dumps(doc).encode()
            elif kind == 2:
                payload = encode_model({"w": torch.randn(3)}, {"round": rnd})[: rng.randrange(1, 200)]
            elif kind == 3:
                payload = json.dumps(
                    {"schema": "twin.inference.request.v1", "tick": "\u202e", "results": [[1, 2]]}
                ).encode()
            elif kind == 4:
                payload = encode_json({"schema": "twin.chunks.v1", "n_chunks": rng.randrange(-5, 10**9)})
            else:
                payload = b"[" * rng.randrange(1, 5000)
            yield topic, payload


class PeakMemory:
    """Peak resident memory of this process (the run's) while the block runs, sampled every 20 ms."""

    def __init__(self) -> None:
        self.peak = 0
        self._stop = threading.Event()
        self._process = psutil.Process()
        self._thread = threading.Thread(target=self._sample, daemon=True)

    def _sample(self) -> None:
        while not self._stop.is_set():
            self.peak = max(self.peak, self._process.memory_info().rss)
            time.sleep(0.02)

    def __enter__(self) -> PeakMemory:
        self.peak = self._process.memory_info().rss
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._stop.set()
        self._thread.join()


def _tables(run_dir: Path) -> list[pd.DataFrame]:
    names = ("kpi.parquet", "requests.parquet", "events.parquet")
    return [pd.read_parquet(run_dir / name).drop(columns="run_id", errors="ignore") for name in names]


def _attack_run(tmp_path: Path, url: str, name: str) -> None:
    def options(run_id: str) -> RunOptions:
        return RunOptions(
            "home-health",
            seed=4,
            overrides=SMALL,
            broker=url,
            out_dir=tmp_path / run_id,
            rounds=ROUNDS,
            run_id=run_id,
        )

    with PeakMemory() as clean_memory:
        clean = run_scenario(options(f"{name}-clean-{time.time_ns()}"))
    assert clean.status == "finished", clean.error
    run_id = f"{name}-attacked-{time.time_ns()}"
    attacker = Attacker(url, run_id)
    started: dict[str, bool] = {}

    def on_step(model: Any) -> None:
        if not started:
            started["flood"] = True
            attacker.start_flood()
        while attacker.flooding():  # the run handles the whole flood while it goes on
            model.pump(0.05)

    try:
        with PeakMemory() as attacked_memory:
            attacked = run_scenario(options(run_id), on_step=on_step)
    finally:
        attacker.close()
    assert attacked.status == "finished", attacked.error
    for ours, theirs in zip(_tables(attacked.run_dir), _tables(clean.run_dir), strict=True):
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    summary = json.loads((attacked.run_dir / "summary.json").read_text())
    rejected = {k: v for k, v in summary["bus"].items() if k.startswith("rejected_")}
    assert attacker.sent >= UNTARGETED + ORPHAN_CHUNKS
    assert attacker.template is not None and attacker.batch_parts  # the targeted attacks did happen
    for kind in ("forged", "malformed", "oversized", "unknown", "chunks_dropped"):
        assert rejected.get(f"rejected_{kind}", 0) >= 1, (kind, rejected, attacker.sent)
    assert sum(rejected.values()) >= UNTARGETED // 2, rejected  # what reached a subscriber was refused
    assert not any(
        k.startswith("rejected_") for k in json.loads((clean.run_dir / "summary.json").read_text())["bus"]
    )
    growth = attacked_memory.peak - clean_memory.peak
    assert growth <= CHUNK_BUDGET_BYTES + MEMORY_SLACK_BYTES, growth


def test_attack_suite_on_the_embedded_broker(tmp_path: Path, embedded_broker: EmbeddedBroker) -> None:
    _attack_run(tmp_path, embedded_broker.url, "emb")


def test_attack_suite_on_mosquitto(tmp_path: Path, mosquitto_url: str) -> None:
    _attack_run(tmp_path, mosquitto_url, "mosq")
