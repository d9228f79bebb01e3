"""disease-diagnosis's JSON messages match their shipped schemas; a forgery of each kind is refused.

A tiny run on the in-process bus records every ``twin.diagnosis.*`` payload and validates it against
``schema_by_id``; a second run has one hostile message of each kind (valid shape, unsigned or wrongly
signed) published just before the first genuine one: each is counted as ``forged`` and the KPI table
equals the clean run's.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from broker.bus import LocalBus
from broker.json_codec import encode_json
from twin.runner import RunOptions, run_scenario
from twin.schemas import PROTOCOL_SCHEMA_IDS, schema_by_id

SMALL = {
    "devices.count": "20",
    "cascade.ticks": "26",
    "cascade.start_s": "40",
    "drift.at_s": "160",
    "drift.magnitude": "3",
    "management.window_cases": "160",
}
KINDS = {PROTOCOL_SCHEMA_IDS[k] for k in ("diagnosis_cases", "diagnosis_answers", "diagnosis_policy")}


def _run(tmp_path: Path, name: str) -> Any:
    result = run_scenario(
        RunOptions("disease-diagnosis", seed=5, overrides=SMALL, broker="local", out_dir=tmp_path / name)
    )
    assert result.status == "finished", result.error
    return result


def _doc(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") in KINDS else None


def _hostile(doc: dict[str, Any]) -> bytes:
    """The genuine document, shape kept, unsigned (cases) or signed with a made-up tag (the rest)."""
    body = {k: v for k, v in doc.items() if k != "auth"}
    if doc["schema"] == PROTOCOL_SCHEMA_IDS["diagnosis_cases"]:
        body["cases"] = body["cases"][:1]
        return encode_json(body)
    if doc["schema"] == PROTOCOL_SCHEMA_IDS["diagnosis_answers"]:
        body["answers"] = [{**a, "diagnosis": 0} for a in body["answers"]]
    else:
        body["since_tick"] = 0
    return encode_json({**body, "auth": "ab" * 64})


def test_messages_match_schemas_and_forgeries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    original = LocalBus.publish
    seen: list[dict[str, Any]] = []

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        doc = _doc(payload)
        if doc is not None:
            seen.append(doc)
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    clean = _run(tmp_path, "clean")
    # every message of the three kinds validates against its shipped schema
    assert {d["schema"] for d in seen} == KINDS
    for doc in seen:
        jsonschema.validate(doc, schema_by_id(doc["schema"]))
    assert "rejected_forged" not in clean.summary["bus"]

    sent: set[str] = set()

    def attack(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        doc = _doc(payload)
        if doc is not None and doc["schema"] not in sent and doc.get("tick", 1) > 0:
            sent.add(doc["schema"])
            hostile = _hostile(doc)
            jsonschema.validate(
                {**json.loads(hostile), "auth": json.loads(hostile).get("auth", "00")},
                schema_by_id(doc["schema"]),
            )  # shape is valid but for the signature
            original(self, topic, hostile, qos=qos, retain=False)  # ahead of the genuine one
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", attack)
    attacked = _run(tmp_path, "attacked")
    assert sent == KINDS
    assert attacked.summary["bus"].get("rejected_forged", 0) == len(KINDS)
    pd.testing.assert_frame_equal(attacked.kpis, clean.kpis, check_exact=True)
