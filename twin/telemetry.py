"""The telemetry contract: publish a run's meta and status (retained), KPIs, agent telemetry and events.

Every payload is flat JSON carrying ``schema``, ``run_id``, ``scenario`` and, where it applies,
``agent_id``, ``step`` and ``sim_time_s`` (ARCHITECTURE.md, MQTT contract). The JSON Schema of each
message type is in :mod:`twin.schemas`; ``docs/telemetry.md`` documents the whole contract.

=========  ===========================================  ===  ========
type       topic (under ``twin/v1/{run_id}/``)          QoS  retained
=========  ===========================================  ===  ========
meta       ``meta``                                     1    yes
status     ``status`` (last will: ``aborted``)          1    yes
kpi        ``kpi``                                      1    no
telemetry  ``agents/{kind}/{agent_id}/telemetry``       0    no
event      ``agents/{kind}/{agent_id}/events``          1    no
=========  ===========================================  ===  ========
"""

from __future__ import annotations

import math
import re
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import cache
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey, Ed25519PublicKey
from cryptography.hazmat.primitives.serialization import Encoding, PublicFormat

from broker.bus import Bus
from broker.json_codec import decode_json, encode_json
from broker.topics import PREFIX, Topics
from twin.auth import json_digest, sign_document, signed_bytes
from twin.errors import ConfigError, PayloadError, TwinError
from twin.schemas import SCHEMA_IDS, load_schema

SCHEMAS = SCHEMA_IDS
"""Message type → ``schema`` value of its payloads."""

QOS = {"meta": 1, "status": 1, "kpi": 1, "telemetry": 0, "event": 1}
"""MQTT QoS each message type is published with."""

RETAINED = frozenset({"meta", "status"})
"""Message types the broker keeps for subscribers that join later."""

FINAL_STATUSES = frozenset({"finished", "stopped", "aborted"})
"""Statuses after which a run publishes nothing more."""

MAX_MESSAGE_BYTES = 1 << 20
"""Largest telemetry payload a subscriber accepts (the meta with its config is a few kB)."""

Sink = Callable[[str, Mapping[str, Any]], None]
"""Something told of every published document: ``sink(message_type, document)``."""

RUN_KEY_FILE = "run_key.pub"
"""File of the run directory holding the run's public key (hex), the one its meta and statuses verify with."""

TELEMETRY_FILE = "telemetry.parquet"
"""Table of the run directory holding every agent's telemetry samples."""

MAX_TELEMETRY_ROWS = 5_000_000
"""Telemetry samples kept for ``telemetry.parquet`` at most (later ones are counted, not kept)."""

_ENVELOPE = ("schema", "run_id", "scenario")


class RunSigner:
    """The run's Ed25519 key: signs its meta and statuses (and its last will) so a watcher can tell them.

    Random per run, made before the run connects to its broker (the last will is signed at connect
    time); only its public key leaves the process, in the meta and in ``runs/<run_id>/run_key.pub``.
    """

    def __init__(self) -> None:
        self._key = Ed25519PrivateKey.generate()
        self.public_key = self._key.public_key().public_bytes(Encoding.Raw, PublicFormat.Raw)

    def sign(self, topic: str, digest: bytes) -> str:
        """The signature (hex) over a message: its topic, a newline and its content digest."""
        return self._key.sign(signed_bytes(topic, digest)).hex()

    def save_public_key(self, run_dir: Path) -> Path:
        """Write the public key (hex) to ``run_dir/run_key.pub``; returns the file."""
        run_dir.mkdir(parents=True, exist_ok=True)
        path = run_dir / RUN_KEY_FILE
        path.write_text(self.public_key.hex() + "\n")
        return path


def load_public_key(path: Path) -> bytes:
    """A run's public key from its ``run_key.pub`` (64 hex digits).

    Raises:
        ConfigError: missing, unreadable or not a key.
    """
    try:
        text = path.read_text(encoding="utf-8").strip()
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"--key {path}: cannot read it ({exc})") from exc
    if not re.fullmatch(r"[0-9a-f]{64}", text):
        raise ConfigError(
            f"--key {path}: not a run's public key (64 hex digits, as in runs/<run_id>/{RUN_KEY_FILE})"
        )
    return bytes.fromhex(text)


def verify_document(document: Mapping[str, Any], topic: str, public_key: bytes) -> bool:
    """Whether ``document``'s ``auth`` is the signature of ``public_key``'s holder for ``topic``."""
    tag = document.get("auth")
    if not isinstance(tag, str):
        return False
    try:
        digest = json_digest(document)
        Ed25519PublicKey.from_public_bytes(public_key).verify(bytes.fromhex(tag), signed_bytes(topic, digest))
    except (InvalidSignature, ValueError, TypeError):
        return False
    return True


def json_safe(fields: Mapping[str, Any]) -> dict[str, Any]:
    """``fields`` with every non-finite float (NaN, ±inf) replaced by ``None`` (JSON ``null``)."""
    return {k: None if isinstance(v, float) and not math.isfinite(v) else v for k, v in fields.items()}


def status_document(run_id: str, scenario: str, status: str, fields: Mapping[str, Any]) -> dict[str, Any]:
    """A status document; fields given as ``None`` are left out (absent rather than null)."""
    given = {k: v for k, v in fields.items() if v is not None}
    return json_safe(
        {"schema": SCHEMAS["status"], "run_id": run_id, "scenario": scenario, "status": status, **given}
    )


def status_payload(
    run_id: str, scenario: str, status: str, *, signer: RunSigner | None = None, **fields: Any
) -> bytes:
    """A status document as bytes (also used as the MQTT last will with ``status='aborted'``).

    With ``signer``, the document carries the run's signature (``auth``) for its status topic.
    """
    document = status_document(run_id, scenario, status, fields)
    if signer is not None:
        document = sign_document(document, Topics(run_id).status, signer.sign)
    return encode_json(document)


def _column(values: list[Any]) -> pa.Array:
    """An Arrow column of ``values``; as text when the agents disagree on its type (a kind's own field)."""
    try:
        return pa.array(values)
    except (pa.ArrowInvalid, pa.ArrowTypeError):
        return pa.array([None if v is None else str(v) for v in values], type=pa.string())


def _as_text(column: pa.ChunkedArray) -> pa.Array:
    return pa.array([None if v is None else str(v) for v in column.to_pylist()], type=pa.string())


class TelemetryTable:
    """Every agent's telemetry samples of a run, kept compactly for ``telemetry.parquet``.

    Samples are gathered as rows and turned into Arrow tables every ``chunk_rows`` (a few bytes per
    value), at most :data:`MAX_TELEMETRY_ROWS` of them; the envelope (``schema``, ``run_id``,
    ``scenario``) is left out, it is the same for every row.
    """

    def __init__(self, *, chunk_rows: int = 50_000, max_rows: int = MAX_TELEMETRY_ROWS) -> None:
        self.chunk_rows = chunk_rows
        self.max_rows = max_rows
        self.rows = 0
        self.dropped = 0
        self._pending: list[dict[str, Any]] = []
        self._chunks: list[pa.Table] = []

    def append(self, document: Mapping[str, Any]) -> None:
        """Keep one sample (a telemetry document)."""
        if self.rows >= self.max_rows:
            self.dropped += 1
            return
        self.rows += 1
        self._pending.append({k: v for k, v in document.items() if k not in _ENVELOPE})
        if len(self._pending) >= self.chunk_rows:
            self._flush()

    def _flush(self) -> None:
        if self._pending:
            rows = self._pending
            columns = dict.fromkeys(key for row in rows for key in row)  # every key, in first-seen order
            self._chunks.append(pa.table({key: _column([row.get(key) for row in rows]) for key in columns}))
            self._pending = []

    def table(self) -> pa.Table:
        """Every sample kept, one row each, in publication order (columns: the union of the samples')."""
        self._flush()
        if not self._chunks:
            return pa.table({})
        try:
            return pa.concat_tables(self._chunks, promote_options="permissive")
        except (
            pa.ArrowInvalid,
            pa.ArrowTypeError,
        ):  # a field that is a number for one kind, text for another
            types: dict[str, set[pa.DataType]] = {}
            for chunk in self._chunks:
                for f in chunk.schema:
                    types.setdefault(f.name, set()).add(f.type)
            mixed = {name for name, seen in types.items() if len(seen - {pa.null()}) > 1}
            chunks = [
                pa.table(
                    {
                        n: _as_text(c) if n in mixed else c
                        for n, c in zip(t.column_names, t.columns, strict=True)
                    }
                )
                for t in self._chunks
            ]
            return pa.concat_tables(chunks, promote_options="permissive")

    def write(self, path: Path) -> None:
        """Write the samples as Parquet (an empty table when there were none)."""
        pq.write_table(self.table(), path)


class TelemetryPublisher:
    """Publishes one run's telemetry on its topic tree and hands each document to its sinks.

    Attributes:
        events: every event document published, in order (written to ``events.parquet``).
        samples: every agent telemetry sample published (written to ``telemetry.parquet``).
        sinks: callables told of every document (e.g. the Prometheus exporter).
        signer: the run's key; when set, the meta (with its public key) and statuses are signed.
    """

    def __init__(self, bus: Bus, topics: Topics, scenario: str, *, signer: RunSigner | None = None) -> None:
        self.bus = bus
        self.topics = topics
        self.scenario = scenario
        self.run_id = topics.run_id
        self.events: list[dict[str, Any]] = []
        self.samples = TelemetryTable()
        self.sinks: list[Sink] = []
        self.signer = signer

    def _signed(self, topic: str, document: dict[str, Any]) -> dict[str, Any]:
        return document if self.signer is None else sign_document(document, topic, self.signer.sign)

    def _base(self, message_type: str) -> dict[str, Any]:
        return {"schema": SCHEMAS[message_type], "run_id": self.run_id, "scenario": self.scenario}

    def _publish(self, message_type: str, topic: str, document: dict[str, Any]) -> None:
        payload = encode_json(document)
        for sink in self.sinks:
            sink(message_type, document)
        self.bus.publish(topic, payload, qos=QOS[message_type], retain=message_type in RETAINED)

    def meta(self, fields: Mapping[str, Any]) -> None:
        """Retained run description (config, seed, agents)."""
        document = json_safe({**self._base("meta"), **fields})
        if isinstance(document.get("config"), Mapping):
            document["config"] = json_safe(document["config"])
        if self.signer is not None:
            document["run_public_key"] = self.signer.public_key.hex()
        self._publish("meta", self.topics.meta, self._signed(self.topics.meta, document))

    def status(self, status: str, **fields: Any) -> None:
        """Retained run status: ``running``, then ``finished``, ``stopped`` or ``aborted``."""
        document = self._signed(
            self.topics.status, status_document(self.run_id, self.scenario, status, fields)
        )
        self._publish("status", self.topics.status, document)

    def finish(self, status: str, *, timeout_s: float = 5.0, **fields: Any) -> bool:
        """Publish the final status and wait until the broker hands it back; returns whether it did.

        A broker passes on one client's messages in order, so getting the final status back means
        everything the run published before it is on its way to subscribers. Some brokers (amqtt,
        the embedded one) drop what they have not passed on yet when the publisher disconnects.
        """
        document = self._signed(
            self.topics.status, status_document(self.run_id, self.scenario, status, fields)
        )
        try:
            self.bus.subscribe(self.topics.status)
        except TwinError:
            self._publish("status", self.topics.status, document)
            return False
        self._publish("status", self.topics.status, document)
        payload = encode_json(document)
        deadline = time.monotonic() + timeout_s
        while (left := deadline - time.monotonic()) > 0:
            if any(
                m.topic == self.topics.status and m.payload == payload for m in self.bus.poll(min(left, 0.1))
            ):
                return True
        return False

    def kpi(self, row: Mapping[str, Any]) -> None:
        """One run-level KPI record (the same row written to the Parquet output)."""
        self._publish("kpi", self.topics.kpi, json_safe({**self._base("kpi"), **row}))

    def agent(
        self, kind: str, agent_id: str, step: int, sim_time_s: float, fields: Mapping[str, Any]
    ) -> None:
        """Per-agent telemetry sample."""
        doc = {
            **self._base("telemetry"),
            "kind": kind,
            "agent_id": agent_id,
            "step": step,
            "sim_time_s": sim_time_s,
            **fields,
        }
        document = json_safe(doc)
        self.samples.append(document)
        self._publish("telemetry", self.topics.telemetry(kind, agent_id), document)

    def event(
        self, kind: str, agent_id: str, step: int, sim_time_s: float, event: str, **fields: Any
    ) -> None:
        """A discrete event (offline, straggler, round closed, escalation …)."""
        doc = json_safe(
            {
                **self._base("event"),
                "kind": kind,
                "agent_id": agent_id,
                "step": step,
                "sim_time_s": sim_time_s,
                "event": event,
                **fields,
            }
        )
        self.events.append(doc)
        self._publish("event", self.topics.events(kind, agent_id), doc)


@dataclass(frozen=True, slots=True)
class TelemetryMessage:
    """A received telemetry message: its type, where it came from and its document."""

    message_type: str
    run_id: str
    document: dict[str, Any]
    kind: str | None = None
    agent_id: str | None = None
    topic: str = ""


def subscription_filters(run_id: str = "+") -> list[str]:
    """MQTT filters for the telemetry of one run (``+``: of every run), model traffic left out."""
    root = f"{PREFIX}/{run_id}"
    return [
        f"{root}/meta",
        f"{root}/status",
        f"{root}/kpi",
        f"{root}/agents/+/+/telemetry",
        f"{root}/agents/+/+/events",
    ]


def classify_topic(topic: str) -> tuple[str, str, str | None, str | None] | None:
    """``(message_type, run_id, kind, agent_id)`` of a telemetry topic; ``None`` for any other topic."""
    parts = topic.split("/")
    if len(parts) < 4 or "/".join(parts[:2]) != PREFIX:
        return None
    run_id, rest = parts[2], parts[3:]
    if len(rest) == 1 and rest[0] in ("meta", "status", "kpi"):
        return rest[0], run_id, None, None
    if len(rest) == 4 and rest[0] == "agents" and rest[3] in ("telemetry", "events"):
        return ("telemetry" if rest[3] == "telemetry" else "event"), run_id, rest[1], rest[2]
    return None


def parse_message(topic: str, payload: bytes) -> TelemetryMessage | None:
    """Decode a message of the telemetry contract; ``None`` for other topics and empty payloads.

    An empty payload is how a retained message is deleted, so it carries no document. Every document
    is checked against its JSON Schema, and the run (and agent) it names must be those of its topic,
    so what is returned can be used without further checks. Nothing here says who sent it: see
    :func:`verify_document` for the run's signature on metas and statuses.

    Raises:
        PayloadError: the payload is not a JSON object, is too large, names another schema, does not
            validate against it, or names another run or agent than its topic.
    """
    where = classify_topic(topic)
    if where is None or not payload:
        return None
    message_type, run_id, kind, agent_id = where
    document = decode_json(payload, max_bytes=MAX_MESSAGE_BYTES)
    if document.get("schema") != SCHEMAS[message_type]:
        raise PayloadError(
            "malformed", f"{topic}: schema {document.get('schema')!r}, expected {SCHEMAS[message_type]!r}"
        )
    error = schema_error(document, load_schema(message_type))
    if error is not None:
        raise PayloadError("malformed", f"{topic}: not a valid {SCHEMAS[message_type]}: {error}")
    named = (document.get("run_id"), document.get("kind", kind), document.get("agent_id", agent_id))
    if named != (run_id, kind, agent_id):
        raise PayloadError("malformed", f"{topic}: the document names another run or agent than its topic")
    return TelemetryMessage(message_type, run_id, document, kind, agent_id, topic)


_JSON_TYPES: dict[str, Callable[[Any], bool]] = {
    "object": lambda v: isinstance(v, dict),
    "array": lambda v: isinstance(v, list),
    "string": lambda v: isinstance(v, str),
    "boolean": lambda v: isinstance(v, bool),
    "null": lambda v: v is None,
    "number": lambda v: isinstance(v, int | float) and not isinstance(v, bool),
    "integer": lambda v: (
        (isinstance(v, int) and not isinstance(v, bool)) or (isinstance(v, float) and v.is_integer())
    ),
}


@cache
def _pattern(regex: str) -> re.Pattern[str]:
    return re.compile(regex)


def schema_error(value: Any, schema: Mapping[str, Any], where: str = "") -> str | None:
    """The first way ``value`` breaks ``schema`` (``None``: it validates).

    Covers the JSON Schema keywords the shipped schemas use (``type``, ``const``, ``enum``,
    ``minimum``, ``maximum``, ``pattern``, ``required``, ``properties``, ``additionalProperties``) with
    draft 2020-12's meaning; annotations (``description``, ``format`` …) are not checked.
    """
    at = where or "document"
    types = schema.get("type")
    if types is not None:
        names = [types] if isinstance(types, str) else types
        if not any(_JSON_TYPES[name](value) for name in names):
            return f"{at}: expected {' or '.join(names)}, got {type(value).__name__}"
    if "const" in schema and value != schema["const"]:
        return f"{at}: must be {schema['const']!r}"
    if "enum" in schema and value not in schema["enum"]:
        return f"{at}: must be one of {', '.join(map(str, schema['enum']))}"
    if isinstance(value, int | float) and not isinstance(value, bool):
        if "minimum" in schema and value < schema["minimum"]:
            return f"{at}: below {schema['minimum']}"
        if "maximum" in schema and value > schema["maximum"]:
            return f"{at}: above {schema['maximum']}"
    if isinstance(value, str) and "pattern" in schema and not _pattern(schema["pattern"]).search(value):
        return f"{at}: does not match {schema['pattern']}"
    if isinstance(value, dict):
        missing = [key for key in schema.get("required", ()) if key not in value]
        if missing:
            return f"{at}: {missing[0]!r} is missing"
        properties = schema.get("properties", {})
        extra = schema.get("additionalProperties", True)
        for key, item in value.items():
            sub = properties.get(key, extra)
            if sub is False:
                return f"{at}: unexpected key {key!r}"
            if isinstance(sub, Mapping):
                error = schema_error(item, sub, f"{where}.{key}" if where else str(key))
                if error is not None:
                    return error
    return None
