"""JSON payloads (telemetry, events, requests, manifests): compact, key-sorted, validated on the way in.

Kept apart from the tensor codec so that tools that only read telemetry (``twin watch``) never import
torch.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from typing import Any

from twin.errors import PayloadError


def encode_json(document: Mapping[str, Any]) -> bytes:
    """Compact, key-sorted JSON bytes (stable across runs)."""
    return json.dumps(document, sort_keys=True, separators=(",", ":"), allow_nan=False).encode()


def decode_json(payload: bytes, *, max_bytes: int) -> dict[str, Any]:
    """Decode a JSON object, or :class:`PayloadError` (``oversized`` / ``malformed``)."""
    if len(payload) > max_bytes:
        raise PayloadError("oversized", f"JSON payload of {len(payload)} B exceeds the {max_bytes} B limit")
    try:
        document = json.loads(payload)
    except (ValueError, RecursionError) as exc:  # bad JSON or UTF-8, a 5000-digit int, deep nesting
        raise PayloadError("malformed", f"payload is not JSON: {exc}") from exc
    if not isinstance(document, dict):
        raise PayloadError("malformed", "JSON payload is not an object")
    return document
