"""Model exchange over the bus: send tensors whole or chunked, reassemble, validate, dedupe, resend.

Every rejected message (malformed, oversized, unknown topic, replayed, forged, over the chunk memory
budget) is logged and counted in ``bus.stats`` and never raises out of :meth:`ModelExchange.receive`, so
a hostile or broken publisher cannot crash or corrupt a run.

Chunked payloads: the manifest carries the sender's tag over ``{model topic}/manifest`` and the
manifest's JSON digest (``twin.auth.json_digest``, without ``auth``), checked by the same verifier as
the model before the manifest changes anything; it lists each chunk's SHA-256, so forged chunks are
refused as they arrive. What is held while reassembling is bounded per sender and in all (see
:class:`broker.codec.ChunkAssembler`).
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from broker.bus import Bus, Message
from broker.codec import (
    MAX_CHUNKS,
    RESEND_MAX_BYTES,
    ChunkAssembler,
    Manifest,
    ModelPayload,
    WireDtype,
    decode_model,
    encode_model,
    split_chunks,
)
from broker.topics import ModelTopic, Topics, batch_host, parse_model_topic
from broker.update_batch import DecodedBatch, Layout, decode_update_batch, encode_update_batch
from twin.errors import PayloadError
from twin.parallel import map_shards, shard_bounds

log = logging.getLogger(__name__)

NETWORK = "network"
MAX_RESENDS = 4
"""Times one sent payload is published again on request (resends back off: 2, 4, 8, 16 s of waiting)."""
Signer = Callable[[str, str, bytes], str]
"""(sender, topic, content digest) → tag."""
Verifier = Callable[[str, str, bytes, object], bool]
"""(sender, topic, content digest, tag) → whether the tag is the sender's."""
Encoder = Callable[[Mapping[str, torch.Tensor], Mapping[str, Any], Callable[[bytes], str] | None], bytes]
"""(tensors, metadata, sign) → the payload, for a model that travels otherwise than :func:`encode_model`
writes it (e.g. in mixed dtypes); ``sign`` (when given) is called with the content digest."""


@dataclass(frozen=True, slots=True)
class ReceivedModel:
    """A complete, validated model message."""

    kind: str  # "global" or "update"
    service: str
    round_index: int
    agent_id: str | None
    payload: ModelPayload
    row: torch.Tensor | None = None
    """The update's values as one row (names sorted, row-major), when it came packed."""


@dataclass(frozen=True, slots=True)
class ReceivedBatch:
    """The verified, finite, first-seen rows of a host's packed updates (refused rows are counted)."""

    service: str
    round_index: int
    host: str
    updates: list[tuple[str, torch.Tensor]]  # (device, its row), in batch order
    layout: Layout

    def as_models(self) -> list[ReceivedModel]:
        """Each row as the update its device would have sent alone (its tensors views of the row)."""
        return [
            ReceivedModel(
                "update",
                self.service,
                self.round_index,
                agent_id,
                ModelPayload(self.layout.views(row), {}),
                row,
            )
            for agent_id, row in self.updates
        ]


@dataclass(frozen=True, slots=True)
class ResendRequest:
    """A receiver asks ``agent_id`` to publish again the chunks it is missing."""

    service: str
    round_index: int
    agent_id: str
    chunks: tuple[int, ...] | None  # None: everything, including the manifest


class ModelExchange:
    """Publishes and receives model tensors for one run.

    Memory budget of reassembly: held chunk bytes ≤ 2 × ``max_payload_bytes`` per sender (the topic's
    device, or ``network``) and ≤ 4 × ``max_payload_bytes`` in all, at most 64 partial payloads per sender
    and 10,000 in all; partials of past rounds (:meth:`forget_received`) or idle for 10 minutes are dropped.
    """

    def __init__(
        self,
        bus: Bus,
        topics: Topics,
        *,
        chunk_bytes: int,
        max_payload_bytes: int,
        wire_dtype: WireDtype = "fp32",
        signer: Signer | None = None,
        verifier: Verifier | None = None,
    ) -> None:
        self.bus = bus
        self.signer = signer
        self.verifier = verifier
        self.topics = topics
        self.chunk_bytes = chunk_bytes
        self.max_payload_bytes = max_payload_bytes
        self.wire_dtype: WireDtype = wire_dtype
        self._assembler = ChunkAssembler(max_bytes=max_payload_bytes)
        self._delivered: set[tuple[str, str, int, str | None]] = set()
        self._sent: dict[str, tuple[bytes, list[bytes]]] = {}
        self._resends: dict[str, int] = {}
        self._templates: dict[str, Mapping[str, torch.Tensor]] = {}
        self._layouts: dict[str, Layout] = {}
        self._predecoded: dict[tuple[str, int], tuple[bytes, DecodedBatch | PayloadError]] = {}

    def register_template(self, service: str, template: Mapping[str, torch.Tensor]) -> None:
        """Tensor names and shapes every model of ``service`` must have."""
        self._templates[service] = {k: v.detach() for k, v in template.items()}
        self._layouts[service] = Layout.of(template)

    def layout(self, service: str) -> Layout:
        """How one device's parameters of ``service`` lie in a packed row (KeyError: no template)."""
        return self._layouts[service]

    def payload_bytes(self, tensors: Mapping[str, torch.Tensor]) -> int:
        """Size in bytes of ``tensors`` as this exchange encodes them (with a typical envelope)."""
        envelope = {"round": 0, "service": "s", "agent_id": "a" * 8, "n_samples": 0, "sim_time_s": 0.0}
        return len(encode_model(tensors, envelope, self.wire_dtype))

    def send(
        self,
        topic: str,
        tensors: Mapping[str, torch.Tensor],
        metadata: Mapping[str, Any],
        *,
        retain: bool = False,
        encoder: Encoder | None = None,
    ) -> int:
        """Publish a model on ``topic`` (chunked above the limit); returns the payload size in bytes.

        With a signer, the payload's metadata carries ``auth``: the sender's tag over the topic and the
        content digest (the sender is the topic's device, or ``network`` for a global model). ``encoder``
        replaces :func:`encode_model` at this exchange's wire dtype; its payload must decode with
        :func:`decode_model`.
        """
        sign = None
        if self.signer is not None:
            signer, sender = self.signer, _sender(self.topics, topic)
            sign = lambda digest: signer(sender, topic, digest)  # noqa: E731
        if encoder is None:
            payload = encode_model(tensors, metadata, self.wire_dtype, sign=sign)
        else:
            payload = encoder(tensors, metadata, sign)
        return self._publish_payload(topic, payload, retain=retain)

    def send_batch(
        self,
        service: str,
        round_index: int,
        batch_id: str,
        rows: torch.Tensor,
        agents: list[str],
        *,
        sign: Signer,
    ) -> int:
        """Publish devices' packed updates (``rows``: ``(K, P)`` in the service's layout); returns bytes.

        ``sign(agent_id, that device's update topic, row_digest)`` is each device's own tag; a chunked
        batch's manifest is signed by the host (``batch_id``'s host) with this exchange's signer.
        """
        topic, payload = self.encode_batch(service, round_index, batch_id, rows, agents, sign=sign)
        return self.publish_encoded(topic, payload)

    def encode_batch(
        self,
        service: str,
        round_index: int,
        batch_id: str,
        rows: torch.Tensor,
        agents: list[str],
        *,
        sign: Signer,
    ) -> tuple[str, bytes]:
        """The topic and payload :meth:`send_batch` would publish (pure: safe on any thread)."""
        payload = encode_update_batch(
            rows,
            agents,
            layout=self._layouts[service],
            service=service,
            round_index=round_index,
            host=batch_host(batch_id),
            wire_dtype=self.wire_dtype,
            sign=lambda agent_id, digest: sign(
                agent_id, self.topics.update(service, round_index, agent_id), digest
            ),
        )
        return self.topics.update_batch(service, round_index, batch_id), payload

    def publish_encoded(self, topic: str, payload: bytes) -> int:
        """Publish a payload of :meth:`encode_batch` (chunked above the limit, kept for resends)."""
        return self._publish_payload(topic, payload)

    def _publish_payload(self, topic: str, payload: bytes, *, retain: bool = False) -> int:
        """Publish an encoded payload whole, or as a (signed) manifest and chunks; keep it for resends."""
        if len(payload) <= self.chunk_bytes:
            self.bus.publish(topic, payload, qos=1, retain=retain)
            self._sent[topic] = (payload, [])
            return len(payload)
        manifest, chunks = split_chunks(payload, self.chunk_bytes)
        if self.signer is not None:
            manifest_topic = f"{topic}/manifest"
            manifest = manifest.signed(
                self.signer(_sender(self.topics, topic), manifest_topic, manifest.digest())
            )
        self._sent[topic] = (manifest.to_bytes(), chunks)
        self.bus.publish(f"{topic}/manifest", manifest.to_bytes(), qos=1, retain=retain)
        for i, chunk in enumerate(chunks):
            self.bus.publish(f"{topic}/chunk/{i}", chunk, qos=1, retain=retain)
        return len(payload)

    def resend(self, topic: str, chunks: tuple[int, ...] | None) -> bool:
        """Publish again (part of) what was sent on ``topic``; False if nothing was sent there."""
        sent = self._sent.get(topic)
        if sent is None:
            return False
        count = self._resends.get(topic, 0)
        if count >= MAX_RESENDS:  # resend requests are not authenticated: never an amplifier
            self.bus.stats.reject("resend_refused")
            return True
        self._resends[topic] = count + 1
        head, parts = sent
        if not parts:
            self.bus.publish(topic, head, qos=1)
            return True
        if chunks is None:
            self.bus.publish(f"{topic}/manifest", head, qos=1)
        for i in sorted(set(chunks)) if chunks is not None else range(len(parts)):
            if 0 <= i < len(parts):
                self.bus.publish(f"{topic}/chunk/{i}", parts[i], qos=1)
        return True

    def forget_sent(self, round_index: int, *, service: str | None = None) -> None:
        """Drop kept payloads of rounds before ``round_index`` (of ``service`` when given).

        They can no longer be asked for. Services run their rounds independently (one per cluster, say),
        so a service that ends its round 5 must not drop another's round-3 payloads.
        """
        for topic in [t for t in self._sent if _sent_before(self.topics, t, round_index, service)]:
            del self._sent[topic]
            self._resends.pop(topic, None)

    def forget_received(self, round_index: int, *, service: str | None = None) -> None:
        """Drop partly received payloads of rounds before ``round_index`` (of ``service`` when given).

        Their chunks are counted ``rejected_chunks_expired``.
        """
        self._assembler.forget(round_index, service=service)
        self._count_dropped()

    @property
    def assembler(self) -> ChunkAssembler:
        """The reassembly state of chunked payloads received (read it, e.g. ``held_bytes``)."""
        return self._assembler

    def request_resend(self, service: str, round_index: int, agent_id: str) -> None:
        """Ask ``agent_id`` for the chunks of its update that have not arrived (≤ MAX_CHUNKS indices)."""
        key = self.topics.update(service, round_index, agent_id)
        missing = self._assembler.missing(key)
        body = b"*" if missing is None else ",".join(str(i) for i in missing).encode()
        self.bus.publish(self.topics.resend(service, round_index, agent_id), body, qos=1)

    def receive(self, message: Message) -> ReceivedModel | ReceivedBatch | ResendRequest | None:
        """Handle one message under ``…/ml/``; returns a complete model, a resend request, or None."""
        parsed = parse_model_topic(self.topics, message.topic)
        if parsed is None:
            self._reject("unknown", message.topic, "not a model topic of this run")
            return None
        if parsed.kind == "select":
            self._reject("unknown", message.topic, "round plans are for device hosts")
            return None
        try:
            if parsed.kind == "resend":
                return _parse_resend(parsed, message.payload)
            return self._receive_model(parsed, message)
        except PayloadError as exc:
            self._reject(exc.kind, message.topic, str(exc))
            return None
        finally:
            self._count_dropped()

    def predecode(self, messages: Sequence[Message]) -> None:
        """Decode the packed batches among ``messages`` ahead of :meth:`receive`, on parallel threads.

        Parsing a batch and hashing its rows (most of receiving it) is pure, and hashing releases the
        interpreter lock, so a pump that drains many batches decodes them in shards first. Only the
        structure is decoded here: tags, duplicates and every state change stay in :meth:`receive`, in
        the messages' order. Call :meth:`clear_predecoded` once the messages are handled.
        """
        todo: list[tuple[bytes, ModelTopic, str]] = []
        for message in messages:
            if "/updates/" not in message.topic:  # most of a pump's messages: not worth parsing here
                continue
            parsed = parse_model_topic(self.topics, message.topic)
            if (
                parsed is not None
                and parsed.kind == "updates"
                and parsed.part == "whole"
                and parsed.service in self._layouts
            ):
                todo.append((message.payload, parsed, message.topic))
        if len(todo) < 2:
            return

        def decode(a: int, b: int) -> list[DecodedBatch | PayloadError]:
            out: list[DecodedBatch | PayloadError] = []
            for payload, parsed, _ in todo[a:b]:
                try:
                    out.append(self._decode_batch(parsed.service, parsed.round_index, payload))
                except PayloadError as exc:
                    out.append(exc)
            return out

        shards = map_shards(decode, shard_bounds(len(todo), min_shard=2))
        results = [r for shard in shards for r in shard]
        # Keyed by topic and payload object: the same bytes may come again under another topic (a
        # re-labelled replay), whose service and round the decoding checks.
        self._predecoded = {(t, id(p)): (p, r) for (p, _, t), r in zip(todo, results, strict=True)}

    def clear_predecoded(self) -> None:
        """Forget what :meth:`predecode` decoded (its messages are handled)."""
        self._predecoded = {}

    def _decode_batch(self, service: str, round_index: int, payload: bytes) -> DecodedBatch:
        layout = self._layouts.get(service)
        if layout is None:
            raise PayloadError(
                "unknown", f"packed updates of {service!r}, a service with no architecture here"
            )
        return decode_update_batch(
            payload, max_bytes=self.max_payload_bytes, layout=layout, service=service, round_index=round_index
        )

    def _receive_model(self, parsed: ModelTopic, message: Message) -> ReceivedModel | ReceivedBatch | None:
        service, round_index = parsed.service, parsed.round_index
        if parsed.kind == "updates" and parsed.agent_id is not None:
            key = self.topics.update_batch(service, round_index, parsed.agent_id)
            sender = batch_host(parsed.agent_id)
        elif parsed.kind == "update" and parsed.agent_id is not None:
            key = self.topics.update(service, round_index, parsed.agent_id)
            sender = parsed.agent_id
        else:
            key = self.topics.global_model(service, round_index)
            sender = NETWORK
        ident = (parsed.kind, service, round_index, parsed.agent_id)
        if parsed.kind != "updates" and ident in self._delivered:
            raise PayloadError("duplicate", "model message already delivered (replayed or re-sent)")
        if parsed.part == "whole":
            payload: bytes | None = message.payload
        elif parsed.part == "manifest":
            manifest = Manifest.from_bytes(message.payload, max_bytes=self.max_payload_bytes)
            manifest_topic = f"{key}/manifest"
            if self.verifier is not None and not self.verifier(
                sender, manifest_topic, manifest.digest(), manifest.auth
            ):
                raise PayloadError("forged", f"chunk manifest not authenticated as {sender}")
            payload = self._assembler.add_manifest(
                key, manifest, sender=sender, service=service, round_index=round_index
            )
        else:
            assert parsed.chunk_index is not None
            payload = self._assembler.add_chunk(
                key,
                parsed.chunk_index,
                message.payload,
                sender=sender,
                service=service,
                round_index=round_index,
            )
        if payload is None:
            return None
        if parsed.kind == "updates":
            return self._receive_batch(service, round_index, payload, message.topic)
        model = decode_model(
            payload, max_bytes=self.max_payload_bytes, template=self._templates.get(parsed.service)
        )
        if model.metadata.get("round") != str(parsed.round_index) or (
            parsed.agent_id is not None and model.metadata.get("agent_id") != parsed.agent_id
        ):
            raise PayloadError("malformed", "model metadata does not match its topic (round or sender)")
        tag = model.metadata.get("auth")
        if self.verifier is not None and not self.verifier(sender, key, model.digest, tag):
            raise PayloadError("forged", f"model message not authenticated as {sender}")
        self._delivered.add(ident)
        return ReceivedModel(parsed.kind, parsed.service, parsed.round_index, parsed.agent_id, model)

    def _receive_batch(
        self, service: str, round_index: int, payload: bytes, batch_topic: str
    ) -> ReceivedBatch:
        """Decode a packed payload; keep the rows whose device's tag verifies, finite and first seen."""
        ahead = self._predecoded.pop((batch_topic, id(payload)), None)
        if ahead is not None and ahead[0] is payload:
            if isinstance(ahead[1], PayloadError):
                raise ahead[1]
            batch = ahead[1]
        else:
            batch = self._decode_batch(service, round_index, payload)
        layout = self._layouts[service]
        accepted: list[tuple[str, torch.Tensor]] = []
        for row in batch.rows:
            ident = ("update", service, round_index, row.agent_id)
            topic = self.topics.update(service, round_index, row.agent_id)
            if self.verifier is not None and not self.verifier(row.agent_id, topic, row.digest, row.tag):
                self._reject("forged", topic, f"packed row not authenticated as {row.agent_id}")
            elif ident in self._delivered:
                self._reject("duplicate", topic, "update already delivered (replayed or re-sent)")
            elif not row.finite:
                self._reject("malformed", topic, "packed row holds NaN or Inf")
            else:
                self._delivered.add(ident)
                accepted.append((row.agent_id, row.params))
        return ReceivedBatch(service, round_index, batch.host, accepted, layout)

    def _count_dropped(self) -> None:
        """Count the held chunks the assembler let go (forged, over a bound, expired)."""
        for kind, n in self._assembler.take_counts().items():
            self.bus.stats.rejected[kind] += n

    def _reject(self, kind: str, topic: str, why: str) -> None:
        self.bus.stats.reject(kind)
        log.warning("rejected %s message on %s: %s", kind, topic, why)


def _parse_resend(parsed: ModelTopic, body: bytes) -> ResendRequest:
    """``*`` or comma-separated chunk indices (each < MAX_CHUNKS; sorted, each once)."""
    assert parsed.agent_id is not None
    if body == b"*":
        return ResendRequest(parsed.service, parsed.round_index, parsed.agent_id, None)
    if len(body) > RESEND_MAX_BYTES:
        raise PayloadError("oversized", f"resend request of {len(body)} B exceeds {RESEND_MAX_BYTES} B")
    parts = body.split(b",")
    if not all(p.isdigit() and len(p) <= 4 for p in parts if p):  # bytes.isdigit: ASCII digits only
        raise PayloadError("malformed", "resend request is not a list of chunk indices")
    chunks = sorted({int(p) for p in parts if p})
    if chunks and chunks[-1] >= MAX_CHUNKS:
        raise PayloadError("malformed", f"resend request names a chunk index ≥ {MAX_CHUNKS}")
    return ResendRequest(parsed.service, parsed.round_index, parsed.agent_id, tuple(chunks))


def _sent_before(topics: Topics, topic: str, round_index: int, service: str | None) -> bool:
    parsed = parse_model_topic(topics, topic)
    if parsed is None:
        return True
    return parsed.round_index < round_index and (service is None or parsed.service == service)


def _sender(topics: Topics, topic: str) -> str:
    parsed = parse_model_topic(topics, topic)
    if parsed is not None and parsed.kind == "update" and parsed.agent_id is not None:
        return parsed.agent_id
    if parsed is not None and parsed.kind == "updates" and parsed.agent_id is not None:
        return batch_host(parsed.agent_id)
    return NETWORK
