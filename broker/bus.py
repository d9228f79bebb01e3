"""The small bus interface the model talks to, its message type and counters, and an in-process bus.

Agents never call paho directly: they publish through a :class:`Bus` and the model drains received
messages in its own step (``poll``), so message handling runs on the model's thread, in a
deterministic order chosen by the receiver.
"""

from __future__ import annotations

import queue
from collections import Counter
from dataclasses import dataclass, field
from typing import Protocol

from broker.topics import topic_matches


@dataclass(frozen=True, slots=True)
class Message:
    """A received MQTT message."""

    topic: str
    payload: bytes
    retain: bool = False


@dataclass(slots=True)
class BusStats:
    """Message counters of a run (all kinds of rejected input are counted, never raised)."""

    published: int = 0
    published_bytes: int = 0
    received: int = 0
    received_bytes: int = 0
    rejected: Counter[str] = field(default_factory=Counter)
    reconnects: int = 0

    def reject(self, kind: str) -> None:
        """Count a rejected message of ``kind`` (malformed, oversized, unknown, duplicate, late, …)."""
        self.rejected[kind] += 1

    def as_dict(self) -> dict[str, int]:
        """Flat counters for the run summary."""
        out = {
            "published": self.published,
            "published_bytes": self.published_bytes,
            "received": self.received,
            "received_bytes": self.received_bytes,
            "reconnects": self.reconnects,
        }
        out.update({f"rejected_{k}": v for k, v in sorted(self.rejected.items())})
        return out


def drain(inbox: queue.SimpleQueue[Message], stats: BusStats, timeout_s: float) -> list[Message]:
    """Everything in ``inbox``, waiting up to ``timeout_s`` for the first message; counted in ``stats``."""
    out: list[Message] = []
    try:
        out.append(inbox.get(timeout=timeout_s) if timeout_s > 0 else inbox.get_nowait())
        while True:
            out.append(inbox.get_nowait())
    except queue.Empty:
        pass
    stats.received += len(out)
    stats.received_bytes += sum(len(m.payload) for m in out)
    return out


class Bus(Protocol):
    """What the model needs from a message bus."""

    stats: BusStats
    url: str

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Publish one message (non-blocking)."""

    def subscribe(self, topic_filter: str) -> None:
        """Receive messages matching ``topic_filter`` from now on."""

    def poll(self, timeout_s: float = 0.0) -> list[Message]:
        """Return the messages received so far, waiting up to ``timeout_s`` for the first one."""

    def check(self) -> None:
        """Raise if the bus is gone for good (e.g. broker away longer than the reconnect timeout)."""

    def close(self) -> None:
        """Disconnect and release every resource."""


class LocalBus:
    """In-process bus with MQTT semantics (wildcards, retained messages): for tests and the viz."""

    url = "local://"

    def __init__(self) -> None:
        self.stats = BusStats()
        self._filters: list[str] = []
        self._retained: dict[str, bytes] = {}
        self._queue: queue.SimpleQueue[Message] = queue.SimpleQueue()

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Deliver to matching subscriptions at once."""
        self.stats.published += 1
        self.stats.published_bytes += len(payload)
        if retain:
            self._retained[topic] = payload
        if any(topic_matches(f, topic) for f in self._filters):
            self._queue.put(Message(topic, bytes(payload)))

    def subscribe(self, topic_filter: str) -> None:
        """Subscribe; matching retained messages are delivered first."""
        self._filters.append(topic_filter)
        for topic, payload in self._retained.items():
            if topic_matches(topic_filter, topic):
                self._queue.put(Message(topic, payload, retain=True))

    def poll(self, timeout_s: float = 0.0) -> list[Message]:
        """Drain the queue."""
        return drain(self._queue, self.stats, timeout_s)

    def check(self) -> None:
        """The in-process bus never goes away."""

    def close(self) -> None:
        """Drop subscriptions and retained messages."""
        self._filters.clear()
        self._retained.clear()
