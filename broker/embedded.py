"""The embedded MQTT broker: amqtt (MQTT 3.1.1) in a background thread on a free loopback port.

A fresh install needs nothing else to run a scenario. ``twin broker`` serves it alone so external
tools (Grafana, Node-RED, Telegraf, mosquitto_sub) can connect to it.
"""

from __future__ import annotations

import asyncio
import logging
import socket
import threading
from types import TracebackType
from typing import Any

from twin.errors import TwinError

_QUIET = ("amqtt", "transitions")


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Amqtt leaves tasks of vanished clients failing; that is expected traffic, not a crash."""
    logging.getLogger(__name__).debug(
        "embedded broker: %s", context.get("message"), exc_info=context.get("exception")
    )


class EmbeddedBroker:
    """Start/stop an amqtt broker in its own thread and event loop.

    Use as a context manager, or call :meth:`start` and :meth:`stop`.
    """

    def __init__(self, host: str = "127.0.0.1", port: int | None = None) -> None:
        self.host = host
        self.port = port or _free_port(host)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._broker: Any = None
        self._started = threading.Event()
        self._error: BaseException | None = None

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of this broker."""
        return f"mqtt://{self.host}:{self.port}"

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        """Start the broker thread and wait until it accepts connections."""
        for name in _QUIET:
            logging.getLogger(name).setLevel(logging.CRITICAL)
        self._thread = threading.Thread(target=self._run, name="twin-embedded-broker", daemon=True)
        self._thread.start()
        if not self._started.wait(timeout_s):
            raise TwinError(f"embedded MQTT broker did not start within {timeout_s:.0f} s")
        if self._error is not None:
            raise TwinError(f"embedded MQTT broker failed to start on {self.host}:{self.port}: {self._error}")
        return self

    def _run(self) -> None:
        from amqtt.broker import Broker

        loop = asyncio.new_event_loop()
        self._loop = loop
        asyncio.set_event_loop(loop)
        loop.set_exception_handler(_log_loop_error)
        config = {
            "listeners": {"default": {"type": "tcp", "bind": f"{self.host}:{self.port}"}},
            "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
        }
        try:
            self._broker = Broker(config, loop=loop)
            loop.run_until_complete(self._broker.start())
        except BaseException as exc:  # reported to the starting thread
            self._error = exc
            self._started.set()
            loop.close()
            return
        self._started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    def stop(self, timeout_s: float = 10.0) -> None:
        """Shut the broker down and join its thread (idempotent)."""
        loop, thread = self._loop, self._thread
        if loop is None or thread is None or not thread.is_alive():
            return
        if self._broker is not None:
            future = asyncio.run_coroutine_threadsafe(self._broker.shutdown(), loop)
            try:
                future.result(timeout_s)
            except Exception:  # noqa: BLE001 - a broker that fails to shut down cleanly is still stopped
                logging.getLogger(__name__).debug("embedded broker shutdown raised", exc_info=True)
        loop.call_soon_threadsafe(loop.stop)
        thread.join(timeout_s)
        self._thread = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()
