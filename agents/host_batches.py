"""The gate every network-side batch service puts a device host's batch through, before any state changes.

Two-stage inference, split inference, the classroom's jobs, diagnosis cases and food ledgers all receive
one JSON batch per device host and tick. Each is decoded within a size limit, its tag verified as the
host's, its schema and host checked, and it must be expected (this tick, a host of the service, not yet
received); only then does the service validate its items. Every refusal is counted by kind.
"""

from __future__ import annotations

from collections.abc import Collection, Mapping
from typing import Any, Protocol

from broker.bus import Message
from broker.json_codec import decode_json
from twin.auth import json_digest
from twin.errors import PayloadError


class BatchService(Protocol):
    """What the gate reads of a service that collects one batch per host and tick."""

    @property
    def model(self) -> Any:
        """The twin model (its bus stats and keys)."""

    @property
    def members(self) -> Mapping[str, Any]:
        """Host id → what the host holds, for the hosts the service expects batches from."""

    @property
    def tick_index(self) -> int:
        """The tick whose batches are awaited."""

    @property
    def _waiting(self) -> bool: ...

    @property
    def _batches(self) -> Collection[str]: ...


def accept_host_batch(
    service: BatchService, message: Message, *, schema: str, max_bytes: int
) -> tuple[str, dict[str, Any]] | None:
    """``(host id, document)`` of an authenticated, expected batch; ``None`` (counted) otherwise.

    Refusals, in this order: what the JSON decoder refuses (``malformed``, ``oversized``), ``forged``
    (not tagged by the topic's host), ``malformed`` (another schema or host), ``unexpected`` (no tick
    awaited, not a host of the service, another tick), ``duplicate`` (the host's batch is already here).
    """
    stats = service.model.bus.stats
    try:
        doc = decode_json(message.payload, max_bytes=max_bytes)
    except PayloadError as exc:
        stats.reject(exc.kind)
        return None
    host_id = message.topic.rsplit("/", 1)[-1]
    if not service.model.keys.verify(host_id, message.topic, json_digest(doc), doc.get("auth")):
        stats.reject("forged")
        return None
    if doc.get("schema") != schema or doc.get("host") != host_id:
        stats.reject("malformed")
        return None
    if not service._waiting or host_id not in service.members or doc.get("tick") != service.tick_index:
        stats.reject("unexpected")
        return None
    if host_id in service._batches:
        stats.reject("duplicate")
        return None
    return host_id, doc
