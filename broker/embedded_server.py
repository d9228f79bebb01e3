"""The embedded amqtt broker's own process: ``python -m broker.embedded_server --host H --port P``.

:class:`broker.embedded.EmbeddedBroker` starts this module as a child process so the broker's event
loop does not compete with the model for the GIL. The protocol with the parent is one line on
stdout: ``ready PORT`` once the broker accepts connections, or ``error MESSAGE`` if it cannot start
(exit status 1). The child stops when its stdin reaches end-of-file (the parent closed the pipe,
exited or was killed) or when its parent process is gone, so no broker outlives the run that
started it. ``SIGTERM`` stops it too; ``SIGINT`` is left to the parent (Ctrl-C in a terminal reaches
the whole process group).

This module imports only the standard library and amqtt (no torch, no Mesa), so it starts fast.
``twin broker`` calls :func:`serve` directly, in the foreground.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from typing import Any

from twin.errors import TwinError

QUIET_LOGGERS = ("amqtt", "transitions")
PARENT_POLL_S = 1.0


def broker_config(host: str, port: int) -> dict[str, Any]:
    """The amqtt configuration of the embedded broker: one anonymous TCP listener."""
    return {
        "listeners": {"default": {"type": "tcp", "bind": f"{host}:{port}"}},
        "plugins": {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}},
    }


def quiet_amqtt() -> None:
    """Silence amqtt's own logging (vanished clients are expected traffic, not errors)."""
    for name in QUIET_LOGGERS:
        logging.getLogger(name).setLevel(logging.CRITICAL)


def _log_loop_error(loop: asyncio.AbstractEventLoop, context: dict[str, Any]) -> None:
    """Amqtt leaves tasks of vanished clients failing; that is expected traffic, not a crash."""
    logging.getLogger(__name__).debug(
        "embedded broker: %s", context.get("message"), exc_info=context.get("exception")
    )


async def _serve(
    host: str,
    port: int,
    stop: asyncio.Event,
    on_ready: Callable[[], None],
    watch: Callable[[], bool] | None,
) -> None:
    from amqtt.broker import Broker

    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_error)
    try:
        broker = Broker(broker_config(host, port), loop=loop)
        await broker.start()
    except Exception as exc:  # amqtt wraps bind errors in its own exception types
        detail = " ".join(str(exc).split()) or type(exc).__name__
        raise TwinError(f"embedded MQTT broker failed to start on {host}:{port}: {detail}") from None
    on_ready()
    try:
        while not stop.is_set():
            try:
                await asyncio.wait_for(stop.wait(), PARENT_POLL_S)
            except TimeoutError:
                if watch is not None and not watch():
                    break
    finally:
        try:
            await broker.shutdown()
        except Exception:  # noqa: BLE001 - a broker that fails to shut down cleanly is still stopped
            logging.getLogger(__name__).debug("embedded broker shutdown raised", exc_info=True)


def serve(
    host: str,
    port: int,
    *,
    on_ready: Callable[[], None] = lambda: None,
    stop_signals: tuple[signal.Signals, ...] = (signal.SIGTERM, signal.SIGINT),
    stop_on_stdin_eof: bool = False,
    parent_pid: int | None = None,
) -> None:
    """Serve the broker in this (main) thread until a stop signal, stdin EOF or the parent's death.

    Args:
        host: Interface to listen on.
        port: TCP port.
        on_ready: Called once the broker accepts connections.
        stop_signals: Signals that stop the broker cleanly.
        stop_on_stdin_eof: Stop when stdin reaches end-of-file (the parent closed its pipe or died).
        parent_pid: Stop when this process is no longer our parent.

    Raises:
        TwinError: the broker cannot start (port in use, not permitted).
    """
    quiet_amqtt()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in stop_signals:
            loop.add_signal_handler(signum, stop.set)
        if stop_on_stdin_eof:
            threading.Thread(
                target=_wait_for_eof, args=(loop, stop), name="twin-broker-stdin", daemon=True
            ).start()
        watch = (lambda: os.getppid() == parent_pid) if parent_pid is not None else None
        await _serve(host, port, stop, on_ready, watch)

    asyncio.run(main())


def _wait_for_eof(loop: asyncio.AbstractEventLoop, stop: asyncio.Event) -> None:
    try:
        while sys.stdin.buffer.read(4096):
            pass
    except (OSError, ValueError):
        pass
    loop.call_soon_threadsafe(stop.set)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the child process; returns its exit status."""
    parser = argparse.ArgumentParser(description="The embedded MQTT broker in a process of its own.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--parent-pid", type=int, default=None)
    args = parser.parse_args(argv)
    # Ctrl-C in a terminal reaches the parent too; the parent decides when the broker stops.
    signal.signal(signal.SIGINT, signal.SIG_IGN)

    def ready() -> None:
        print(f"ready {args.port}", flush=True)

    try:
        serve(
            args.host,
            args.port,
            on_ready=ready,
            stop_signals=(signal.SIGTERM,),
            stop_on_stdin_eof=True,
            parent_pid=args.parent_pid,
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error {message}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
