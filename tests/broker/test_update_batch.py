"""Packed updates (broker/update_batch.py): each row its own device's, the same values as one message each."""

from __future__ import annotations

import json

import jsonschema
import pytest
import torch

from broker.bus import LocalBus, Message
from broker.codec import decode_model, encode_model
from broker.model_exchange import ModelExchange, ReceivedBatch
from broker.topics import Topics, parse_model_topic
from broker.update_batch import (
    BATCH_SCHEMA,
    Layout,
    decode_update_batch,
    encode_update_batch,
    rows_per_batch,
)
from twin.auth import RunKeys
from twin.errors import PayloadError
from twin.schemas import schema_by_id

SERVICE = "svc"
AGENTS = ["d0", "d1", "d2", "d3"]


def _template() -> dict[str, torch.Tensor]:
    return {"w": torch.zeros(3, 4), "b": torch.zeros(3), "a.scalar": torch.zeros(())}


def _updates(seed: int = 0) -> list[dict[str, torch.Tensor]]:
    g = torch.Generator().manual_seed(seed)
    return [
        {k: torch.randn(v.shape, generator=g) * (i + 1) for k, v in _template().items()} for i in range(4)
    ]


def _setup(chunk_bytes: int = 1 << 20) -> tuple[LocalBus, ModelExchange, ModelExchange, RunKeys]:
    """A sending host exchange (holding d0…d3's keys) and a receiving network exchange on one bus."""
    bus = LocalBus()
    topics = Topics("run-1")
    keys = RunKeys("run-1")
    creds = keys.credentials(["host-a", *AGENTS])
    sender = ModelExchange(bus, topics, chunk_bytes=chunk_bytes, max_payload_bytes=1 << 20, signer=creds.sign)
    receiver = ModelExchange(
        bus, topics, chunk_bytes=chunk_bytes, max_payload_bytes=1 << 20, verifier=keys.verify
    )
    for exchange in (sender, receiver):
        exchange.register_template(SERVICE, _template())
    bus.subscribe(topics.ml_filter(SERVICE))
    return bus, sender, receiver, keys


def _send(sender: ModelExchange, updates: list[dict[str, torch.Tensor]], agents: list[str] = AGENTS) -> None:
    layout = sender.layout(SERVICE)
    stacked = {k: torch.stack([u[k] for u in updates]) for k in updates[0]}
    assert sender.signer is not None
    sender.send_batch(SERVICE, 1, "host-a.0", layout.flatten(stacked), agents, sign=sender.signer)


def _received(bus: LocalBus, receiver: ModelExchange) -> list[ReceivedBatch]:
    out = [receiver.receive(m) for m in bus.poll()]
    return [r for r in out if isinstance(r, ReceivedBatch)]


@pytest.mark.parametrize("wire", ["fp32", "fp16", "int8"])
def test_each_row_decodes_to_what_its_own_message_would_carry(wire: str) -> None:
    """Packed or alone, a device's update reaches the network with the same values (every wire dtype)."""
    layout = Layout.of(_template())
    updates = _updates()
    rows = layout.flatten({k: torch.stack([u[k] for u in updates]) for k in updates[0]})
    payload = encode_update_batch(
        rows,
        AGENTS,
        layout=layout,
        service=SERVICE,
        round_index=3,
        host="h",
        wire_dtype=wire,  # type: ignore[arg-type]
        sign=lambda agent, digest: agent,
    )
    batch = decode_update_batch(payload, max_bytes=1 << 20, layout=layout, service=SERVICE, round_index=3)
    assert [r.agent_id for r in batch.rows] == AGENTS
    for row, update in zip(batch.rows, updates, strict=True):
        alone = decode_model(encode_model(update, {"round": 3}, wire), max_bytes=1 << 20).tensors  # type: ignore[arg-type]
        packed = layout.unflatten(row.params)
        assert packed.keys() == alone.keys()
        for name in alone:
            assert torch.equal(packed[name], alone[name]), name
    header = json.loads(payload[8 : 8 + int.from_bytes(payload[:8], "little")])
    jsonschema.validate(header["__metadata__"], schema_by_id(BATCH_SCHEMA))


@pytest.mark.parametrize("wire", ["fp32", "fp16", "int8"])
def test_a_full_batch_fits_one_message_and_one_more_row_would_not(wire: str) -> None:
    """``rows_per_batch`` rows (long device ids, real tags) encode within ``chunk_bytes``: no manifest."""
    template = {"a.w": torch.zeros(64, 64), "b.b": torch.zeros(64)}
    layout = Layout.of(template)
    chunk = 256 * 1024
    n = rows_per_batch(layout, wire, chunk)  # type: ignore[arg-type]
    g = torch.Generator().manual_seed(0)

    def size(k: int) -> int:
        agents = [f"device-{i:08d}-of-a-long-fleet" for i in range(k)]
        return len(
            encode_update_batch(
                torch.randn(k, layout.width, generator=g),
                agents,
                layout=layout,
                service=SERVICE,
                round_index=123456,
                host="worker-17",
                wire_dtype=wire,  # type: ignore[arg-type]
                sign=lambda agent, digest: "f" * 64,
            )
        )

    assert n > 1 and size(n) <= chunk
    assert size(n + 2) > chunk or n == 4096  # the bound is tight: not far below what fits
    assert rows_per_batch(layout, wire, 4096) == 1  # a row bigger than a message: one per batch  # type: ignore[arg-type]


def test_forged_replayed_and_non_finite_rows_are_refused_alone() -> None:
    """One row with a wrong tag, one with NaN: the other rows count; a replay of the batch counts nothing."""
    bus, sender, receiver, _ = _setup()
    updates = _updates()
    _send(sender, updates)
    genuine = bus.poll()
    assert len(genuine) == 1  # four rows, one message
    payload = genuine[0].payload
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + header_len])
    auths = json.loads(header["__metadata__"]["auths"])
    auths[1] = "0" * 64  # d1's tag forged
    header["__metadata__"]["auths"] = json.dumps(auths)
    forged_header = json.dumps(header, separators=(",", ":")).encode()
    forged_header += b" " * (-(8 + len(forged_header)) % 8)
    forged = len(forged_header).to_bytes(8, "little") + forged_header + payload[8 + header_len :]

    first = [
        r for r in (receiver.receive(Message(genuine[0].topic, forged)),) if isinstance(r, ReceivedBatch)
    ]
    assert [a for a, _ in first[0].updates] == ["d0", "d2", "d3"]
    assert receiver.bus.stats.rejected["forged"] == 1
    torch.testing.assert_close(first[0].as_models()[0].payload.tensors["w"], updates[0]["w"])

    again = receiver.receive(genuine[0])  # the genuine batch: only d1 is new
    assert isinstance(again, ReceivedBatch) and [a for a, _ in again.updates] == ["d1"]
    replay = receiver.receive(genuine[0])
    assert isinstance(replay, ReceivedBatch) and replay.updates == []
    assert receiver.bus.stats.rejected["duplicate"] == 3 + 4

    bad = [dict(u) for u in _updates(seed=1)]
    bad[2]["w"] = bad[2]["w"].clone()
    bad[2]["w"][0, 0] = float("nan")
    bus2, sender2, receiver2, _ = _setup()
    _send(sender2, bad)
    got = _received(bus2, receiver2)
    assert [a for a, _ in got[0].updates] == ["d0", "d1", "d3"]
    assert receiver2.bus.stats.rejected["malformed"] == 1


def test_a_host_cannot_pack_a_device_whose_key_it_lacks() -> None:
    """Rows for devices of another host are refused: the packer has no key to sign them."""
    bus, sender, receiver, keys = _setup()
    stranger = keys.credentials(["host-b", "e9"])  # holds e9 only
    layout = sender.layout(SERVICE)
    updates = _updates()
    rows = layout.flatten({k: torch.stack([u[k] for u in updates]) for k in updates[0]})

    def sign_as_best_it_can(agent: str, topic: str, digest: bytes) -> str:
        return stranger.sign("e9", topic, digest)  # it can only make e9's tags

    sender.send_batch(SERVICE, 1, "host-b.0", rows, AGENTS, sign=sign_as_best_it_can)
    got = _received(bus, receiver)
    assert got[0].updates == [] and receiver.bus.stats.rejected["forged"] == 4


@pytest.mark.parametrize(
    ("change", "why"),
    [
        (lambda m: m.update(service="other"), "service"),
        (lambda m: m.update(round="2"), "round"),
        (lambda m: m.update(agents=json.dumps(["d0", "d0", "d2", "d3"])), "distinct"),
        (lambda m: m.update(agents=json.dumps(["d0", "d1", "d2"])), "one tag each"),
        (lambda m: m.update(agents=json.dumps(["d0", "d/1", "d2", "d3"])), "agent id"),
        (lambda m: m.update(wire_dtype="fp16"), "wire dtype"),
        (lambda m: m.update(extra="1"), "metadata"),
        (lambda m: m.update(agents="[[[["), "not valid"),
    ],
)
def test_a_malformed_batch_is_refused_whole(change, why: str) -> None:  # type: ignore[no-untyped-def]
    layout = Layout.of(_template())
    updates = _updates()
    rows = layout.flatten({k: torch.stack([u[k] for u in updates]) for k in updates[0]})
    payload = encode_update_batch(
        rows,
        AGENTS,
        layout=layout,
        service=SERVICE,
        round_index=1,
        host="h",
        wire_dtype="fp32",
        sign=lambda a, d: a,
    )
    header_len = int.from_bytes(payload[:8], "little")
    header = json.loads(payload[8 : 8 + header_len])
    change(header["__metadata__"])
    body = json.dumps(header, separators=(",", ":")).encode()
    body += b" " * (-(8 + len(body)) % 8)
    altered = len(body).to_bytes(8, "little") + body + payload[8 + header_len :]
    with pytest.raises(PayloadError, match=why) as caught:
        decode_update_batch(altered, max_bytes=1 << 20, layout=layout, service=SERVICE, round_index=1)
    assert caught.value.kind == "malformed"
    other = Layout.of({"w": torch.zeros(3, 5), "b": torch.zeros(3), "a.scalar": torch.zeros(())})
    with pytest.raises(PayloadError, match="architecture"):
        decode_update_batch(payload, max_bytes=1 << 20, layout=other, service=SERVICE, round_index=1)


def test_a_chunked_batch_needs_the_hosts_signed_manifest() -> None:
    """Rows bigger than a message: the batch goes as manifest + chunks, the manifest signed by the host."""
    bus, sender, receiver, _ = _setup(chunk_bytes=200)
    _send(sender, _updates())
    messages = bus.poll()
    kinds = [parse_model_topic(sender.topics, m.topic) for m in messages]
    assert all(k is not None and k.kind == "updates" for k in kinds)
    assert sum(1 for k in kinds if k is not None and k.part == "chunk") > 1
    got = [r for r in (receiver.receive(m) for m in messages) if isinstance(r, ReceivedBatch)]
    assert [a for a, _ in got[0].updates] == AGENTS
    manifest = next(m for m in messages if m.topic.endswith("/manifest"))
    doc = json.loads(manifest.payload)
    doc["auth"] = "0" * 64
    bus2, _, receiver2, _ = _setup(chunk_bytes=200)
    assert receiver2.receive(Message(manifest.topic, json.dumps(doc).encode())) is None
    assert receiver2.bus.stats.rejected["forged"] == 1


def test_the_batch_payload_is_safetensors_both_ways() -> None:
    """What the twin writes any safetensors library reads, and what a library writes the twin reads."""
    import numpy as np
    from safetensors.numpy import load as np_load
    from safetensors.numpy import save as np_save

    from broker.update_batch import read_safetensors, safetensors_bytes

    rows = np.arange(12, dtype=np.float32).reshape(3, 4) / 7
    scales = np.array([[1.5], [2.5], [-0.5]], dtype=np.float32)
    codes = np.arange(-6, 6, dtype=np.int8).reshape(3, 4)
    ours = safetensors_bytes([("rows", rows), ("scales", scales), ("codes", codes)], {"k": "v"})
    theirs = np_load(ours)
    assert set(theirs) == {"rows", "scales", "codes"}
    assert all(
        np.array_equal(theirs[k], v) for k, v in (("rows", rows), ("scales", scales), ("codes", codes))
    )
    for payload in (ours, np_save({"rows": rows, "codes": codes}, metadata={"k": "v"})):
        meta, arrays = read_safetensors(payload)
        assert meta == {"k": "v"}
        assert np.array_equal(arrays["rows"], rows) and np.array_equal(arrays["codes"], codes)
        assert not arrays["rows"].flags.writeable  # views of the payload, not copies


def _header_payload(header: dict[str, object], data: bytes) -> bytes:
    text = json.dumps(header).encode()
    return len(text).to_bytes(8, "little") + text + data


@pytest.mark.parametrize(
    ("header", "data", "why"),
    [
        ({"rows": {"dtype": "F64", "shape": [1], "data_offsets": [0, 8]}}, b"\0" * 8, "dtype"),
        ({"rows": {"dtype": "F32", "shape": [3], "data_offsets": [0, 8]}}, b"\0" * 8, "byte range"),
        ({"rows": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]}}, b"\0" * 12, "end"),
        ({"rows": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]}}, b"\0" * 12, "gaps"),
        (
            {
                "a": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8]},
                "b": {"dtype": "F32", "shape": [2], "data_offsets": [4, 12]},
            },
            b"\0" * 12,
            "overlap",
        ),
        ({"rows": {"dtype": "F32", "shape": [-2], "data_offsets": [0, 8]}}, b"\0" * 8, "shape"),
        ({"rows": {"dtype": "F32", "shape": [2], "data_offsets": [0, 8], "x": 1}}, b"\0" * 8, "not a tensor"),
        ({"__metadata__": {"k": 1}}, b"", "strings"),
        ({"rows": {"dtype": "F32", "shape": [2], "data_offsets": [0, 1 << 62]}}, b"\0" * 8, "byte range"),
    ],
)
def test_a_malformed_safetensors_payload_is_refused_with_a_reason(
    header: dict[str, object], data: bytes, why: str
) -> None:
    from broker.update_batch import read_safetensors

    with pytest.raises(PayloadError, match=why) as caught:
        read_safetensors(_header_payload(header, data))
    assert caught.value.kind == "malformed"
    for cut in (b"", b"\x01", (1 << 40).to_bytes(8, "little") + b"{}"):  # short, or a header past the end
        with pytest.raises(PayloadError):
            read_safetensors(cut)


def test_batches_decoded_ahead_on_threads_give_what_decoding_in_turn_gives() -> None:
    """``predecode`` (a pump's batches on parallel threads) changes nothing that ``receive`` returns."""
    from twin import parallel

    results = []
    for ahead in (False, True):
        bus, sender, receiver, _ = _setup()
        for part in range(4):
            _send(sender, _updates(part))
            topic = sender.topics.update_batch(SERVICE, 1, "host-a.0")
            sender.publish_encoded(topic.replace("host-a.0", f"host-a.{10 + part}"), sender._sent[topic][0])
        bus.publish(sender.topics.update_batch(SERVICE, 1, "host-a.9"), b"not a batch", qos=1)
        messages = bus.poll()
        with parallel.using_threads(3):
            if ahead:
                receiver.predecode(messages)
                assert len(receiver._predecoded) == 9  # per topic, though 4 payloads are sent twice
            got = [receiver.receive(m) for m in messages]
            receiver.clear_predecoded()
        results.append((got, dict(bus.stats.rejected)))
    (plain, plain_rejected), (ahead_got, ahead_rejected) = results
    assert plain_rejected == ahead_rejected and plain_rejected["malformed"] == 1
    assert plain_rejected["duplicate"] == 7 * 4  # the same four devices, sent again in 7 more batches
    for a, b in zip(plain, ahead_got, strict=True):
        assert type(a) is type(b)
        if isinstance(a, ReceivedBatch):
            assert [d for d, _ in a.updates] == [d for d, _ in b.updates]
            assert all(torch.equal(x, y) for (_, x), (_, y) in zip(a.updates, b.updates, strict=True))
