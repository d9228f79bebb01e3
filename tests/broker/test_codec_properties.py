"""Property tests of the wire codecs: round trips, reassembly in any order, and nothing but PayloadError."""

from __future__ import annotations

import contextlib
import hashlib

import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from broker.codec import ChunkAssembler, Manifest, decode_model, encode_model, split_chunks
from broker.json_codec import decode_json
from twin.errors import PayloadError

FAST = settings(max_examples=60, deadline=None)

_names = st.text(alphabet="abcdefghij_.0123456789", min_size=1, max_size=12).filter(
    lambda n: not n.endswith("::scale")
)
_shapes = st.lists(st.integers(min_value=0, max_value=5), min_size=0, max_size=3)
_floats = st.floats(min_value=-1e4, max_value=1e4, allow_nan=False, allow_infinity=False, width=32)


@st.composite
def _tensors(draw: st.DrawFn) -> dict[str, torch.Tensor]:
    out: dict[str, torch.Tensor] = {}
    for name in draw(st.lists(_names, min_size=1, max_size=4, unique=True)):
        shape = draw(_shapes)
        n = 1
        for d in shape:
            n *= d
        values = draw(st.lists(_floats, min_size=n, max_size=n))
        out[name] = torch.tensor(values, dtype=torch.float32).reshape(shape)
    return out


@FAST
@given(
    tensors=_tensors(),
    wire=st.sampled_from(["fp32", "fp16", "int8"]),
    meta=st.dictionaries(st.sampled_from(["round", "agent_id", "x"]), st.text(max_size=8)),
)
def test_encode_decode_round_trip(tensors: dict[str, torch.Tensor], wire: str, meta: dict[str, str]) -> None:
    """Every tensor comes back fp32 with its shape, exact in fp32, within the wire's rounding otherwise."""
    payload = encode_model(tensors, meta, wire)  # type: ignore[arg-type]
    decoded = decode_model(payload, max_bytes=len(payload), template=tensors)
    assert decoded.tensors.keys() == tensors.keys()
    for k, v in meta.items():
        assert decoded.metadata[k] == v
    assert decoded.metadata["wire_dtype"] == wire
    for name, t in tensors.items():
        got = decoded.tensors[name]
        assert got.dtype == torch.float32 and got.shape == t.shape
        if wire == "fp32":
            assert torch.equal(got, t)
        elif t.numel():
            tolerance = {"fp16": 1e-3 * float(t.abs().max()) + 1e-3, "int8": float(t.abs().max()) / 127}
            assert float((got - t).abs().max()) <= tolerance[wire] * 1.01 + 1e-6
    assert decode_model(payload, max_bytes=len(payload)).digest == decoded.digest


@FAST
@given(st.binary(max_size=512))
def test_decode_model_on_arbitrary_bytes_raises_only_payload_error(data: bytes) -> None:
    """Random bytes never crash the decoder with anything but PayloadError."""
    with contextlib.suppress(PayloadError):
        decode_model(data, max_bytes=1 << 20)


@FAST
@given(
    data=st.data(), cut=st.integers(min_value=0, max_value=400), flip=st.integers(min_value=0, max_value=400)
)
def test_decode_model_on_damaged_payloads_raises_only_payload_error(
    data: st.DataObject, cut: int, flip: int
) -> None:
    """A real payload truncated or with a byte changed decodes or fails with PayloadError, nothing else."""
    tensors = data.draw(_tensors())
    payload = bytearray(encode_model(tensors, {"round": 1}, data.draw(st.sampled_from(["fp32", "int8"]))))
    payload = payload[: max(0, len(payload) - cut)]
    if payload:
        payload[flip % len(payload)] ^= data.draw(st.integers(min_value=1, max_value=255))
    with contextlib.suppress(PayloadError):
        decode_model(bytes(payload), max_bytes=1 << 20)


@FAST
@given(st.one_of(st.binary(max_size=512), st.text(max_size=300).map(str.encode)))
def test_arbitrary_bytes_as_a_manifest_raise_only_payload_error(data: bytes) -> None:
    """Manifest parsing (and JSON decoding) refuses anything with PayloadError."""
    for parse in (
        lambda: Manifest.from_bytes(data, max_bytes=1 << 20),
        lambda: decode_json(data, max_bytes=1024),
    ):
        with contextlib.suppress(PayloadError):
            parse()


@FAST
@given(
    doc=st.fixed_dictionaries(
        {"schema": st.just("twin.chunks.v1")},
        optional={
            "n_chunks": st.one_of(st.integers(), st.floats(), st.text(max_size=3), st.booleans(), st.none()),
            "total_bytes": st.one_of(st.integers(), st.floats(), st.booleans()),
            "sha256": st.one_of(st.just("a" * 64), st.text(max_size=70)),
            "chunk_sha256": st.one_of(
                st.lists(st.just("b" * 64), max_size=3), st.text(max_size=3), st.none()
            ),
            "auth": st.one_of(st.text(max_size=5), st.integers(), st.none()),
            "extra": st.integers(),
        },
    )
)
def test_manifest_like_documents_raise_only_payload_error(doc: dict[str, object]) -> None:
    """Near-valid manifests either parse into a consistent manifest or raise PayloadError."""
    import json

    try:
        manifest = Manifest.from_bytes(json.dumps(doc).encode(), max_bytes=1 << 20)
    except PayloadError:
        return
    assert 1 <= manifest.n_chunks <= manifest.total_bytes <= 1 << 20
    assert manifest.chunk_sha256 is None or len(manifest.chunk_sha256) == manifest.n_chunks


@FAST
@given(
    payload=st.binary(min_size=1, max_size=3000),
    chunk_bytes=st.integers(min_value=1, max_value=4000),
    data=st.data(),
)
def test_chunks_reassemble_in_any_order_with_duplicates(
    payload: bytes, chunk_bytes: int, data: st.DataObject
) -> None:
    """Any payload, any chunk size, any arrival order (manifest anywhere, duplicates): the exact payload."""
    manifest, chunks = split_chunks(payload, chunk_bytes)
    assert b"".join(chunks) == payload and manifest.sha256 == hashlib.sha256(payload).hexdigest()
    items: list[int | None] = [None, *range(len(chunks))]  # None: the manifest
    items += data.draw(st.lists(st.sampled_from(items), max_size=5))  # duplicates
    order = data.draw(st.permutations(items))
    assembler = ChunkAssembler(max_bytes=len(payload))
    results: list[bytes] = []
    for item in order:
        try:
            if item is None:
                out = assembler.add_manifest("k", manifest.to_bytes(), sender="d1")
            else:
                out = assembler.add_chunk("k", item, chunks[item], sender="d1")
        except PayloadError as exc:
            assert exc.kind == "duplicate"
            continue
        if out is not None:
            results.append(out)
            assert assembler.held_bytes == 0  # nothing is kept once a payload is whole
    assert results[:1] == [payload]
