"""The device protocol: devices read the global model from the wire, every JSON message has its schema.

The network agent never trains; device hosts decode what arrived. So what travels on the downlink
decides what the devices learn from (its wire precision, a model altered on the way), and every JSON
message of a run names a schema shipped in ``twin/schemas``.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pandas as pd
import pytest
import torch

from broker.bus import LocalBus
from broker.codec import decode_model, encode_model
from twin.runner import RunOptions, RunSession, run_scenario
from twin.schemas import schema_by_id

SMALL = {"devices.count": "12", "inference.interval_s": "4"}


def _run(tmp_path: Path, rounds: int = 2, **extra: str) -> RunSession:
    session = RunSession(
        RunOptions(
            "home-health",
            seed=1,
            overrides={**SMALL, **extra},
            broker="local",
            out_dir=tmp_path,
            rounds=rounds,
        )
    )
    session.open()
    while session.step():
        pass
    session.close()
    return session


def test_every_json_message_of_a_run_validates_against_the_schema_it_names(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sent: list[tuple[str, bytes]] = []
    original = LocalBus.publish

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        sent.append((topic, bytes(payload)))
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    _run(tmp_path, **{"bus.chunk_bytes": "4096"})
    documents = [(t, json.loads(p)) for t, p in sent if p[:1] == b"{" and "/chunk/" not in t]
    names = {d["schema"] for _, d in documents}
    assert {
        "twin.fl.round.v1",
        "twin.inference.tick.v1",
        "twin.inference.request.v1",
        "twin.inference.response.v1",
        "twin.chunks.v1",
        "twin.kpi.v1",
        "twin.telemetry.v1",
    } <= names
    for _, document in documents:
        jsonschema.validate(document, schema_by_id(document["schema"]))


def test_devices_train_from_the_global_model_as_it_arrived(tmp_path: Path) -> None:
    """fp16 on the wire: each host holds the fp16-rounded global model, and the run's results change."""
    fp32 = _run(tmp_path / "a", rounds=1)
    fp16 = _run(tmp_path / "b", rounds=1, **{"fl.wire_dtype": "fp16"})
    model = fp16.model
    assert model is not None and fp32.model is not None
    host = model.hosts[0]
    role = host.federated["fall-detection"]
    version, held = host.deployed("fall-detection", sorted(role.deployed)[0])
    initial = model.network.initial_params
    assert version == 0
    for name, tensor in held.items():
        assert torch.equal(tensor, initial[name].to(torch.float16).to(torch.float32))
    assert not all(torch.equal(held[k], initial[k]) for k in held)
    assert fp16.model.kpi_rows[0]["loss"] != fp32.model.kpi_rows[0]["loss"]


def test_a_global_model_altered_on_the_way_is_refused_and_sent_again(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Zeroing round 1's global model on the wire breaks its signature: the host refuses it (forged),
    nobody trains from it, the network sends it again, and the run equals an undisturbed one."""
    clean = run_scenario(
        RunOptions("home-health", seed=1, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    original = LocalBus.publish
    tampered_once: list[str] = []

    def tamper(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if "/ml/" in topic and topic.endswith("/1/global") and not tampered_once:
            model = decode_model(payload, max_bytes=1 << 26)
            payload = encode_model({k: torch.zeros_like(v) for k, v in model.tensors.items()}, model.metadata)
            tampered_once.append(topic)
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", tamper)
    tampered = run_scenario(
        RunOptions("home-health", seed=1, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    assert tampered_once and tampered.status == clean.status == "finished"
    pd.testing.assert_frame_equal(tampered.kpis, clean.kpis, check_exact=True)
    assert tampered.summary["bus"]["rejected_forged"] == 1


def test_protocol_doc_names_every_field_of_every_protocol_schema() -> None:
    """docs/device-protocol.md documents every property of the shipped protocol schemas."""
    from twin.schemas import PROTOCOL_SCHEMA_IDS, load_schema

    text = (Path(__file__).parents[2] / "docs" / "device-protocol.md").read_text()
    missing = [
        f"{t}.{p}" for t in PROTOCOL_SCHEMA_IDS for p in load_schema(t)["properties"] if f"`{p}`" not in text
    ]
    assert not missing, missing
    for schema_id in PROTOCOL_SCHEMA_IDS.values():
        jsonschema.Draft202012Validator.check_schema(schema_by_id(schema_id))
        assert f"`{schema_id}`" in text


def test_results_do_not_depend_on_the_cohort_size(tmp_path: Path) -> None:
    """A host trains its devices in cohorts of ``cohort_size``; 5 or 512, every table is the same."""
    tables = []
    for size in (512, 5):
        session = RunSession(
            RunOptions(
                "home-health", seed=1, overrides=SMALL, broker="local", out_dir=tmp_path / str(size), rounds=2
            )
        )
        model = session.open()
        model.hosts[0].cohort_size = size
        while session.step():
            pass
        result = session.close()
        tables.append((result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")))
    for ours, theirs in zip(tables[0], tables[1], strict=True):
        pd.testing.assert_frame_equal(ours, theirs, check_exact=True)
