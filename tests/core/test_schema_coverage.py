"""Every message kind the code names has its JSON Schema shipped (a new kind without one fails here)."""

from __future__ import annotations

import re
from pathlib import Path

from twin.schemas import PROTOCOL_SCHEMA_IDS, SCHEMA_IDS, schema_by_id

ROOT = Path(__file__).parents[2]
NOT_ON_THE_WIRE = {"twin.credentials.v1"}  # a file handed to a device, not a message
"""Schema ids the code names that are not MQTT messages (safetensors models carry twin.model.v1 inside)."""


def test_every_schema_id_in_the_code_is_shipped_and_registered() -> None:
    pattern = re.compile(r'"(twin\.[a-z_.]+\.v[0-9]+)"')
    named = {
        match
        for package in ("agents", "broker", "twin", "usecases")
        for path in (ROOT / package).rglob("*.py")
        for match in pattern.findall(path.read_text(encoding="utf-8"))
    }
    assert "twin.inference.request.v1" in named  # the scan finds what it should
    registered = set(SCHEMA_IDS.values()) | set(PROTOCOL_SCHEMA_IDS.values())
    missing = sorted(s for s in named - NOT_ON_THE_WIRE - {"twin.model.v1"} if s not in registered)
    assert not missing, f"no schema registered for {missing}"
    for schema_id in registered:
        assert schema_by_id(schema_id)["properties"]["schema"]["const"] == schema_id
