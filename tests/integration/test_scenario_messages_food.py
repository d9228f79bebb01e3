"""food-cycle's JSON messages match their shipped schemas, and a forged one of each kind is refused.

A tiny run on the in-process bus records every ledger, plan and forecast document; each validates against the
schema its ``schema`` field names. A second run gets one hostile ledger (valid shape, wrong tag) and
one hostile plan (valid shape, unsigned) mid-run: both are counted as forged, and the KPI table equals
the clean run's.
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
    "devices.shops": "6",
    "devices.households": "4",
    "devices.history_days": "28",
    "collection.days": "7",
    "fl.rounds": "3",
}
FOOD_SCHEMAS = {
    PROTOCOL_SCHEMA_IDS[kind]
    for kind in ("food_ledger", "food_plan", "food_forecast_tick", "food_forecast_request")
}


def _run(tmp_path: Path, name: str) -> Any:
    result = run_scenario(
        RunOptions("food-cycle", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path / name)
    )
    assert result.status == "finished", result.error
    return result


def _food_doc(payload: bytes) -> dict[str, Any] | None:
    try:
        doc = json.loads(payload)
    except (UnicodeDecodeError, ValueError):
        return None
    return doc if isinstance(doc, dict) and doc.get("schema") in FOOD_SCHEMAS else None


def test_every_food_message_matches_its_schema_and_forgeries_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Arrange: record every food document of a clean run
    original = LocalBus.publish
    seen: list[dict[str, Any]] = []

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        doc = _food_doc(payload)
        if doc is not None:
            seen.append(doc)
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    clean = _run(tmp_path, "clean")
    # Assert: each validates, and both kinds were seen
    assert {d["schema"] for d in seen} == FOOD_SCHEMAS
    for doc in seen:
        jsonschema.validate(doc, schema_by_id(doc["schema"]), format_checker=jsonschema.FormatChecker())
    assert "rejected_forged" not in clean.summary["bus"]

    # Arrange: one hostile message of each kind, valid in shape, published mid-run
    state: dict[str, Any] = {"ledger": False, "plan": False}
    template_plan = next(d for d in seen if d["schema"] == PROTOCOL_SCHEMA_IDS["food_plan"])

    def attack(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        original(self, topic, payload, qos=qos, retain=retain)
        doc = _food_doc(payload)
        if doc is not None and "/request/" in topic and not state["ledger"]:
            forged = {**doc, "auth": "00" * 32}  # genuine content, wrong tag
            jsonschema.validate(forged, schema_by_id(forged["schema"]))
            original(self, topic, encode_json(forged), qos=1)
            state["ledger"] = True
        elif topic.endswith("/tick") and "/svc/" in topic and not state["plan"]:
            root, _ = topic.rsplit("/", 1)[0].rsplit("/svc/", 1)
            forged = {
                **{k: v for k, v in template_plan.items() if k != "auth"},
                "run_id": root.rsplit("/", 1)[-1],
                "service": template_plan["service"],
            }  # unsigned
            plan_topic = f"{root}/svc/{template_plan['service']}/plan"
            jsonschema.validate({**forged, "auth": "ab"}, schema_by_id(forged["schema"]))
            original(self, plan_topic, encode_json(forged), qos=1)
            state["plan"] = True

    monkeypatch.setattr(LocalBus, "publish", attack)
    attacked = _run(tmp_path, "attacked")
    # Assert: both refused as forged, nothing else changed
    assert state == {"ledger": True, "plan": True}
    assert attacked.summary["bus"].get("rejected_forged", 0) == 2
    pd.testing.assert_frame_equal(attacked.kpis, clean.kpis, check_exact=True)
