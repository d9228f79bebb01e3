"""Payload codecs: model tensors as safetensors bytes (never pickle), JSON documents, chunking.

A model payload is a safetensors file whose ``__metadata__`` carries the envelope (schema, run,
round, sender, sample count, simulated time). Tensors travel as fp32, fp16 or int8 (symmetric,
per-tensor scale stored beside each tensor as ``{name}::scale``) and decode to fp32.

Payloads above the chunk limit are split into raw byte chunks described by a JSON manifest
(``n_chunks``, ``sha256``, ``total_bytes``, each chunk's ``chunk_sha256``, the sender's ``auth``) so that
brokers' packet caps (Mosquitto 2 MB, EMQX 1 MB) are never hit, a receiver can prove it has the whole
payload, and a forged chunk is refused as it arrives. Reassembly holds a bounded number of bytes
(see :class:`ChunkAssembler`).
"""

from __future__ import annotations

import hashlib
import json
import math
import time
from collections import Counter
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from broker.json_codec import decode_json, encode_json
from twin.auth import json_digest
from twin.errors import PayloadError

MODEL_SCHEMA = "twin.model.v1"
MANIFEST_SCHEMA = "twin.chunks.v1"
WireDtype = Literal["fp32", "fp16", "int8"]
_SCALE_SUFFIX = "::scale"


@dataclass(frozen=True, slots=True)
class ModelPayload:
    """A decoded model message: fp32 tensors, its string metadata, and its content digest."""

    tensors: Mapping[str, torch.Tensor]  # a dict, or a packed row's views (broker.update_batch.RowParams)
    metadata: dict[str, str]
    digest: bytes = b""  # SHA-256 of the wire tensors and the metadata without ``auth`` (content_digest)

    def meta_int(self, key: str) -> int:
        """Metadata value as int, or :class:`PayloadError` naming the key."""
        try:
            return int(self.metadata[key])
        except (KeyError, ValueError) as exc:
            raise PayloadError("malformed", f"model payload metadata {key!r} missing or not an int") from exc

    def meta_float(self, key: str) -> float:
        """Metadata value as float, or :class:`PayloadError` naming the key."""
        try:
            return float(self.metadata[key])
        except (KeyError, ValueError) as exc:
            raise PayloadError("malformed", f"model payload metadata {key!r} missing or not a float") from exc


def content_digest(tensors: Mapping[str, torch.Tensor], metadata: Mapping[str, str]) -> bytes:
    """SHA-256 of a model message's content, what its ``auth`` tag covers.

    For each tensor as it travels (wire dtype, including ``::scale`` tensors), in name order: its name,
    dtype, shape and raw little-endian bytes, each followed by a zero byte; then the metadata without
    ``auth`` as key-sorted compact JSON.
    """
    h = hashlib.sha256()
    for name in sorted(tensors):
        t = tensors[name].detach().to("cpu").contiguous()
        h.update(f"{name}\0{str(t.dtype).removeprefix('torch.')}\0{list(t.shape)}\0".encode())
        if t.numel():
            h.update(t.reshape(-1).view(torch.uint8).numpy())  # the buffer itself, no copy (0-dim too)
    h.update(encode_json({k: v for k, v in metadata.items() if k != "auth"}))
    return h.digest()


def encode_model(
    tensors: Mapping[str, torch.Tensor],
    metadata: Mapping[str, Any],
    wire_dtype: WireDtype = "fp32",
    *,
    sign: Callable[[bytes], str] | None = None,
) -> bytes:
    """Encode tensors and metadata to safetensors bytes.

    Args:
        tensors: parameter name → tensor (any float dtype, any device).
        metadata: envelope values; converted to strings.
        wire_dtype: precision on the wire.
        sign: when given, called with the :func:`content_digest`; its answer goes in metadata ``auth``.

    Returns:
        The safetensors file as bytes.
    """
    out: dict[str, torch.Tensor] = {}
    for name, tensor in tensors.items():
        if name.endswith(_SCALE_SUFFIX):
            raise ValueError(f"tensor name {name!r} may not end with {_SCALE_SUFFIX!r}")
        t = tensor.detach().to("cpu", torch.float32).contiguous()
        if wire_dtype == "fp32":
            out[name] = t
        elif wire_dtype == "fp16":
            out[name] = t.to(torch.float16)
        elif wire_dtype == "int8":
            peak = t.abs().max() if t.numel() else torch.zeros(())
            scale = peak.clamp_min(1e-12) / 127.0
            out[name] = torch.round(t / scale).clamp(-127, 127).to(torch.int8)
            out[name + _SCALE_SUFFIX] = scale.reshape(1)
        else:
            raise ValueError(f"wire_dtype must be fp32, fp16 or int8, got {wire_dtype!r}")
    meta = {"schema": MODEL_SCHEMA, "wire_dtype": wire_dtype}
    meta.update({str(k): str(v) for k, v in metadata.items() if k != "auth"})
    if sign is not None:
        meta["auth"] = sign(content_digest(out, meta))
    return bytes(st_save(out, metadata=meta))


def decode_model(
    payload: bytes, *, max_bytes: int, template: Mapping[str, torch.Tensor] | None = None
) -> ModelPayload:
    """Decode and validate safetensors bytes produced by :func:`encode_model`.

    Args:
        payload: the received bytes.
        max_bytes: payloads larger than this are rejected before parsing.
        template: when given, the tensor names and shapes must match it exactly.

    Raises:
        PayloadError: kind ``oversized`` or ``malformed`` (bad bytes, wrong schema, names or shapes
            that do not match, non-finite values).
    """
    if len(payload) > max_bytes:
        raise PayloadError("oversized", f"model payload of {len(payload)} B exceeds the {max_bytes} B limit")
    try:
        raw = st_load(bytes(payload))
        metadata = _read_metadata(payload)
    except (SafetensorError, ValueError, RuntimeError, RecursionError, AttributeError, TypeError) as exc:
        raise PayloadError("malformed", f"model payload is not valid safetensors: {exc}") from exc
    if metadata.get("schema") != MODEL_SCHEMA:
        raise PayloadError(
            "malformed", f"model payload schema {metadata.get('schema')!r} != {MODEL_SCHEMA!r}"
        )
    tensors: dict[str, torch.Tensor] = {}
    for name, tensor in raw.items():
        if name.endswith(_SCALE_SUFFIX):
            continue
        if tensor.dtype == torch.int8:
            scale = raw.get(name + _SCALE_SUFFIX)
            if scale is None or scale.numel() != 1:
                raise PayloadError("malformed", f"int8 tensor {name!r} has no single-value scale")
            tensors[name] = tensor.to(torch.float32) * scale.to(torch.float32).reshape(())
        else:
            try:
                tensors[name] = tensor.to(torch.float32)
            except (RuntimeError, TypeError) as exc:  # a dtype torch cannot make float (e.g. complex)
                raise PayloadError("malformed", f"tensor {name!r} is not a real number tensor") from exc
        if not np.isfinite(tensors[name].numpy()).all():  # numpy: torch's isfinite is far slower
            raise PayloadError("malformed", f"tensor {name!r} holds NaN or Inf")
    if template is not None:
        expected = {k: tuple(v.shape) for k, v in template.items()}
        got = {k: tuple(v.shape) for k, v in tensors.items()}
        if expected != got:
            raise PayloadError("malformed", "model payload tensors do not match the service's architecture")
    return ModelPayload(tensors, metadata, content_digest(raw, metadata))


def _read_metadata(payload: bytes) -> dict[str, str]:
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + header_len])
    meta = header.get("__metadata__") or {}
    if not isinstance(meta, dict):
        raise ValueError("__metadata__ is not an object")
    return {str(k): str(v) for k, v in meta.items()}


MAX_CHUNKS = 4096
"""Most chunks one payload is split into.

A manifest lists each chunk's SHA-256 (67 B a chunk), so it stays under :data:`MANIFEST_MAX_BYTES`
(≈ 275 kB, below every broker's packet cap) and a resend request under :data:`RESEND_MAX_BYTES`;
:func:`split_chunks` makes chunks larger than asked when needed to stay within it.
"""
MANIFEST_MAX_BYTES = 1024 + 67 * MAX_CHUNKS
"""Largest manifest accepted (JSON bytes)."""
RESEND_MAX_BYTES = 5 * MAX_CHUNKS
"""Largest resend request body accepted: every chunk index once (``4095,`` is 5 bytes)."""
_HEX = frozenset("0123456789abcdef")
_MANIFEST_FIELDS = frozenset({"schema", "n_chunks", "sha256", "total_bytes", "chunk_sha256", "auth"})


def _is_sha256_hex(value: object) -> bool:
    return isinstance(value, str) and len(value) == 64 and set(value) <= _HEX


def _is_int(value: object) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


@dataclass(frozen=True, slots=True)
class Manifest:
    """Description of a chunked payload.

    ``chunk_sha256`` (hex SHA-256 of each chunk, in index order) lets a receiver refuse a forged chunk
    the moment it arrives; ``auth`` is the sender's tag over the manifest (see :meth:`digest`). Two
    manifests are equal when they describe the same chunks, whatever their tags.
    """

    n_chunks: int
    sha256: str
    total_bytes: int
    chunk_sha256: tuple[str, ...] | None = None
    auth: str | None = field(default=None, compare=False)

    def document(self) -> dict[str, Any]:
        """The manifest as a JSON document, without ``auth``."""
        doc: dict[str, Any] = {
            "schema": MANIFEST_SCHEMA,
            "n_chunks": self.n_chunks,
            "sha256": self.sha256,
            "total_bytes": self.total_bytes,
        }
        if self.chunk_sha256 is not None:
            doc["chunk_sha256"] = list(self.chunk_sha256)
        return doc

    def digest(self) -> bytes:
        """What the ``auth`` tag covers, with the manifest's topic.

        SHA-256 of :meth:`document` as key-sorted compact JSON (``twin.auth.json_digest``).
        """
        return json_digest(self.document())

    def signed(self, auth: str) -> Manifest:
        """This manifest carrying the tag ``auth``."""
        return replace(self, auth=auth)

    def to_bytes(self) -> bytes:
        """JSON bytes of the manifest (with ``auth`` when signed)."""
        doc = self.document()
        if self.auth is not None:
            doc["auth"] = self.auth
        return encode_json(doc)

    @classmethod
    def from_bytes(cls, payload: bytes, *, max_bytes: int) -> Manifest:
        """Parse and validate a manifest, or :class:`PayloadError`.

        ``1 ≤ n_chunks ≤ min(total_bytes, MAX_CHUNKS)`` and ``total_bytes ≤ max_bytes`` (``oversized``
        otherwise), ``chunk_sha256`` (optional) names one digest per chunk, and no other field is allowed.
        """
        doc = decode_json(payload, max_bytes=MANIFEST_MAX_BYTES)
        n_chunks, sha256, total = doc.get("n_chunks"), doc.get("sha256"), doc.get("total_bytes")
        chunk_sha256, auth = doc.get("chunk_sha256"), doc.get("auth")
        if doc.get("schema") != MANIFEST_SCHEMA or not set(doc) <= _MANIFEST_FIELDS:
            raise PayloadError("malformed", f"chunk manifest is not {MANIFEST_SCHEMA} or has unknown fields")
        if not (_is_int(n_chunks) and _is_int(total) and _is_sha256_hex(sha256)):
            raise PayloadError("malformed", "chunk manifest lacks a valid n_chunks, total_bytes or sha256")
        assert isinstance(n_chunks, int) and isinstance(total, int) and isinstance(sha256, str)
        if total > max_bytes:
            raise PayloadError("oversized", f"chunked payload of {total} B exceeds {max_bytes} B")
        if n_chunks > MAX_CHUNKS:
            raise PayloadError("oversized", f"chunk manifest names {n_chunks} chunks (at most {MAX_CHUNKS})")
        if not 1 <= n_chunks <= total:
            raise PayloadError("malformed", f"chunk manifest: {n_chunks} chunks for {total} B")
        digests: tuple[str, ...] | None = None
        if chunk_sha256 is not None:
            if not isinstance(chunk_sha256, list) or len(chunk_sha256) != n_chunks:
                raise PayloadError("malformed", "chunk manifest's chunk_sha256 is not one digest per chunk")
            if not all(_is_sha256_hex(d) for d in chunk_sha256):
                raise PayloadError("malformed", "chunk manifest's chunk_sha256 holds a bad digest")
            digests = tuple(chunk_sha256)
        if auth is not None and not isinstance(auth, str):
            raise PayloadError("malformed", "chunk manifest's auth is not a string")
        return cls(n_chunks, sha256, total, digests, auth)


def split_chunks(payload: bytes, chunk_bytes: int) -> tuple[Manifest, list[bytes]]:
    """Split ``payload`` into chunks of ``chunk_bytes`` with a manifest (``chunk_sha256`` included).

    Chunks are made larger than ``chunk_bytes`` when it would take more than :data:`MAX_CHUNKS`.
    """
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes}")
    if not payload:
        raise ValueError("an empty payload is never chunked")
    size = max(chunk_bytes, math.ceil(len(payload) / MAX_CHUNKS))
    chunks = [payload[i : i + size] for i in range(0, len(payload), size)]
    digests = tuple(hashlib.sha256(c).hexdigest() for c in chunks)
    return Manifest(len(chunks), hashlib.sha256(payload).hexdigest(), len(payload), digests), chunks


@dataclass(slots=True)
class _Partial:
    sender: str
    service: str
    round_index: int
    touched: float  # clock of the last manifest or chunk taken
    manifest: Manifest | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)  # taken: the manifest vouches for them
    candidates: dict[int, dict[str, bytes]] = field(default_factory=dict)  # no manifest yet: i → sha → bytes
    held: int = 0  # bytes in chunks and candidates

    def count(self) -> int:
        return len(self.chunks) + sum(len(c) for c in self.candidates.values())


class ChunkAssembler:
    """Reassembles chunked payloads keyed by their base topic; verifies each chunk, the length and SHA-256.

    Chunks may arrive before their manifest: until it comes, every distinct chunk offered for an index is
    held as a candidate; the manifest keeps only the candidates whose SHA-256 it lists (the others are
    counted ``forged``), and after it a chunk that does not match is refused (``forged``) without
    blocking the real one. A duplicated chunk is refused (``duplicate``). A manifest without
    ``chunk_sha256`` takes the first chunk of each index, and a failed whole-payload check discards what
    was gathered so the sender can be asked again.

    Memory budget (what an attacker can make a receiver hold): chunk bytes held for one sender
    ≤ ``max_sender_bytes`` (default 2 × ``max_bytes``) and for all senders ≤ ``max_total_bytes``
    (default 4 × ``max_bytes``); at most ``max_pending_per_sender`` partial payloads per sender and
    ``max_pending`` in all; a partial nothing was added to for ``max_age_s`` is dropped, and
    :meth:`forget` drops those of past rounds. A chunk that would exceed a bound is refused
    (``chunks_dropped``), except that a chunk its manifest vouches for first evicts chunks still waiting
    for a manifest, and a manifest evicts a partial without one (or an older round's of its sender).
    Chunks dropped or expired later are counted in :attr:`dropped` (take them with :meth:`take_counts`).
    """

    def __init__(
        self,
        *,
        max_bytes: int,
        max_pending: int = 10_000,
        max_pending_per_sender: int = 64,
        max_sender_bytes: int | None = None,
        max_total_bytes: int | None = None,
        max_age_s: float = 600.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._max_bytes = max_bytes
        self._max_pending = max_pending
        self._max_pending_per_sender = max_pending_per_sender
        self.max_sender_bytes = max_sender_bytes if max_sender_bytes is not None else 2 * max_bytes
        self.max_total_bytes = max_total_bytes if max_total_bytes is not None else 4 * max_bytes
        self._max_age_s = max_age_s
        self._clock = clock
        self._partials: dict[str, _Partial] = {}
        self._sender_bytes: Counter[str] = Counter()
        self._sender_pending: Counter[str] = Counter()
        self._total = 0
        self._last_sweep = clock()
        self.dropped: Counter[str] = Counter()
        """Chunk messages let go after being held: ``forged``, ``chunks_dropped``, ``chunks_expired``."""

    @property
    def held_bytes(self) -> int:
        """Chunk bytes held now, all senders together."""
        return self._total

    def sender_bytes(self, sender: str) -> int:
        """Chunk bytes held now for ``sender``."""
        return self._sender_bytes.get(sender, 0)

    @property
    def pending(self) -> int:
        """Partial payloads held now."""
        return len(self._partials)

    def take_counts(self) -> Counter[str]:
        """The :attr:`dropped` counts since the last call."""
        counts, self.dropped = self.dropped, Counter()
        return counts

    def add_manifest(
        self,
        key: str,
        manifest: bytes | Manifest,
        *,
        sender: str = "",
        service: str = "",
        round_index: int = 0,
    ) -> bytes | None:
        """Record a manifest; returns the whole payload if all its chunks are already here.

        ``manifest`` is its bytes, or a manifest parsed (and authenticated) already.

        Raises:
            PayloadError: the manifest's, or ``chunks_dropped`` when no partial can be opened.
        """
        if not isinstance(manifest, Manifest):
            manifest = Manifest.from_bytes(manifest, max_bytes=self._max_bytes)
        self._sweep()
        partial = self._partials.get(key)
        if partial is None:
            partial = self._open(key, sender, service, round_index, manifest=True)
        elif partial.manifest == manifest:
            return None  # the same manifest again (a resend): nothing changes
        partial.touched = self._clock()
        held = list(partial.chunks.items())
        held += [(i, chunk) for i, slot in sorted(partial.candidates.items()) for chunk in slot.values()]
        partial.manifest, partial.chunks, partial.candidates = manifest, {}, {}
        for index, chunk in held:
            if (
                index < manifest.n_chunks
                and index not in partial.chunks
                and (
                    manifest.chunk_sha256 is None
                    or hashlib.sha256(chunk).hexdigest() == manifest.chunk_sha256[index]
                )
            ):
                partial.chunks[index] = chunk
            else:  # a chunk its manifest does not vouch for
                self._release(partial, len(chunk))
                self.dropped["forged"] += 1
        return self._complete(key)

    def add_chunk(
        self,
        key: str,
        index: int,
        payload: bytes,
        *,
        sender: str = "",
        service: str = "",
        round_index: int = 0,
    ) -> bytes | None:
        """Record a chunk; returns the whole payload once complete and verified.

        Raises:
            PayloadError: ``duplicate`` for a chunk already held, ``forged`` for one its manifest does
                not list, ``oversized``/``malformed`` for a chunk that cannot belong to the manifest,
                ``chunks_dropped`` when holding it would exceed the memory budget.
        """
        if len(payload) > self._max_bytes:
            raise PayloadError(
                "oversized", f"chunk of {len(payload)} B exceeds the {self._max_bytes} B limit"
            )
        if not 0 <= index < MAX_CHUNKS:
            raise PayloadError("malformed", f"chunk index {index} beyond the {MAX_CHUNKS} chunk limit")
        self._sweep()
        partial = self._partials.get(key)
        if partial is None:
            partial = self._open(key, sender, service, round_index, manifest=False)
        digest = hashlib.sha256(payload).hexdigest()
        manifest = partial.manifest
        try:
            if manifest is not None:
                self._check_against(manifest, partial, key, index, digest, len(payload))
                self._reserve(partial, len(payload), vouched=True)
                partial.chunks[index] = bytes(payload)
            else:
                if digest in partial.candidates.get(index, {}):
                    raise PayloadError("duplicate", f"chunk {index} of {key} received twice")
                self._reserve(partial, len(payload), vouched=False)
                partial.candidates.setdefault(index, {})[digest] = bytes(payload)
        finally:
            if partial.manifest is None and not partial.candidates:
                self._remove(key)
        partial.touched = self._clock()
        return self._complete(key)

    @staticmethod
    def _check_against(
        manifest: Manifest, partial: _Partial, key: str, index: int, digest: str, size: int
    ) -> None:
        if index >= manifest.n_chunks:
            raise PayloadError("malformed", f"chunk index {index} beyond n_chunks={manifest.n_chunks}")
        if manifest.chunk_sha256 is not None and digest != manifest.chunk_sha256[index]:
            raise PayloadError("forged", f"chunk {index} of {key} does not match its manifest")
        if index in partial.chunks:
            raise PayloadError("duplicate", f"chunk {index} of {key} received twice")
        if partial.held + size > manifest.total_bytes:
            raise PayloadError("malformed", f"chunks of {key} exceed total_bytes={manifest.total_bytes}")

    def missing(self, key: str) -> list[int] | None:
        """Indices still missing for ``key``; ``None`` when even the manifest is missing."""
        partial = self._partials.get(key)
        if partial is None or partial.manifest is None:
            return None
        return [i for i in range(partial.manifest.n_chunks) if i not in partial.chunks]

    def discard(self, key: str) -> None:
        """Forget everything gathered for ``key``."""
        if key in self._partials:
            self._remove(key)

    def forget(self, before_round: int, *, service: str | None = None) -> int:
        """Drop partials of rounds before ``before_round`` (of ``service`` only, when given).

        Their chunks are counted ``chunks_expired``; returns how many partials were dropped.
        """
        stale = [
            k
            for k, p in self._partials.items()
            if p.round_index < before_round and (service is None or p.service == service)
        ]
        for key in stale:
            self.dropped["chunks_expired"] += self._partials[key].count()
            self._remove(key)
        return len(stale)

    # ---- bookkeeping -------------------------------------------------------------------------------
    def _open(self, key: str, sender: str, service: str, round_index: int, *, manifest: bool) -> _Partial:
        """A new partial for ``key``; a manifest may evict another partial to make room."""
        sender_full = self._sender_pending[sender] >= self._max_pending_per_sender
        if manifest and (sender_full or len(self._partials) >= self._max_pending):
            victims = [
                k
                for k, p in self._partials.items()
                if p.manifest is None and (not sender_full or p.sender == sender)
            ]
            if not victims and sender_full:
                older = [(p.round_index, k) for k, p in self._partials.items() if p.sender == sender]
                victims = [min(older)[1]] if older and min(older)[0] < round_index else []
            if victims:
                victim = min(victims, key=lambda k: self._partials[k].touched)
                self.dropped["chunks_dropped"] += self._partials[victim].count()
                self._remove(victim)
        if self._sender_pending[sender] >= self._max_pending_per_sender:
            raise PayloadError(
                "chunks_dropped", f"{sender!r} has {self._max_pending_per_sender} payloads pending"
            )
        if len(self._partials) >= self._max_pending:
            raise PayloadError("chunks_dropped", f"more than {self._max_pending} chunked payloads pending")
        partial = _Partial(sender, service, round_index, self._clock())
        self._partials[key] = partial
        self._sender_pending[sender] += 1
        return partial

    def _reserve(self, partial: _Partial, size: int, *, vouched: bool) -> None:
        """Count ``size`` more bytes for ``partial``, or ``chunks_dropped`` if over the budget."""
        sender = partial.sender
        if vouched:  # a chunk its manifest lists goes before chunks that still wait for a manifest
            self._evict_candidates(self._sender_bytes[sender] + size - self.max_sender_bytes, sender)
            self._evict_candidates(self._total + size - self.max_total_bytes, None)
        if (
            self._sender_bytes[sender] + size > self.max_sender_bytes
            or self._total + size > self.max_total_bytes
        ):
            raise PayloadError(
                "chunks_dropped",
                f"holding {size} B more for {sender!r} exceeds the chunk memory budget "
                f"({self.max_sender_bytes} B a sender, {self.max_total_bytes} B in all)",
            )
        partial.held += size
        self._sender_bytes[sender] += size
        self._total += size

    def _evict_candidates(self, need: int, sender: str | None) -> None:
        """Free at least ``need`` bytes of partials without a manifest (of ``sender``), oldest first."""
        if need <= 0:
            return
        victims = sorted(
            (p.touched, k)
            for k, p in self._partials.items()
            if p.manifest is None and (sender is None or p.sender == sender)
        )
        for _, key in victims:
            if need <= 0:
                return
            need -= self._partials[key].held
            self.dropped["chunks_dropped"] += self._partials[key].count()
            self._remove(key)

    def _release(self, partial: _Partial, size: int) -> None:
        partial.held -= size
        self._total -= size
        self._sender_bytes[partial.sender] -= size
        if self._sender_bytes[partial.sender] <= 0:
            del self._sender_bytes[partial.sender]

    def _remove(self, key: str) -> None:
        partial = self._partials.pop(key)
        self._release(partial, partial.held)
        self._sender_pending[partial.sender] -= 1
        if self._sender_pending[partial.sender] <= 0:
            del self._sender_pending[partial.sender]

    def _sweep(self) -> None:
        """Drop partials nothing was added to for ``max_age_s`` (looked at most once a second)."""
        now = self._clock()
        if now - self._last_sweep < 1.0:
            return
        self._last_sweep = now
        for key in [k for k, p in self._partials.items() if now - p.touched > self._max_age_s]:
            self.dropped["chunks_expired"] += self._partials[key].count()
            self._remove(key)

    def _complete(self, key: str) -> bytes | None:
        partial = self._partials[key]
        manifest = partial.manifest
        if manifest is None or len(partial.chunks) < manifest.n_chunks:
            return None
        payload = b"".join(partial.chunks[i] for i in range(manifest.n_chunks))
        self._remove(key)
        if len(payload) != manifest.total_bytes or hashlib.sha256(payload).hexdigest() != manifest.sha256:
            raise PayloadError("malformed", f"chunked payload {key} failed its length/SHA-256 check")
        return payload
