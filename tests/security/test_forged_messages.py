"""Targeted forgeries against a live run: none is accepted, none displaces the real message.

The attacker can publish anything on the run's broker but holds no key. It races forged updates ahead
of the real ones (weights −3 × global, a made-up sample count), re-labels a genuine round-1 update for
round 2, publishes a future round's global model and plan, and forges inference batches and ticks.
Every one is refused as ``forged`` before any state changes, and the run's tables equal a clean run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
import torch

from broker.bus import LocalBus
from broker.codec import decode_model, encode_model
from broker.json_codec import encode_json
from twin.runner import RunOptions, run_scenario

SMALL = {"devices.count": "12", "inference.interval_s": "4"}


def _run(tmp_path: Path, name: str) -> Any:
    result = run_scenario(
        RunOptions("home-health", seed=4, overrides=SMALL, broker="local", out_dir=tmp_path / name, rounds=3)
    )
    assert result.status == "finished", result.error
    return result


def _tables(result: Any) -> list[pd.DataFrame]:
    return [result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")]


def test_forgeries_racing_the_real_messages_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _run(tmp_path, "clean")
    original = LocalBus.publish
    state: dict[str, Any] = {"selected": {}, "captured": None, "sent": 0}

    def attack(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        root = topic.split("/ml/")[0] if "/ml/" in topic else topic.split("/svc/")[0]
        if topic.endswith("/select"):
            doc = json.loads(payload)
            state["selected"][doc["round"]] = doc["selected"]
        elif "/ml/" in topic and topic.endswith("/global"):
            service, rnd = topic.split("/ml/")[1].split("/")[:2]
            rnd = int(rnd)
            genuine = decode_model(payload, max_bytes=1 << 26)
            evil = {k: -3 * v for k, v in genuine.tensors.items()}
            for agent in state["selected"].get(rnd, []):  # race ahead of every real update
                meta = {
                    "round": rnd,
                    "service": service,
                    "agent_id": agent,
                    "n_samples": 7,
                    "auth": "00" * 32,
                }
                original(self, f"{root}/ml/{service}/{rnd}/update/{agent}", encode_model(evil, meta))
                state["sent"] += 1
            if state["captured"] is not None and rnd == 2:  # a genuine round-1 update, re-labelled
                agent, tensors, meta = state["captured"]
                meta = {**meta, "round": 2}
                original(self, f"{root}/ml/{service}/2/update/{agent}", encode_model(tensors, meta))
                state["sent"] += 1
            future = {k: torch.zeros_like(v) for k, v in genuine.tensors.items()}  # next round's "global"
            original(
                self,
                f"{root}/ml/{service}/{rnd + 1}/global",
                encode_model(future, {"round": rnd + 1, "service": service, "sender": "network"}),
                retain=True,
            )
            plan = {"schema": "twin.fl.round.v1", "run_id": root.rsplit("/", 1)[-1], "round": rnd + 1}
            original(self, f"{root}/ml/{service}/{rnd + 1}/select", encode_json(plan), retain=True)
            state["sent"] += 2
        elif "/update/" in topic and state["captured"] is None and "/1/update/" in topic:
            got = decode_model(payload, max_bytes=1 << 26)
            state["captured"] = (topic.rsplit("/", 1)[-1], got.tensors, dict(got.metadata))
        elif topic.endswith("/tick"):
            service_root = topic.rsplit("/", 1)[0]
            doc = json.loads(payload)
            forged = {
                "schema": "twin.inference.request.v1",
                "host": "host-0",
                "tick": doc["tick"],
                "results": [],
            }
            original(self, f"{service_root}/request/host-0", encode_json({**forged, "auth": "ab" * 32}))
            original(self, topic, encode_json({**doc, "tick": doc["tick"] + 1, "auth": "cd" * 64}))
            state["sent"] += 2
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", attack)
    attacked = _run(tmp_path, "attacked")
    for ours, theirs in zip(_tables(attacked), _tables(clean), strict=True):
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
    bus = attacked.summary["bus"]
    assert state["sent"] > 30
    assert (
        bus.get("rejected_forged", 0) >= state["sent"] - 2
    )  # the last round's future plan/model may be unread
    assert "rejected_forged" not in clean.summary["bus"]


def test_a_run_reports_its_messages_as_authenticated(tmp_path: Path) -> None:
    """Message authentication is always on: plain MQTT without TLS is security level 3, not 2."""
    result = run_scenario(
        RunOptions("home-health", seed=4, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    levels = [i for r in result.qoais for i in r.indicators if i.name == "transmission_security_level"]
    assert levels and all(i.achieved == 3 for i in levels)


def test_one_hostile_message_of_each_new_kind(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A forged answer, a replayed tick, a flood of resend requests and an oversized plan: each is
    refused or bounded, and none makes a host or the network do the work again."""
    from twin.runner import RunSession

    sent: list[tuple[str, bytes]] = []
    original = LocalBus.publish

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        sent.append((topic, bytes(payload)))
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    session = RunSession(
        RunOptions("home-health", seed=4, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=2)
    )
    model = session.open()
    while model.time < 3:  # round 1 done, tick 0 answered
        session.step()
    topics, bus = model.topics, model.bus
    tick = next(p for t, p in sent if t == topics.tick("health-alerts"))
    global_1 = topics.global_model("fall-detection", 1)
    before = len(sent)
    forged = {"schema": "twin.inference.response.v1", "run_id": model.run_id, "host": "host-0", "tick": 0}
    bus.publish(
        topics.response("health-alerts", "host-0"), encode_json({**forged, "answers": [], "auth": "00"})
    )
    bus.publish(topics.tick("health-alerts"), tick)  # a genuine, signed tick, replayed
    for _ in range(50):
        bus.publish(topics.resend("fall-detection", 1, "network"), b"*")
    bus.publish(topics.select("fall-detection", 5), b'{"x":"' + b"a" * (9 << 20) + b'"}')
    model.pump()
    after = [t for t, _ in sent[before:]]
    session.close()
    rejected = bus.stats.rejected
    assert rejected["forged"] == 1 and rejected["duplicate"] == 1 and rejected["oversized"] == 1
    assert topics.request("health-alerts", "host-0") not in after  # the replay cost no inference
    assert after.count(global_1) <= 4 and rejected["resend_refused"] >= 46
