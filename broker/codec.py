"""Payload codecs: model tensors as safetensors bytes (never pickle), JSON documents, chunking.

A model payload is a safetensors file whose ``__metadata__`` carries the envelope (schema, run,
round, sender, sample count, simulated time). Tensors travel as fp32, fp16 or int8 (symmetric,
per-tensor scale stored beside each tensor as ``{name}::scale``) and decode to fp32.

Payloads above the chunk limit are split into raw byte chunks described by a JSON manifest
(``n_chunks``, ``sha256``, ``total_bytes``) so that brokers' packet caps (Mosquitto 2 MB, EMQX 1 MB)
are never hit and a receiver can prove it has the whole payload.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from typing import Any, Literal

import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from broker.json_codec import decode_json, encode_json
from twin.errors import PayloadError

MODEL_SCHEMA = "twin.model.v1"
MANIFEST_SCHEMA = "twin.chunks.v1"
WireDtype = Literal["fp32", "fp16", "int8"]
_SCALE_SUFFIX = "::scale"


@dataclass(frozen=True, slots=True)
class ModelPayload:
    """A decoded model message: fp32 tensors, its string metadata, and its content digest."""

    tensors: dict[str, torch.Tensor]
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
            h.update(t.view(torch.uint8).numpy())  # the buffer itself, no copy
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
            scale = t.abs().max().clamp_min(1e-12) / 127.0
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
    except (SafetensorError, ValueError, RuntimeError, json.JSONDecodeError) as exc:
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
            if scale is None:
                raise PayloadError("malformed", f"int8 tensor {name!r} has no scale")
            tensors[name] = tensor.to(torch.float32) * scale.to(torch.float32)
        else:
            tensors[name] = tensor.to(torch.float32)
        if not torch.isfinite(tensors[name]).all():
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


@dataclass(frozen=True, slots=True)
class Manifest:
    """Description of a chunked payload."""

    n_chunks: int
    sha256: str
    total_bytes: int

    def to_bytes(self) -> bytes:
        """JSON bytes of the manifest."""
        return encode_json(
            {
                "schema": MANIFEST_SCHEMA,
                "n_chunks": self.n_chunks,
                "sha256": self.sha256,
                "total_bytes": self.total_bytes,
            }
        )

    @classmethod
    def from_bytes(cls, payload: bytes, *, max_bytes: int) -> Manifest:
        """Parse and validate a manifest, or :class:`PayloadError`."""
        doc = decode_json(payload, max_bytes=4096)
        try:
            manifest = cls(int(doc["n_chunks"]), str(doc["sha256"]), int(doc["total_bytes"]))
        except (KeyError, TypeError, ValueError) as exc:
            raise PayloadError("malformed", f"chunk manifest lacks a valid field: {exc}") from exc
        if doc.get("schema") != MANIFEST_SCHEMA or manifest.n_chunks < 1 or len(manifest.sha256) != 64:
            raise PayloadError("malformed", "chunk manifest has a wrong schema, chunk count or digest")
        if manifest.total_bytes > max_bytes:
            raise PayloadError(
                "oversized", f"chunked payload of {manifest.total_bytes} B exceeds {max_bytes} B"
            )
        return manifest


def split_chunks(payload: bytes, chunk_bytes: int) -> tuple[Manifest, list[bytes]]:
    """Split ``payload`` into chunks of at most ``chunk_bytes`` with a manifest."""
    if chunk_bytes <= 0:
        raise ValueError(f"chunk_bytes must be > 0, got {chunk_bytes}")
    n_chunks = max(1, math.ceil(len(payload) / chunk_bytes))
    chunks = [payload[i * chunk_bytes : (i + 1) * chunk_bytes] for i in range(n_chunks)]
    return Manifest(n_chunks, hashlib.sha256(payload).hexdigest(), len(payload)), chunks


@dataclass(slots=True)
class _Partial:
    manifest: Manifest | None = None
    chunks: dict[int, bytes] = field(default_factory=dict)


class ChunkAssembler:
    """Reassembles chunked payloads keyed by their base topic; verifies length and SHA-256.

    Chunks may arrive before their manifest. Duplicated chunks are ignored (and reported), a digest
    mismatch discards what was gathered so the sender can be asked again.
    """

    def __init__(self, *, max_bytes: int, max_pending: int = 10_000) -> None:
        self._max_bytes = max_bytes
        self._max_pending = max_pending
        self._partials: dict[str, _Partial] = {}

    def add_manifest(self, key: str, payload: bytes) -> bytes | None:
        """Record a manifest; returns the whole payload if all chunks are already here."""
        manifest = Manifest.from_bytes(payload, max_bytes=self._max_bytes)
        partial = self._partial(key)
        if partial.manifest is not None and partial.manifest != manifest:
            self._partials[key] = partial = _Partial()
        partial.manifest = manifest
        return self._complete(key)

    def add_chunk(self, key: str, index: int, payload: bytes) -> bytes | None:
        """Record a chunk; returns the whole payload once complete and verified.

        Raises:
            PayloadError: ``duplicate`` for a chunk already held, ``oversized``/``malformed`` for a
                chunk that cannot belong to the manifest.
        """
        partial = self._partial(key)
        if index in partial.chunks:
            raise PayloadError("duplicate", f"chunk {index} of {key} received twice")
        if partial.manifest is not None and index >= partial.manifest.n_chunks:
            raise PayloadError(
                "malformed", f"chunk index {index} beyond n_chunks={partial.manifest.n_chunks}"
            )
        if len(payload) > self._max_bytes:
            raise PayloadError(
                "oversized", f"chunk of {len(payload)} B exceeds the {self._max_bytes} B limit"
            )
        partial.chunks[index] = bytes(payload)
        return self._complete(key)

    def missing(self, key: str) -> list[int] | None:
        """Indices still missing for ``key``; ``None`` when even the manifest is missing."""
        partial = self._partials.get(key)
        if partial is None or partial.manifest is None:
            return None
        return [i for i in range(partial.manifest.n_chunks) if i not in partial.chunks]

    def discard(self, key: str) -> None:
        """Forget everything gathered for ``key``."""
        self._partials.pop(key, None)

    def _partial(self, key: str) -> _Partial:
        if key not in self._partials and len(self._partials) >= self._max_pending:
            raise PayloadError("oversized", f"more than {self._max_pending} chunked payloads pending")
        return self._partials.setdefault(key, _Partial())

    def _complete(self, key: str) -> bytes | None:
        partial = self._partials[key]
        manifest = partial.manifest
        if manifest is None or len(partial.chunks) < manifest.n_chunks:
            return None
        payload = b"".join(partial.chunks[i] for i in range(manifest.n_chunks))
        del self._partials[key]
        if len(payload) != manifest.total_bytes or hashlib.sha256(payload).hexdigest() != manifest.sha256:
            raise PayloadError("malformed", f"chunked payload {key} failed its length/SHA-256 check")
        return payload
