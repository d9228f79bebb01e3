import hashlib

import pytest
import torch

from broker.codec import ChunkAssembler, Manifest, decode_model, encode_model, split_chunks
from broker.json_codec import decode_json
from twin.errors import PayloadError


def _tensors() -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(0)
    return {"w": torch.randn(8, 4, generator=g), "b": torch.randn(4, generator=g)}


def test_fp32_round_trip_is_exact_and_keeps_metadata() -> None:
    """fp32 safetensors round trip returns bit-identical tensors and the envelope as strings."""
    # Prepare
    tensors = _tensors()
    # Execute
    decoded = decode_model(encode_model(tensors, {"round": 3, "agent_id": "hh-0001"}), max_bytes=1 << 20)
    # Assert
    assert decoded.tensors.keys() == tensors.keys()
    for name, t in tensors.items():
        assert torch.equal(decoded.tensors[name], t)
    assert decoded.metadata["round"] == "3"
    assert decoded.meta_int("round") == 3
    assert decoded.metadata["agent_id"] == "hh-0001"


@pytest.mark.parametrize(("dtype", "tolerance"), [("fp16", 1e-2), ("int8", 5e-2)])
def test_reduced_precision_round_trip_is_close_and_smaller(dtype: str, tolerance: float) -> None:
    """fp16/int8 payloads are smaller than fp32 and decode to fp32 within the quantisation error."""
    tensors = {"w": torch.randn(64, 64, generator=torch.Generator().manual_seed(1))}
    full = encode_model(tensors, {})
    small = encode_model(tensors, {}, wire_dtype=dtype)  # type: ignore[arg-type]
    decoded = decode_model(small, max_bytes=1 << 20)
    assert len(small) < len(full)
    assert decoded.tensors["w"].dtype == torch.float32
    max_abs = float(tensors["w"].abs().max())
    assert float((decoded.tensors["w"] - tensors["w"]).abs().max()) <= tolerance * max_abs


def test_garbage_bytes_are_malformed() -> None:
    """Bytes that are not safetensors raise PayloadError('malformed'), not a library exception."""
    with pytest.raises(PayloadError) as info:
        decode_model(b"\x10\x00\x00\x00\x00\x00\x00\x00{not json", max_bytes=1 << 20)
    assert info.value.kind == "malformed"


def test_truncated_payload_is_malformed() -> None:
    """A payload cut short (lost tail) is rejected as malformed."""
    payload = encode_model(_tensors(), {})
    with pytest.raises(PayloadError) as info:
        decode_model(payload[:-10], max_bytes=1 << 20)
    assert info.value.kind == "malformed"


def test_oversized_payload_rejected_before_parsing() -> None:
    """A payload above the limit is rejected as oversized."""
    payload = encode_model(_tensors(), {})
    with pytest.raises(PayloadError) as info:
        decode_model(payload, max_bytes=len(payload) - 1)
    assert info.value.kind == "oversized"


def test_wrong_architecture_and_nan_are_malformed() -> None:
    """Tensors that do not match the service's template, or hold NaN, are refused."""
    template = _tensors()
    wrong = {"w": torch.zeros(8, 5), "b": torch.zeros(4)}
    with pytest.raises(PayloadError, match="architecture"):
        decode_model(encode_model(wrong, {}), max_bytes=1 << 20, template=template)
    poisoned = {"w": torch.full((8, 4), float("nan")), "b": torch.zeros(4)}
    with pytest.raises(PayloadError, match="NaN"):
        decode_model(encode_model(poisoned, {}), max_bytes=1 << 20, template=template)


def test_pickle_is_never_accepted() -> None:
    """A torch.save (pickle) payload is refused as malformed: nothing is unpickled."""
    import io

    buffer = io.BytesIO()
    torch.save(_tensors(), buffer)
    with pytest.raises(PayloadError) as info:
        decode_model(buffer.getvalue(), max_bytes=1 << 20)
    assert info.value.kind == "malformed"


def test_chunks_reassemble_in_any_order_with_manifest_last() -> None:
    """Chunks arriving out of order, before their manifest, reassemble to the exact payload."""
    payload = bytes(range(256)) * 40
    manifest, chunks = split_chunks(payload, 1000)
    assembler = ChunkAssembler(max_bytes=1 << 20)
    assert manifest.n_chunks == 11 and manifest.sha256 == hashlib.sha256(payload).hexdigest()
    for i in reversed(range(len(chunks))):
        assert assembler.add_chunk("k", i, chunks[i]) is None
    assert assembler.add_manifest("k", manifest.to_bytes()) == payload


def test_missing_chunks_are_reported_and_duplicates_refused() -> None:
    """The assembler names missing chunk indices and refuses a chunk it already holds."""
    manifest, chunks = split_chunks(b"x" * 2500, 1000)
    assembler = ChunkAssembler(max_bytes=1 << 20)
    assembler.add_manifest("k", manifest.to_bytes())
    assembler.add_chunk("k", 0, chunks[0])
    assert assembler.missing("k") == [1, 2]
    with pytest.raises(PayloadError) as info:
        assembler.add_chunk("k", 0, chunks[0])
    assert info.value.kind == "duplicate"
    assembler.add_chunk("k", 2, chunks[2])
    assert assembler.add_chunk("k", 1, chunks[1]) == b"x" * 2500


def test_corrupted_chunk_is_refused_and_the_real_one_still_completes() -> None:
    """A flipped byte in a chunk does not match the manifest's chunk_sha256: refused as forged, held apart."""
    payload = b"abcdefgh" * 300
    manifest, chunks = split_chunks(payload, 1000)
    assembler = ChunkAssembler(max_bytes=1 << 20)
    assembler.add_manifest("k", manifest.to_bytes())
    assembler.add_chunk("k", 0, chunks[0])
    with pytest.raises(PayloadError) as info:
        assembler.add_chunk("k", 2, b"Z" + chunks[2][1:])
    assert info.value.kind == "forged"
    assert assembler.missing("k") == [1, 2]
    assembler.add_chunk("k", 1, chunks[1])
    assert assembler.add_chunk("k", 2, chunks[2]) == payload


def test_corrupted_chunk_fails_digest() -> None:
    """Without chunk_sha256 (older manifests) a flipped byte makes reassembly fail its SHA-256 check."""
    manifest, chunks = split_chunks(b"abcdefgh" * 300, 1000)
    manifest = Manifest(manifest.n_chunks, manifest.sha256, manifest.total_bytes)
    assembler = ChunkAssembler(max_bytes=1 << 20)
    assembler.add_manifest("k", manifest.to_bytes())
    assembler.add_chunk("k", 0, chunks[0])
    assembler.add_chunk("k", 1, chunks[1])
    with pytest.raises(PayloadError) as info:
        assembler.add_chunk("k", 2, b"Z" + chunks[2][1:])
    assert info.value.kind == "malformed"
    assert assembler.missing("k") is None  # discarded: the sender will be asked again


def test_manifest_validation() -> None:
    """Manifests with bad fields or an oversized total are refused."""
    with pytest.raises(PayloadError):
        Manifest.from_bytes(
            b'{"schema":"twin.chunks.v1","n_chunks":0,"sha256":"x","total_bytes":1}', max_bytes=10
        )
    big = Manifest(2, "0" * 64, 1_000).to_bytes()
    with pytest.raises(PayloadError) as info:
        Manifest.from_bytes(big, max_bytes=999)
    assert info.value.kind == "oversized"


def test_json_decoding_errors() -> None:
    """Non-JSON, non-object and oversized JSON payloads are PayloadErrors."""
    with pytest.raises(PayloadError):
        decode_json(b"\xff\xfe", max_bytes=100)
    with pytest.raises(PayloadError):
        decode_json(b"[1,2]", max_bytes=100)
    with pytest.raises(PayloadError):
        decode_json(b'{"a":1}', max_bytes=3)
