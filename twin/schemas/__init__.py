"""JSON Schemas of the telemetry contract and the device protocol, one per message type, package data.

The files are named after the ``schema`` value every message carries (``twin.kpi.v1.json`` …);
see ``docs/telemetry.md`` and ``docs/device-protocol.md`` for the contracts they belong to.
"""

from __future__ import annotations

import json
from functools import cache
from importlib import resources
from typing import Any

SCHEMA_IDS: dict[str, str] = {
    "meta": "twin.meta.v1",
    "status": "twin.status.v1",
    "kpi": "twin.kpi.v1",
    "telemetry": "twin.telemetry.v1",
    "event": "twin.event.v1",
}
"""Message type → the ``schema`` value its payloads carry (and its file name without ``.json``)."""

PROTOCOL_SCHEMA_IDS: dict[str, str] = {
    "round_plan": "twin.fl.round.v1",
    "inference_tick": "twin.inference.tick.v1",
    "inference_request": "twin.inference.request.v1",
    "inference_response": "twin.inference.response.v1",
    "chunks": "twin.chunks.v1",
    "model_batch": "twin.model.batch.v1",
    "split_tick": "twin.split.tick.v1",
    "split_request": "twin.split.request.v1",
    "split_response": "twin.split.response.v1",
    "classroom_request": "twin.classroom.request.v1",
    "classroom_response": "twin.classroom.response.v1",
    "diagnosis_cases": "twin.diagnosis.cases.v1",
    "diagnosis_answers": "twin.diagnosis.answers.v1",
    "diagnosis_policy": "twin.diagnosis.policy.v1",
    "food_ledger": "twin.food.ledger.v1",
    "food_plan": "twin.food.plan.v1",
    "food_forecast_tick": "twin.food.forecast.tick.v1",
    "food_forecast_request": "twin.food.forecast.request.v1",
}
"""The device protocol's JSON messages (``docs/device-protocol.md``): message type → ``schema``."""


@cache
def _load(schema_id: str) -> dict[str, Any]:
    text = resources.files(__name__).joinpath(f"{schema_id}.json").read_text(encoding="utf-8")
    document: dict[str, Any] = json.loads(text)
    return document


def load_schema(message_type: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of one message type.

    Args:
        message_type: ``meta``, ``status``, ``kpi``, ``telemetry`` or ``event``.

    Raises:
        KeyError: for an unknown message type.
    """
    known = {**SCHEMA_IDS, **PROTOCOL_SCHEMA_IDS}
    if message_type not in known:
        raise KeyError(f"unknown telemetry message type {message_type!r}; known: {sorted(known)}")
    return _load(known[message_type])


def schema_by_id(schema_id: str) -> dict[str, Any]:
    """The JSON Schema whose ``schema`` constant is ``schema_id`` (``twin.kpi.v1`` …).

    Raises:
        KeyError: no shipped schema has that id.
    """
    if schema_id not in {*SCHEMA_IDS.values(), *PROTOCOL_SCHEMA_IDS.values()}:
        raise KeyError(f"no shipped schema {schema_id!r}")
    return _load(schema_id)
