"""Packed updates: a device host's updates of one round in one payload, each row its device's own.

A host that trains hundreds of devices would otherwise publish hundreds of model messages a round, and
the network would decode and verify each (safetensors parsing and hashing per message was most of a
round's cost). Packed, the host sends one safetensors payload per batch of devices:

- tensor ``rows``: ``(K, P)``, one row per device, its parameters flattened in the service's
  :class:`Layout` (names sorted, each tensor row-major), at the wire dtype (``float32``, ``float16``
  or ``int8``); for ``int8`` also ``scales``: ``(K, n_tensors)`` float32, one symmetric scale per
  device and tensor;
- metadata (strings): ``schema`` = ``twin.model.batch.v1``, ``wire_dtype``, ``service``, ``round``,
  ``host``, ``agents`` (JSON list of the K device ids, distinct) and ``auths`` (JSON list of the K
  devices' tags).

**Each row is still authenticated by its own device**: its tag is the device's HMAC over the topic of
that device's single update (``…/ml/{service}/{round}/update/{agent_id}``) and the row digest
:func:`row_digest` (schema, service, round, device, wire dtype, the row's wire bytes and scales). A
host can therefore only pack updates of devices whose keys it holds; a forged, replayed or
non-finite row is refused on its own and the others still count. The batch's topic is
``…/ml/{service}/{round}/updates/{host_id}.{part}``; above the chunk limit it travels as a manifest
signed by the host plus chunks, like any model payload.
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Callable, Mapping
from dataclasses import dataclass

import numpy as np
import torch
from safetensors import SafetensorError
from safetensors.torch import load as st_load
from safetensors.torch import save as st_save

from broker.codec import WireDtype
from broker.topics import check_segment
from twin.errors import PayloadError

BATCH_SCHEMA = "twin.model.batch.v1"
MAX_BATCH_ROWS = 4096
"""Most devices one packed payload carries."""
_WIRE_TORCH = {"fp32": torch.float32, "fp16": torch.float16, "int8": torch.int8}
_META_KEYS = frozenset({"schema", "wire_dtype", "service", "round", "host", "agents", "auths"})


@dataclass(frozen=True, slots=True)
class Layout:
    """How a service's parameters lie in one row: tensor names sorted, each flattened row-major."""

    names: tuple[str, ...]
    shapes: tuple[tuple[int, ...], ...]
    offsets: tuple[int, ...]  # start of each tensor in the row, then the row's length

    @classmethod
    def of(cls, template: Mapping[str, torch.Tensor]) -> Layout:
        """The layout of a service's template (its tensor names and shapes)."""
        names = tuple(sorted(template))
        shapes = tuple(tuple(template[n].shape) for n in names)
        offsets = [0]
        for shape in shapes:
            offsets.append(offsets[-1] + int(np.prod(shape, dtype=np.int64)))
        return cls(names, shapes, tuple(offsets))

    @property
    def width(self) -> int:
        """Values in one row (P)."""
        return self.offsets[-1]

    def flatten(self, stacked: Mapping[str, torch.Tensor]) -> torch.Tensor:
        """``(K, P)`` float32 rows from tensors stacked per device (``(K, *shape)`` each)."""
        k = next(iter(stacked.values())).shape[0] if stacked else 0
        base = stacked[self.names[0]]._base if self.names else None
        if (
            base is not None
            and base.dtype == torch.float32
            and base.is_contiguous()
            and tuple(base.shape) == (k, self.width)
            and all(
                stacked[n]._base is base and stacked[n].storage_offset() - base.storage_offset() == off
                for n, off in zip(self.names, self.offsets, strict=False)
            )
        ):
            return base.detach()  # already the rows: views of one (K, P) buffer, in this layout
        return torch.cat(
            [stacked[n].detach().reshape(k, -1).to(torch.float32) for n in self.names], dim=1
        ).contiguous()

    def unflatten(self, row: torch.Tensor) -> dict[str, torch.Tensor]:
        """One device's parameters as views into its row."""
        return {
            n: row[a:b].view(shape)
            for n, shape, a, b in zip(
                self.names, self.shapes, self.offsets[:-1], self.offsets[1:], strict=True
            )
        }


def rows_per_batch(layout: Layout, wire_dtype: WireDtype, chunk_bytes: int) -> int:
    """Rows that fit one MQTT message of ``chunk_bytes`` (so a batch needs no manifest), at least one.

    A row costs its wire values (and int8 scales) plus ≈ 100 B of header (its device id and tag).
    """
    itemsize = {"fp32": 4, "fp16": 2, "int8": 1}[wire_dtype]
    row = layout.width * itemsize + (4 * len(layout.names) if wire_dtype == "int8" else 0) + 128
    return max(1, min(MAX_BATCH_ROWS, (chunk_bytes - 1024) // row))


def row_digest(
    service: str, round_index: int, agent_id: str, wire_dtype: str, row: np.ndarray, scales: np.ndarray | None
) -> bytes:
    """SHA-256 of one device's row as it travels: what the device's tag covers (with its topic)."""
    h = hashlib.sha256(f"{BATCH_SCHEMA}\0{service}\0{round_index}\0{agent_id}\0{wire_dtype}\0".encode())
    h.update(row.data)
    if scales is not None:
        h.update(scales.data)
    return h.digest()


def _wire_rows(rows: torch.Tensor, layout: Layout, wire_dtype: WireDtype) -> dict[str, torch.Tensor]:
    """The rows at the wire dtype (int8: one symmetric scale per device and tensor)."""
    if wire_dtype == "fp32":
        return {"rows": rows}
    if wire_dtype == "fp16":
        return {"rows": rows.to(torch.float16)}
    if wire_dtype != "int8":
        raise ValueError(f"wire_dtype must be fp32, fp16 or int8, got {wire_dtype!r}")
    segments = [rows[:, a:b] for a, b in zip(layout.offsets[:-1], layout.offsets[1:], strict=True)]
    scales = torch.stack(
        [s.abs().amax(dim=1) if s.shape[1] else s.new_zeros(s.shape[0]) for s in segments], 1
    )
    scales = (scales.clamp_min(1e-12) / 127.0).contiguous()
    widths = torch.tensor([b - a for a, b in zip(layout.offsets[:-1], layout.offsets[1:], strict=True)])
    expanded = torch.repeat_interleave(scales, widths, dim=1)
    quantised = torch.round(rows / expanded).clamp(-127, 127).to(torch.int8).contiguous()
    return {"rows": quantised, "scales": scales}


def encode_update_batch(
    rows: torch.Tensor,
    agents: list[str],
    *,
    layout: Layout,
    service: str,
    round_index: int,
    host: str,
    wire_dtype: WireDtype,
    sign: Callable[[str, bytes], str],
) -> bytes:
    """One packed payload; ``sign(agent_id, row_digest)`` is the device's tag over its own row."""
    if rows.ndim != 2 or rows.shape != (len(agents), layout.width):
        raise ValueError(f"rows must be ({len(agents)}, {layout.width}), got {tuple(rows.shape)}")
    if not 0 < len(agents) <= MAX_BATCH_ROWS:
        raise ValueError(f"a batch carries 1…{MAX_BATCH_ROWS} devices, got {len(agents)}")
    tensors = _wire_rows(rows.detach().to(torch.float32).contiguous(), layout, wire_dtype)
    wire = tensors["rows"].numpy()
    scales = tensors["scales"].numpy() if "scales" in tensors else None
    auths = [
        sign(
            a, row_digest(service, round_index, a, wire_dtype, wire[i], None if scales is None else scales[i])
        )
        for i, a in enumerate(agents)
    ]
    meta = {
        "schema": BATCH_SCHEMA,
        "wire_dtype": wire_dtype,
        "service": service,
        "round": str(round_index),
        "host": host,
        "agents": json.dumps(agents),
        "auths": json.dumps(auths),
    }
    return bytes(st_save(tensors, metadata=meta))


@dataclass(frozen=True, slots=True)
class BatchRow:
    """One device's row of a decoded batch, not yet verified."""

    agent_id: str
    tag: str
    digest: bytes
    params: torch.Tensor  # (P,) float32
    finite: bool  # no NaN or Inf in the row (a row that has some is refused on its own)


@dataclass(frozen=True, slots=True)
class DecodedBatch:
    """A packed payload, decoded: its host and rows."""

    host: str
    rows: list[BatchRow]


def decode_update_batch(
    payload: bytes, *, max_bytes: int, layout: Layout, service: str, round_index: int
) -> DecodedBatch:
    """Parse and check a packed payload's structure (tags are checked by the receiver, per row).

    Raises:
        PayloadError: ``oversized`` or ``malformed`` (bad bytes, wrong schema, service, round, wire
            dtype, shapes, device list or tag list) — the whole payload is refused.
    """
    if len(payload) > max_bytes:
        raise PayloadError("oversized", f"update batch of {len(payload)} B exceeds the {max_bytes} B limit")
    try:
        raw = st_load(bytes(payload))
        header_len = int.from_bytes(payload[:8], "little")
        meta = json.loads(payload[8 : 8 + header_len]).get("__metadata__") or {}
        agents = json.loads(meta["agents"])
        auths = json.loads(meta["auths"])
    except (
        SafetensorError,
        ValueError,
        RuntimeError,
        RecursionError,
        KeyError,
        TypeError,
        AttributeError,
    ) as exc:
        raise PayloadError("malformed", f"update batch is not valid: {exc}") from exc
    if not isinstance(meta, dict) or set(meta) != _META_KEYS or meta.get("schema") != BATCH_SCHEMA:
        raise PayloadError("malformed", f"update batch metadata is not {BATCH_SCHEMA}")
    if meta["service"] != service or meta["round"] != str(round_index):
        raise PayloadError("malformed", "update batch metadata does not match its topic (service or round)")
    wire_dtype = meta["wire_dtype"]
    dtype = _WIRE_TORCH.get(wire_dtype)
    rows = raw.get("rows")
    expected_keys = {"rows", "scales"} if wire_dtype == "int8" else {"rows"}
    if dtype is None or rows is None or set(raw) != expected_keys or rows.dtype != dtype:
        raise PayloadError("malformed", "update batch tensors do not match its wire dtype")
    k = len(agents) if isinstance(agents, list) else -1
    if not 0 < k <= MAX_BATCH_ROWS or not isinstance(auths, list) or len(auths) != k:
        raise PayloadError("malformed", f"update batch must list 1…{MAX_BATCH_ROWS} devices and one tag each")
    if tuple(rows.shape) != (k, layout.width):
        raise PayloadError("malformed", "update batch rows do not match the service's architecture")
    if not all(isinstance(a, str) for a in agents) or len(set(agents)) != k:
        raise PayloadError("malformed", "update batch device ids are not distinct strings")
    try:
        for a in agents:
            check_segment(a, "agent id")
    except ValueError as exc:
        raise PayloadError("malformed", str(exc)) from exc
    scales = raw.get("scales")
    if scales is not None and (
        scales.dtype != torch.float32
        or tuple(scales.shape) != (k, len(layout.names))
        or not bool(np.isfinite(scales.numpy()).all())
    ):
        raise PayloadError("malformed", "update batch scales must be (devices, tensors) finite float32")
    wire = rows.numpy()
    scale_np = scales.numpy() if scales is not None else None
    values = rows.to(torch.float32)
    if scales is not None:
        widths = torch.tensor([b - a for a, b in zip(layout.offsets[:-1], layout.offsets[1:], strict=True)])
        values = values * torch.repeat_interleave(scales, widths, dim=1)
    host = meta["host"]
    finite = np.isfinite(values.numpy()).all(axis=1).tolist()  # numpy: torch's isfinite is far slower
    out = [
        BatchRow(
            a,
            t if isinstance(t, str) else "",
            row_digest(
                service, round_index, a, wire_dtype, wire[i], None if scale_np is None else scale_np[i]
            ),
            values[i],
            finite[i],
        )
        for i, (a, t) in enumerate(zip(agents, auths, strict=True))
    ]
    return DecodedBatch(str(host), out)
