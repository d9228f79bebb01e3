"""JSON Schemas of the telemetry contract, one per message type, shipped as package data.

The files are named after the ``schema`` value every message carries (``twin.kpi.v1.json`` …);
see ``docs/telemetry.md`` for the contract they belong to.
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
    if message_type not in SCHEMA_IDS:
        raise KeyError(f"unknown telemetry message type {message_type!r}; known: {sorted(SCHEMA_IDS)}")
    return _load(SCHEMA_IDS[message_type])
