"""Fixtures of the telemetry tests: a run's stream recorded on each broker, once per test session.

The embedded broker is served on its own by ``twin broker`` in a process of its own, as a user would
serve it to external tools; the Mosquitto is the one at 127.0.0.1:1883 (``mosquitto_url``).
"""

from __future__ import annotations

import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from stream_recording import Recording, record_run


@pytest.fixture(scope="session")
def twin_broker_url() -> Iterator[str]:
    """URL of an embedded (amqtt) broker served by ``twin broker`` in its own process."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin", "broker", "--port", str(port)],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 30
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert proc.poll() is None, proc.stderr.read() if proc.stderr else ""
            assert time.monotonic() < deadline, "twin broker did not start"
            time.sleep(0.1)
    yield f"mqtt://127.0.0.1:{port}"
    proc.terminate()
    proc.communicate(timeout=10)


@pytest.fixture(scope="session")
def recordings() -> dict[str, Recording | Exception]:
    """Cache: one recording (or the error that prevented it) per broker for the whole session."""
    return {}


def _recorded(name: str, url: str, recordings: dict[str, Recording | Exception], folder: Path) -> Recording:
    if name not in recordings:
        try:
            recordings[name] = record_run(name, url, folder)
        except Exception as exc:  # noqa: BLE001 - kept so that every test using it fails at once, not anew
            recordings[name] = exc
    found = recordings[name]
    if isinstance(found, Exception):
        raise found
    return found


@pytest.fixture
def embedded_recording(
    twin_broker_url: str,
    recordings: dict[str, Recording | Exception],
    tmp_path_factory: pytest.TempPathFactory,
) -> Recording:
    """A run recorded on the embedded (amqtt) broker."""
    return _recorded("embedded", twin_broker_url, recordings, tmp_path_factory.mktemp("embedded"))


@pytest.fixture
def mosquitto_recording(
    mosquitto_url: str, recordings: dict[str, Recording | Exception], tmp_path_factory: pytest.TempPathFactory
) -> Recording:
    """A run recorded on the Mosquitto at 127.0.0.1:1883."""
    return _recorded("mosquitto", mosquitto_url, recordings, tmp_path_factory.mktemp("mosquitto"))


@pytest.fixture(params=["embedded", "mosquitto"])
def recording(request: pytest.FixtureRequest) -> Recording:
    """The recording on each broker in turn."""
    fixture: Recording = request.getfixturevalue(f"{request.param}_recording")
    return fixture
