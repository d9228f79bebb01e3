"""The embedded MQTT broker: amqtt (MQTT 3.1.1) in a child process on a free loopback port.

A fresh install needs nothing else to run a scenario. The broker runs in its own OS process
(:mod:`broker.embedded_server`, started with this interpreter) so that its event loop does not
compete with the model for the GIL. The child stops when the parent closes its stdin, exits or is
killed, so no broker outlives the run that started it. ``twin broker`` serves the same broker in
the foreground so external tools (Grafana, Node-RED, Telegraf, mosquitto_sub) can connect to it.
"""

from __future__ import annotations

import contextlib
import logging
import os
import queue
import socket
import subprocess
import sys
import threading
from pathlib import Path
from types import TracebackType
from typing import IO

from twin.errors import TwinError

_PROJECT_ROOT = Path(__file__).resolve().parents[1]
_PORT_ATTEMPTS = 3
_log = logging.getLogger(__name__)


def _free_port(host: str) -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind((host, 0))
        return int(sock.getsockname()[1])


def _child_env() -> dict[str, str]:
    """This environment, with the project importable in the child even without an install."""
    env = dict(os.environ)
    path = env.get("PYTHONPATH")
    env["PYTHONPATH"] = str(_PROJECT_ROOT) + (os.pathsep + path if path else "")
    return env


class EmbeddedBroker:
    """Start/stop an amqtt broker in a child process.

    Use as a context manager, or call :meth:`start` and :meth:`stop`. Without ``port`` a free
    loopback port is chosen (and another one if that one is taken before the broker binds it).
    ``password_file`` (``user:hash`` lines) admits only its users (required off loopback);
    ``certfile`` and ``keyfile`` make it serve TLS (see :func:`broker.embedded_server.serve`).
    """

    def __init__(
        self,
        host: str = "127.0.0.1",
        port: int | None = None,
        *,
        password_file: str | Path | None = None,
        certfile: str | Path | None = None,
        keyfile: str | Path | None = None,
    ) -> None:
        self.host = host
        self._auto_port = port is None
        self.port = port or _free_port(host)
        self._security = [
            arg
            for flag, value in (
                ("--password-file", password_file),
                ("--tls-cert", certfile),
                ("--tls-key", keyfile),
            )
            if value is not None
            for arg in (flag, str(value))
        ]
        self._tls = certfile is not None
        self._proc: subprocess.Popen[bytes] | None = None
        self._lines: queue.Queue[str | None] = queue.Queue()

    @property
    def url(self) -> str:
        """``mqtt://host:port`` of this broker (``mqtts://`` when it serves TLS)."""
        return f"{'mqtts' if self._tls else 'mqtt'}://{self.host}:{self.port}"

    @property
    def pid(self) -> int | None:
        """Process id of the broker's process while it runs."""
        return self._proc.pid if self._proc is not None else None

    def start(self, timeout_s: float = 10.0) -> EmbeddedBroker:
        """Start the broker process and wait until it accepts connections.

        Raises:
            TwinError: the broker did not start (port in use, amqtt missing) or not in time.
        """
        for attempt in range(_PORT_ATTEMPTS):
            error = self._start_once(timeout_s)
            if error is None:
                return self
            retry = self._auto_port and "in use" in error.lower() and attempt + 1 < _PORT_ATTEMPTS
            if not retry:
                raise TwinError(error)
            self.port = _free_port(self.host)
        raise AssertionError("unreachable")  # pragma: no cover

    def _start_once(self, timeout_s: float) -> str | None:
        """Start one child; ``None`` once it is ready, else the one-line reason it is not."""
        command = [
            sys.executable,
            "-m",
            "broker.embedded_server",
            "--host",
            self.host,
            "--port",
            str(self.port),
            "--parent-pid",
            str(os.getpid()),
            *self._security,
        ]
        self._lines = queue.Queue()
        proc = subprocess.Popen(
            command,
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            env=_child_env(),
        )
        self._proc = proc
        assert proc.stdout is not None
        threading.Thread(
            target=_pump, args=(proc.stdout, self._lines), name="twin-embedded-broker-out", daemon=True
        ).start()
        failed = f"embedded MQTT broker failed to start on {self.host}:{self.port}"
        output: list[str] = []
        while True:
            try:
                line = self._lines.get(timeout=timeout_s)
            except queue.Empty:
                self.stop()
                return f"embedded MQTT broker did not start within {timeout_s:.0f} s"
            if line is None:  # the child exited before saying it is ready
                self.stop()
                tail = output[-1] if output else f"exit status {proc.returncode}"
                return f"{failed}: {tail}"
            if line == f"ready {self.port}":
                return None
            if line.startswith("error "):
                self.stop()
                message = line.removeprefix("error ")
                return message if message.startswith("embedded MQTT broker") else f"{failed}: {message}"
            output.append(line)

    def stop(self, timeout_s: float = 10.0) -> None:
        """Ask the broker to shut down (close its stdin), wait for it, kill it if it hangs (idempotent)."""
        proc = self._proc
        if proc is None:
            return
        if proc.stdin is not None:
            with contextlib.suppress(OSError):  # a broken pipe: the child is gone already
                proc.stdin.close()
        try:
            proc.wait(timeout_s)
        except subprocess.TimeoutExpired:
            _log.debug("embedded broker did not stop within %.0f s; killing it", timeout_s)
            proc.kill()
            proc.wait()
        self._proc = None

    def __enter__(self) -> EmbeddedBroker:
        return self.start()

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()


def _pump(stream: IO[bytes], lines: queue.Queue[str | None]) -> None:
    """Hand the child's output to the parent line by line; ``None`` at end of file."""
    with stream:
        for raw in stream:
            line = raw.decode("utf-8", "replace").rstrip()
            _log.debug("embedded broker: %s", line)
            lines.put(line)
    lines.put(None)
