import torch

from broker.bus import LocalBus, Message
from broker.model_exchange import ModelExchange, ReceivedModel, ResendRequest
from broker.topics import Topics

SERVICE = "svc"


def _setup(chunk_bytes: int = 200) -> tuple[LocalBus, ModelExchange, dict[str, torch.Tensor]]:
    bus = LocalBus()
    topics = Topics("run-1")
    exchange = ModelExchange(bus, topics, chunk_bytes=chunk_bytes, max_payload_bytes=1 << 20)
    params = {"w": torch.arange(100, dtype=torch.float32).reshape(10, 10), "b": torch.ones(10)}
    exchange.register_template(SERVICE, params)
    bus.subscribe(topics.ml_filter(SERVICE))
    return bus, exchange, params


def _meta(agent: str = "d1", rnd: int = 1) -> dict[str, object]:
    return {"round": rnd, "agent_id": agent, "n_samples": 5}


def _deliver(bus: LocalBus, exchange: ModelExchange) -> list[object]:
    return [r for r in (exchange.receive(m) for m in bus.poll()) if r is not None]


def test_chunked_update_arrives_whole() -> None:
    """An update larger than the chunk limit goes out as manifest + chunks and comes back whole."""
    # Prepare
    bus, exchange, params = _setup()
    # Execute
    exchange.send(exchange.topics.update(SERVICE, 1, "d1"), params, _meta())
    results = _deliver(bus, exchange)
    # Assert
    assert bus.stats.published > 2  # manifest + several chunks
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)
    assert results[0].agent_id == "d1" and torch.equal(results[0].payload.tensors["w"], params["w"])


def test_replayed_update_is_counted_not_delivered() -> None:
    """A second copy of an already delivered update is counted as duplicate and ignored."""
    bus, exchange, params = _setup(chunk_bytes=1 << 20)
    topic = exchange.topics.update(SERVICE, 1, "d1")
    exchange.send(topic, params, _meta())
    first = bus.poll()
    assert len(_deliver_messages(exchange, first)) == 1
    assert _deliver_messages(exchange, first) == []
    assert bus.stats.rejected["duplicate"] == 1


def _deliver_messages(exchange: ModelExchange, messages: list[Message]) -> list[object]:
    return [r for r in (exchange.receive(m) for m in messages) if r is not None]


def test_bad_messages_are_counted_and_never_raise() -> None:
    """Unknown topics, garbage, oversized and mismatched-sender payloads are counted per kind."""
    bus, exchange, params = _setup(chunk_bytes=1 << 20)
    root = exchange.topics.root
    good = bus.poll() or None
    assert good is None
    messages = [
        Message(f"{root}/ml/{SERVICE}/1/weird/d1", b"x"),
        Message(f"{root}/ml/{SERVICE}/1/update/d1", b"garbage"),
        Message(f"{root}/ml/{SERVICE}/1/update/d1", b"\x00" * (2 << 20)),
        Message(f"{root}/ml/{SERVICE}/1/update/d2/chunk/0", b"\x00" * (2 << 20)),
    ]
    from broker.codec import encode_model

    messages.append(Message(f"{root}/ml/{SERVICE}/1/update/d2", encode_model(params, _meta("d1"))))
    assert _deliver_messages(exchange, messages) == []
    assert bus.stats.rejected["unknown"] == 1
    assert bus.stats.rejected["malformed"] == 2
    assert bus.stats.rejected["oversized"] == 2


def test_missing_chunk_is_requested_and_resent() -> None:
    """When a chunk is lost, the receiver asks for exactly that chunk and the sender re-publishes it."""
    bus, exchange, params = _setup()
    topic = exchange.topics.update(SERVICE, 1, "d1")
    exchange.send(topic, params, _meta())
    messages = bus.poll()
    lost = next(m for m in messages if m.topic.endswith("/chunk/1"))
    assert _deliver_messages(exchange, [m for m in messages if m is not lost]) == []
    exchange.request_resend(SERVICE, 1, "d1")
    request = _deliver(bus, exchange)
    assert request == [ResendRequest(SERVICE, 1, "d1", (1,))]
    assert exchange.resend(topic, (1,))
    results = _deliver(bus, exchange)
    assert len(results) == 1 and isinstance(results[0], ReceivedModel)


def test_ending_a_round_of_one_service_keeps_what_another_may_still_be_asked_for() -> None:
    """Services (clusters) run their rounds independently: ``forget_sent(5, service=a)`` drops a's older
    payloads only, so b's round-3 update can still be sent again on request."""
    bus, exchange, params = _setup()
    ours = exchange.topics.update("cluster-a", 3, "d1")
    theirs = exchange.topics.update("cluster-b", 3, "d2")
    exchange.send(ours, params, _meta("d1", 3))
    exchange.send(theirs, params, _meta("d2", 3))
    bus.poll()
    # Execute
    exchange.forget_sent(5, service="cluster-a")
    # Assert
    assert not exchange.resend(ours, None)
    assert exchange.resend(theirs, None)
