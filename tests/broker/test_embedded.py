"""The embedded broker runs in a process of its own, started and stopped by its owner, never orphaned."""

from __future__ import annotations

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
