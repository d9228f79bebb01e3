"""The embedded broker runs in a process of its own, started and stopped by its owner, never orphaned."""

from __future__ import annotations

import asyncio
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest

from broker.connect import open_bus
from broker.embedded import EmbeddedBroker
from twin.errors import TwinError

pytestmark = pytest.mark.broker


def _accepts(port: int) -> bool:
    try:
        with socket.create_connection(("127.0.0.1", port), timeout=0.5):
            return True
    except OSError:
        return False


def _alive(pid: int) -> bool:
    """Whether ``pid`` runs (a zombie waiting for its reaper counts as gone)."""
    status = Path(f"/proc/{pid}/status")
    if status.exists():
        try:
            return "\nState:\tZ" not in status.read_text()
        except OSError:
            return False
    try:
        os.kill(pid, 0)
    except OSError:
        return False
    return True


def _wait_until(condition: object, timeout_s: float) -> bool:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if condition():  # type: ignore[operator]
            return True
        time.sleep(0.1)
    return False


def test_broker_runs_in_its_own_process_and_stops() -> None:
    """The broker listens in a child process on a loopback port; stop() ends it and is idempotent."""
    # Prepare
    broker = EmbeddedBroker()
    # Execute
    with broker:
        pid = broker.pid
        # Assert
        assert pid is not None and pid != os.getpid()
        assert broker.url == f"mqtt://127.0.0.1:{broker.port}"
        assert _accepts(broker.port)
    assert broker.pid is None
    assert _wait_until(lambda: not _alive(pid), 5)
    assert not _accepts(broker.port)
    broker.stop()


def test_messages_travel_through_the_broker_process() -> None:
    """open_bus("embedded") connects a client to the child broker; a message comes back to it."""
    # Prepare
    handle = open_bus("embedded")
    try:
        handle.bus.subscribe("twin/v1/test/#")
        # Execute
        handle.bus.publish("twin/v1/test/hello", b"hi")
        received = []
        deadline = time.monotonic() + 10
        while not received and time.monotonic() < deadline:
            received = handle.bus.poll(0.2)
        # Assert
        assert [(m.topic, m.payload) for m in received] == [("twin/v1/test/hello", b"hi")]
        assert handle.embedded is not None and handle.embedded.pid is not None
        pid = handle.embedded.pid
    finally:
        handle.close()
    assert _wait_until(lambda: not _alive(pid), 5)


def test_big_messages_cross_the_broker_intact_and_its_records_log_cheaply() -> None:
    """Packed updates are ≈ 250 kB: they cross intact, QoS 1, in order; amqtt's per-message debug
    f-string formats our record, whose repr no longer holds the payload (it cost ≈ 1.5 ms a message)."""
    from amqtt.broker import Broker

    from broker.embedded_server import Broadcast, quiet_broker_class

    record = Broadcast(session=None, topic="t/x", data=b"\xff" * 300_000)
    assert len(f"{record}") < 100 and "300000 B" in f"{record}"
    assert issubclass(quiet_broker_class(), Broker)
    assert "_broadcast_message" in vars(quiet_broker_class())  # amqtt still has the hook we override
    assert "_broadcast_message" in vars(Broker)
    broker = object.__new__(quiet_broker_class())  # the override alone: what it queues
    broker._broadcast_queue = asyncio.Queue()
    asyncio.run(broker._broadcast_message(None, "t/y", b"\x00" * 10, force_qos=1))
    queued = broker._broadcast_queue.get_nowait()
    assert type(queued) is Broadcast and queued == {
        "session": None,
        "topic": "t/y",
        "data": b"\x00" * 10,
        "qos": 1,
    }
    handle = open_bus("embedded")
    try:
        handle.bus.subscribe("twin/v1/test/#")
        payloads = [bytes([i]) * 250_000 for i in range(8)]
        for i, payload in enumerate(payloads):
            handle.bus.publish(f"twin/v1/test/{i}", payload)
        received: list = []
        deadline = time.monotonic() + 20
        while len(received) < len(payloads) and time.monotonic() < deadline:
            received += handle.bus.poll(0.2)
        assert [(m.topic, m.payload) for m in received] == [
            (f"twin/v1/test/{i}", p) for i, p in enumerate(payloads)
        ]
    finally:
        handle.close()


def test_port_in_use_is_a_clear_error() -> None:
    """A port that is taken gives a one-line TwinError naming host and port."""
    # Prepare
    with socket.socket() as taken:
        taken.bind(("127.0.0.1", 0))
        taken.listen()
        port = taken.getsockname()[1]
        # Execute
        with pytest.raises(TwinError) as caught:
            EmbeddedBroker(port=port).start()
    # Assert
    message = str(caught.value)
    assert f"failed to start on 127.0.0.1:{port}" in message
    assert "in use" in message and "\n" not in message


def test_broker_dies_with_its_parent() -> None:
    """When the process owning the broker is SIGKILLed, the broker process exits on its own."""
    # Prepare
    script = textwrap.dedent(
        """
        import time
        from broker.embedded import EmbeddedBroker
        broker = EmbeddedBroker().start()
        print(broker.pid, broker.port, flush=True)
        time.sleep(120)
        """
    )
    owner = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    try:
        assert owner.stdout is not None
        pid, port = (int(v) for v in owner.stdout.readline().split())
        assert _alive(pid) and _accepts(port)
        # Execute
        os.kill(owner.pid, signal.SIGKILL)
        owner.wait(10)
        # Assert
        assert _wait_until(lambda: not _alive(pid), 10), "the broker outlived its parent"
        assert not _accepts(port)
    finally:
        if owner.poll() is None:
            owner.kill()
            owner.wait()
