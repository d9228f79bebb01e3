"""Shared fixtures: brokers for the tests that need one.

Tests marked ``broker`` use the embedded amqtt broker (always available) and, where a test asks for
``mosquitto_url``, the Mosquitto at 127.0.0.1:1883. Without a Mosquitto there such a test is skipped,
unless ``TWIN_REQUIRE_MOSQUITTO=1`` (set by ``.ci/run`` on a machine that has one) makes it fail.
"""

from __future__ import annotations

import os
import socket
from collections.abc import Iterator

import pytest

from broker.embedded import EmbeddedBroker

MOSQUITTO = ("127.0.0.1", 1883)


def mosquitto_available() -> bool:
    """Whether something accepts TCP connections on the Mosquitto port."""
    try:
        with socket.create_connection(MOSQUITTO, timeout=1.0):
            return True
    except OSError:
        return False


@pytest.fixture(scope="session")
def embedded_broker() -> Iterator[EmbeddedBroker]:
    """One embedded broker for the whole test session."""
    with EmbeddedBroker() as broker:
        yield broker


@pytest.fixture
def mosquitto_url() -> str:
    """URL of the local Mosquitto (skips, or fails under TWIN_REQUIRE_MOSQUITTO=1, when there is none)."""
    if not mosquitto_available():
        if os.environ.get("TWIN_REQUIRE_MOSQUITTO") == "1":
            pytest.fail("TWIN_REQUIRE_MOSQUITTO=1 but nothing listens on 127.0.0.1:1883")
        pytest.skip("no Mosquitto on 127.0.0.1:1883")
    return f"mqtt://{MOSQUITTO[0]}:{MOSQUITTO[1]}"


@pytest.fixture
def chromium() -> str:
    """Path of the headless Chromium for browser tests (skips, or fails under TWIN_REQUIRE_BROWSER=1)."""
    path = os.environ.get("TWIN_CHROMIUM", "/usr/bin/chromium")
    if not os.path.exists(path):
        if os.environ.get("TWIN_REQUIRE_BROWSER") == "1":
            pytest.fail(f"TWIN_REQUIRE_BROWSER=1 but no Chromium at {path}")
        pytest.skip(f"no Chromium at {path}")
    return path
