"""Chunked transfers are authenticated and bounded: forgeries never win a race, memory stays bounded."""

from __future__ import annotations

import hashlib

import pytest
import torch

from broker.bus import LocalBus, Message
from broker.codec import (
    MAX_CHUNKS,
    RESEND_MAX_BYTES,
    ChunkAssembler,
    Manifest,
    encode_model,
    split_chunks,
)
from broker.model_exchange import NETWORK, ModelExchange, ReceivedModel, ResendRequest
from broker.topics import Topics
from twin.auth import RunKeys
from twin.errors import PayloadError

SERVICE = "svc"
RUN = "run-1"


def _params(seed: int = 0) -> dict[str, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    return {"w": torch.randn(10, 10, generator=g), "b": torch.randn(10, generator=g)}


def _parties(keys: RunKeys) -> tuple[LocalBus, ModelExchange, ModelExchange]:
    """A bus, a device host's exchange (HMAC of d1, checks the network) and the network's exchange."""
    bus = LocalBus()
    topics = Topics(RUN)
    creds = keys.credentials(["d1"])
    host = ModelExchange(
        bus,
        topics,
        chunk_bytes=200,
        max_payload_bytes=1 << 20,
        signer=creds.sign,
        verifier=lambda sender, topic, digest, tag: (
            sender == NETWORK and creds.verify_network(topic, digest, tag)
        ),
    )
    network = ModelExchange(
        bus,
        topics,
        chunk_bytes=200,
        max_payload_bytes=1 << 20,
        signer=lambda _sender, topic, digest: keys.sign(topic, digest),
        verifier=keys.verify,
    )
    for exchange in (host, network):
        exchange.register_template(SERVICE, _params())
    bus.subscribe(topics.ml_filter(SERVICE))
    return bus, host, network


def _feed(exchange: ModelExchange, messages: list[Message]) -> list[object]:
    return [r for r in (exchange.receive(m) for m in messages) if r is not None]


def _forged_transfer(topic: str, agent_id: str | None) -> list[Message]:
    """Manifest (with a made-up tag) and chunks of an attacker's model for ``topic``."""
    meta: dict[str, object] = {"round": 1, "service": SERVICE, "n_samples": 5}
    if agent_id is not None:
        meta["agent_id"] = agent_id
    evil = {k: -3 * v for k, v in _params().items()}
    manifest, chunks = split_chunks(encode_model(evil, meta), 200)
    forged = Manifest(
        manifest.n_chunks, manifest.sha256, manifest.total_bytes, manifest.chunk_sha256, "0" * 64
    )
    return [Message(f"{topic}/manifest", forged.to_bytes())] + [
        Message(f"{topic}/chunk/{i}", c) for i, c in enumerate(chunks)
    ]


def _split(messages: list[Message]) -> tuple[Message, list[Message]]:
    manifest = next(m for m in messages if m.topic.endswith("/manifest"))
    return manifest, [m for m in messages if "/chunk/" in m.topic]


def test_manifest_carries_a_tag_the_receiver_checks() -> None:
    """A signed sender's manifest has auth; its tag verifies over '{topic}/manifest' and the JSON digest."""
    keys = RunKeys(RUN)
    bus, host, _ = _parties(keys)
    topic = host.topics.update(SERVICE, 1, "d1")
    host.send(topic, _params(), {"round": 1, "service": SERVICE, "agent_id": "d1"})
    manifest_msg, _ = _split(bus.poll())
    manifest = Manifest.from_bytes(manifest_msg.payload, max_bytes=1 << 20)
    assert manifest.auth is not None and manifest.chunk_sha256 is not None
    assert keys.verify("d1", f"{topic}/manifest", manifest.digest(), manifest.auth)
    assert not keys.verify("d1", topic, manifest.digest(), manifest.auth)  # bound to the manifest's topic
    assert not keys.verify("d2", f"{topic}/manifest", manifest.digest(), manifest.auth)


@pytest.mark.parametrize("forged_first", [True, False])
def test_forged_manifest_racing_an_update_is_refused_and_the_real_one_completes(forged_first: bool) -> None:
    """A forged manifest, before the real one or in the middle of its chunks, changes nothing."""
    keys = RunKeys(RUN)
    bus, host, network = _parties(keys)
    topic = host.topics.update(SERVICE, 1, "d1")
    params = _params()
    host.send(topic, params, {"round": 1, "service": SERVICE, "agent_id": "d1"})
    manifest, chunks = _split(bus.poll())
    forged = _forged_transfer(topic, "d1")
    if forged_first:
        order = forged + [manifest] + chunks
    else:
        half = len(chunks) // 2
        order = [manifest] + chunks[:half] + forged + chunks[half:]
    results = _feed(network, order)
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)
    assert torch.equal(results[0].payload.tensors["w"], params["w"])
    assert bus.stats.rejected["forged"] == len(forged)  # the manifest and each forged chunk
    assert network.assembler.held_bytes == 0 and network.assembler.pending == 0


def test_forged_chunks_before_the_manifest_are_purged_when_it_arrives() -> None:
    """Forged chunks that arrive first are held as candidates; the real manifest keeps only the real ones."""
    keys = RunKeys(RUN)
    bus, host, network = _parties(keys)
    topic = host.topics.update(SERVICE, 1, "d1")
    params = _params()
    host.send(topic, params, {"round": 1, "service": SERVICE, "agent_id": "d1"})
    manifest, chunks = _split(bus.poll())
    _, forged_chunks = _split(_forged_transfer(topic, "d1"))
    assert _feed(network, forged_chunks + chunks[:2]) == []
    assert network.assembler.held_bytes > 0
    results = _feed(network, [manifest] + chunks[2:])
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)
    assert torch.equal(results[0].payload.tensors["b"], params["b"])
    assert bus.stats.rejected["forged"] == len(forged_chunks)
    assert network.assembler.held_bytes == 0


def test_forged_global_model_manifest_is_refused_by_a_host() -> None:
    """Only the network's Ed25519 signature makes a global model's manifest; a host refuses any other."""
    keys = RunKeys(RUN)
    bus, host, network = _parties(keys)
    topic = network.topics.global_model(SERVICE, 1)
    params = _params(3)
    network.send(topic, params, {"round": 1, "service": SERVICE}, retain=True)
    manifest, chunks = _split(bus.poll())
    forged = _forged_transfer(topic, None)
    # a device's HMAC over the manifest is no network signature either
    doc = Manifest.from_bytes(forged[0].payload, max_bytes=1 << 20)
    hmac_signed = doc.signed(keys.credentials(["d1"]).sign("d1", forged[0].topic, doc.digest()))
    attack = [forged[0], Message(forged[0].topic, hmac_signed.to_bytes())] + forged[1:]
    results = _feed(host, attack + [manifest] + chunks)
    assert len(results) == 1 and isinstance(results[0], ReceivedModel) and results[0].kind == "global"
    assert torch.equal(results[0].payload.tensors["w"], params["w"])
    assert bus.stats.rejected["forged"] == len(attack)


def test_unsigned_manifest_is_forged_and_leaves_no_state() -> None:
    """With a verifier, a manifest without auth is refused before anything is held."""
    keys = RunKeys(RUN)
    bus, _, network = _parties(keys)
    topic = network.topics.update(SERVICE, 1, "d1")
    manifest, _ = split_chunks(b"x" * 1000, 200)
    assert _feed(network, [Message(f"{topic}/manifest", manifest.to_bytes())]) == []
    assert bus.stats.rejected["forged"] == 1
    assert network.assembler.pending == 0


def test_without_a_verifier_unsigned_manifests_work_as_before() -> None:
    """Tests and tools without keys: unsigned chunked transfers still reassemble."""
    bus = LocalBus()
    topics = Topics(RUN)
    exchange = ModelExchange(bus, topics, chunk_bytes=200, max_payload_bytes=1 << 20)
    bus.subscribe(topics.ml_filter(SERVICE))
    exchange.send(topics.update(SERVICE, 1, "d1"), _params(), {"round": 1, "agent_id": "d1"})
    messages = bus.poll()
    assert b'"auth"' not in _split(messages)[0].payload
    results = _feed(exchange, messages)
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)


@pytest.mark.parametrize(
    ("n_chunks", "total_bytes", "kind"),
    [
        (10**12, 10**12, "oversized"),  # total above max_bytes
        (10**12, 1000, "oversized"),  # more chunks than MAX_CHUNKS
        (MAX_CHUNKS + 1, 1 << 19, "oversized"),
        (10, 5, "malformed"),  # more chunks than bytes
        (0, 5, "malformed"),
        (True, 5, "malformed"),  # a bool is not a count
    ],
)
def test_giant_or_inconsistent_manifest_is_refused(n_chunks: object, total_bytes: int, kind: str) -> None:
    """n_chunks is bounded: 1 ≤ n_chunks ≤ total_bytes, ≤ MAX_CHUNKS; total_bytes ≤ max_payload_bytes."""
    bus = LocalBus()
    topics = Topics(RUN)
    exchange = ModelExchange(bus, topics, chunk_bytes=200, max_payload_bytes=1 << 20)
    body = b'{"schema":"twin.chunks.v1","n_chunks":%s,"sha256":"%s","total_bytes":%d}' % (
        str(n_chunks).lower().encode(),
        b"0" * 64,
        total_bytes,
    )
    assert _feed(exchange, [Message(f"{topics.update(SERVICE, 1, 'd1')}/manifest", body)]) == []
    assert bus.stats.rejected[kind] == 1
    assert exchange.assembler.pending == 0


def test_split_chunks_never_makes_more_than_max_chunks() -> None:
    """Chunks grow beyond chunk_bytes rather than exceed MAX_CHUNKS, so every manifest is acceptable."""
    payload = bytes(range(256)) * 64  # 16 KiB in 1-byte chunks would be 16,384 chunks
    manifest, chunks = split_chunks(payload, 1)
    assert manifest.n_chunks == len(chunks) <= MAX_CHUNKS
    assert b"".join(chunks) == payload
    assert Manifest.from_bytes(manifest.to_bytes(), max_bytes=len(payload)) == manifest


def test_resend_request_is_bounded_and_deduplicated() -> None:
    """The largest resend request fits the cap; longer bodies are refused; repeated indices count once."""
    keys = RunKeys(RUN)
    bus, host, network = _parties(keys)
    root = network.topics.resend(SERVICE, 1, "d1")
    widest = ",".join(str(i) for i in range(MAX_CHUNKS)).encode()
    assert len(widest) <= RESEND_MAX_BYTES
    got = _feed(host, [Message(root, widest), Message(root, b"1,1,1,2,1"), Message(root, b"1," * 20_000)])
    assert got[0] == ResendRequest(SERVICE, 1, "d1", tuple(range(MAX_CHUNKS)))
    assert got[1] == ResendRequest(SERVICE, 1, "d1", (1, 2))
    assert len(got) == 2 and bus.stats.rejected["oversized"] == 1
    for bad in (b"4096", b"-1", b"\xd9\xa3", b"1;2", b"99999"):
        assert _feed(host, [Message(root, bad)]) == []
    assert bus.stats.rejected["malformed"] == 5


def test_resend_publishes_each_asked_chunk_once() -> None:
    """A resend request naming a chunk many times publishes it once (no amplification)."""
    keys = RunKeys(RUN)
    bus, host, _ = _parties(keys)
    topic = host.topics.update(SERVICE, 1, "d1")
    host.send(topic, _params(), {"round": 1, "service": SERVICE, "agent_id": "d1"})
    bus.poll()
    assert host.resend(topic, (1, 1, 1, 1, 0))
    assert sorted(m.topic.rsplit("/", 1)[1] for m in bus.poll()) == ["0", "1"]


def test_orphan_chunks_over_the_budget_are_dropped_and_counted() -> None:
    """40 large chunks with no manifest: what exceeds the per-sender/total budget is dropped and counted."""
    bus = LocalBus()
    topics = Topics(RUN)
    max_payload = 100_000
    exchange = ModelExchange(bus, topics, chunk_bytes=200, max_payload_bytes=max_payload)
    blob = b"\x01" * 40_000
    same_sender = [Message(f"{topics.update(SERVICE, 1, 'd1')}/chunk/{i}", blob) for i in range(40)]
    many_senders = [Message(f"{topics.update(SERVICE, 1, f'x{i}')}/chunk/0", blob) for i in range(40)]
    assert _feed(exchange, same_sender) == []
    held = exchange.assembler
    assert held.sender_bytes("d1") <= held.max_sender_bytes == 2 * max_payload
    assert bus.stats.rejected["chunks_dropped"] == 40 - 5  # 5 × 40 kB fit in 200 kB
    assert _feed(exchange, many_senders) == []
    assert held.held_bytes <= held.max_total_bytes == 4 * max_payload
    assert bus.stats.rejected["chunks_dropped"] == 35 + 40 - 5  # 400 kB in all: 10 chunks held
    assert bus.stats.as_dict()["rejected_chunks_dropped"] == 70


def test_real_transfer_completes_despite_a_flood_of_orphan_chunks() -> None:
    """Chunks the authenticated manifest vouches for evict chunks that still wait for a manifest."""
    keys = RunKeys(RUN)
    bus, host, network = _parties(keys)
    network._assembler = ChunkAssembler(max_bytes=1 << 20, max_total_bytes=4000, max_sender_bytes=3000)
    topic = host.topics.update(SERVICE, 1, "d1")
    params = _params()
    host.send(topic, params, {"round": 1, "service": SERVICE, "agent_id": "d1"})
    manifest, chunks = _split(bus.poll())
    flood = [Message(f"{host.topics.update(SERVICE, 1, f'x{i}')}/chunk/0", b"\x02" * 190) for i in range(30)]
    flood += [Message(f"{topic}/chunk/{i}", b"\x03" * 190) for i in range(20)]  # the real sender's name
    _feed(network, flood)
    assert network.assembler.held_bytes > 3000
    results = _feed(network, [manifest] + chunks)
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)
    assert torch.equal(results[0].payload.tensors["w"], params["w"])
    assert bus.stats.rejected["chunks_dropped"] > 0


def test_partials_of_past_rounds_are_dropped() -> None:
    """forget_received drops what was gathered for rounds that are over, and counts its chunks."""
    bus = LocalBus()
    topics = Topics(RUN)
    exchange = ModelExchange(bus, topics, chunk_bytes=200, max_payload_bytes=1 << 20)
    old = [Message(f"{topics.update(SERVICE, 1, 'd1')}/chunk/{i}", b"a" * 100) for i in range(3)]
    other = [Message(f"{topics.update('other', 1, 'd1')}/chunk/0", b"b" * 100)]
    new = [Message(f"{topics.update(SERVICE, 2, 'd1')}/chunk/0", b"c" * 100)]
    _feed(exchange, old + other + new)
    assert exchange.assembler.pending == 3
    exchange.forget_received(2, service=SERVICE)
    assert exchange.assembler.pending == 2 and exchange.assembler.held_bytes == 200
    assert bus.stats.rejected["chunks_expired"] == 3
    exchange.forget_received(3)
    assert exchange.assembler.pending == 0 and bus.stats.rejected["chunks_expired"] == 5


def test_idle_partials_expire_by_wall_clock() -> None:
    """A partial nothing was added to for max_age_s is dropped (e.g. one for a far future round)."""
    now = [0.0]
    assembler = ChunkAssembler(max_bytes=1 << 20, max_age_s=60.0, clock=lambda: now[0])
    assembler.add_chunk("far-future", 0, b"x" * 10, sender="d1", round_index=10**9)
    now[0] = 30.0
    assembler.add_chunk("recent", 0, b"y" * 10, sender="d2")
    now[0] = 61.0
    assembler.add_chunk("recent", 1, b"z" * 10, sender="d2")
    assert assembler.pending == 1 and assembler.sender_bytes("d1") == 0
    assert assembler.take_counts()["chunks_expired"] == 1


def test_pending_transfers_per_sender_are_bounded_but_a_manifest_gets_in() -> None:
    """A sender's partials are capped; a manifest evicts a manifest-less partial to open its own."""
    assembler = ChunkAssembler(max_bytes=1 << 20, max_pending_per_sender=4)
    for i in range(4):
        assembler.add_chunk(f"junk{i}", 0, b"j", sender=NETWORK)
    with pytest.raises(PayloadError) as info:
        assembler.add_chunk("junk4", 0, b"j", sender=NETWORK)
    assert info.value.kind == "chunks_dropped"
    assembler.add_chunk("other", 0, b"j", sender="d1")  # another sender is not affected
    payload = b"real payload" * 10
    manifest, chunks = split_chunks(payload, 50)
    assembler.add_manifest("real", manifest, sender=NETWORK)
    assert assembler.take_counts()["chunks_dropped"] == 1
    out = [assembler.add_chunk("real", i, c, sender=NETWORK) for i, c in enumerate(chunks)]
    assert out[-1] == payload


def test_a_manifest_of_a_newer_round_evicts_the_oldest_round() -> None:
    """With every slot of a sender holding a manifest, a newer round's manifest replaces the oldest round."""
    assembler = ChunkAssembler(max_bytes=1 << 20, max_pending_per_sender=2)
    manifest, _ = split_chunks(b"p" * 100, 10)
    assembler.add_manifest("r1", manifest, sender=NETWORK, round_index=1)
    assembler.add_manifest("r2", manifest, sender=NETWORK, round_index=2)
    with pytest.raises(PayloadError):
        assembler.add_manifest("r0", manifest, sender=NETWORK, round_index=0)
    assembler.add_manifest("r3", manifest, sender=NETWORK, round_index=3)
    assert assembler.missing("r1") is None and assembler.missing("r3") is not None


def test_duplicate_candidates_and_identical_manifests() -> None:
    """The same chunk twice before its manifest is a duplicate; the same manifest again changes nothing."""
    payload = b"q" * 300
    manifest, chunks = split_chunks(payload, 100)
    assembler = ChunkAssembler(max_bytes=1 << 20)
    assembler.add_chunk("k", 0, chunks[0])
    with pytest.raises(PayloadError) as info:
        assembler.add_chunk("k", 0, chunks[0])
    assert info.value.kind == "duplicate"
    assembler.add_manifest("k", manifest.to_bytes())
    assembler.add_chunk("k", 1, chunks[1])
    assert assembler.add_manifest("k", manifest.signed("ab").to_bytes()) is None
    assert assembler.missing("k") == [2]
    assert assembler.add_chunk("k", 2, chunks[2]) == payload
    assert hashlib.sha256(payload).hexdigest() == manifest.sha256


@pytest.mark.parametrize("segment", ["²", "٣", "9" * 5000])
def test_odd_digits_in_a_model_topic_are_unknown_not_a_crash(segment: str) -> None:
    """A round or chunk index that is not plain ASCII digits is an unknown topic, never a ValueError."""
    bus = LocalBus()
    topics = Topics(RUN)
    exchange = ModelExchange(bus, topics, chunk_bytes=200, max_payload_bytes=1 << 20)
    root = f"{topics.root}/ml/{SERVICE}"
    messages = [Message(f"{root}/{segment}/global", b"x"), Message(f"{root}/1/global/chunk/{segment}", b"x")]
    assert _feed(exchange, messages) == []
    assert bus.stats.rejected["unknown"] == 2


@pytest.mark.parametrize("body", [b"[" * 200_000, b'{"n_chunks":' + b"9" * 5000 + b"}"])
def test_hostile_json_in_a_manifest_is_malformed_not_a_crash(body: bytes) -> None:
    """Deep nesting (RecursionError) and a 5000-digit integer (ValueError) are PayloadErrors."""
    with pytest.raises(PayloadError) as info:
        Manifest.from_bytes(body, max_bytes=1 << 20)
    assert info.value.kind == "malformed"
