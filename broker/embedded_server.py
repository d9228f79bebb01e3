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

Bound to loopback the broker lets anyone connect (the default). Bound to any other interface it requires
a password file (:func:`read_password_file`: Mosquitto's ``user:$7$…`` / ``user:$6$…`` lines from
``mosquitto_passwd``, or amqtt's ``user:$argon2…``) and refuses to start without one. It serves TLS with
a certificate and key (:func:`self_signed_certificate` makes a throw-away pair).
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import binascii
import dataclasses
import hashlib
import hmac
import ipaddress
import logging
import os
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

from amqtt.plugins.base import BaseAuthPlugin
from amqtt.session import Session

from twin.errors import TwinError

QUIET_LOGGERS = ("amqtt", "transitions")
PARENT_POLL_S = 1.0
MOSQUITTO_ITERATIONS = 101  # mosquitto_passwd's PBKDF2 default
_AUTH_PLUGIN = "broker.embedded_server.PasswordFileAuth"  # by its import name: the child runs as __main__


class Broadcast(dict[str, Any]):
    """amqtt's record of a message to broadcast, with a short ``repr``.

    amqtt 0.12 formats the record into a debug f-string for every message (``Broker._run_broadcast``)
    whether debug logging is on or not; with the payload's ``repr`` that cost ≈ 1.5 ms for a 250 kB
    packed update, most of the broker's CPU in a round of 200 devices (docs/performance.md).
    """

    def __repr__(self) -> str:
        data = self.get("data")
        return f"<message on {self.get('topic')!r}, {len(data) if data is not None else 0} B>"


def quiet_broker_class() -> type[Any]:
    """The amqtt ``Broker`` whose broadcast records are :class:`Broadcast` (same behaviour, cheap logging)."""
    from amqtt.broker import Broker

    class QuietBroker(Broker):  # type: ignore[misc]
        async def _broadcast_message(
            self,
            session: Session | None,
            topic: str | None,
            data: bytes | bytearray | None,
            force_qos: int | None = None,
        ) -> None:
            broadcast = Broadcast(session=session, topic=topic, data=data)
            if force_qos is not None:
                broadcast["qos"] = force_qos
            await self._broadcast_queue.put(broadcast)

    return QuietBroker


class BrokerSecurityError(TwinError):
    """The broker would be open to other machines without credentials, or its password/TLS files are bad."""

    exit_code = 2


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback interface (only this machine can connect)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def broker_config(
    host: str,
    port: int,
    *,
    password_file: str | Path | None = None,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
) -> dict[str, Any]:
    """The amqtt configuration of the embedded broker: one TCP listener, TLS if given a certificate.

    Anonymous without ``password_file``; with it, only the users it lists (:class:`PasswordFileAuth`).
    """
    listener: dict[str, Any] = {"type": "tcp", "bind": f"{host}:{port}"}
    if certfile is not None or keyfile is not None:
        listener.update(ssl=True, certfile=str(certfile), keyfile=str(keyfile))
    plugins: dict[str, Any] = (
        {"amqtt.plugins.authentication.AnonymousAuthPlugin": {"allow_anonymous": True}}
        if password_file is None
        else {_AUTH_PLUGIN: {"password_file": str(password_file)}}
    )
    return {"listeners": {"default": listener}, "plugins": plugins}


def hash_password(password: str, *, salt: bytes | None = None, iterations: int = MOSQUITTO_ITERATIONS) -> str:
    """A Mosquitto ``$7$`` (PBKDF2-SHA512) hash of ``password``, as ``mosquitto_passwd`` writes it."""
    salt = os.urandom(12) if salt is None else salt
    digest = hashlib.pbkdf2_hmac("sha512", password.encode(), salt, iterations)
    return f"$7${iterations}${base64.b64encode(salt).decode()}${base64.b64encode(digest).decode()}"


def verify_password(password: str, stored: str) -> bool:
    """Whether ``password`` matches ``stored`` (Mosquitto ``$7$``/``$6$`` or amqtt ``$argon2…``)."""
    try:
        if stored.startswith("$7$"):
            _, _, iterations, salt, digest = stored.split("$")
            computed = hashlib.pbkdf2_hmac(
                "sha512", password.encode(), base64.b64decode(salt), int(iterations)
            )
        elif stored.startswith("$6$"):
            _, _, salt, digest = stored.split("$")
            computed = hashlib.sha512(password.encode() + base64.b64decode(salt)).digest()
        elif stored.startswith("$argon2"):
            from pwdlib.hashers.argon2 import Argon2Hasher

            return bool(Argon2Hasher().verify(password, stored))
        else:
            return False
        return hmac.compare_digest(computed, base64.b64decode(digest))
    except (ValueError, binascii.Error):
        return False


def read_password_file(path: str | Path) -> dict[str, str]:
    """Users and password hashes of a ``user:hash`` file (``#`` comments and blank lines skipped).

    Raises:
        BrokerSecurityError: the file cannot be read, a line is malformed or its hash unsupported, or
            it lists no user.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise BrokerSecurityError(f"password file {path}: cannot be read ({exc.strerror or exc})") from None
    except UnicodeDecodeError:
        raise BrokerSecurityError(f"password file {path}: not UTF-8 text") from None
    users: dict[str, str] = {}
    for number, raw in enumerate(text.splitlines(), 1):
        line = raw.strip()
        if not line or line.startswith("#"):
            continue
        user, sep, stored = line.partition(":")
        if not sep or not user or not stored.startswith(("$7$", "$6$", "$argon2")):
            raise BrokerSecurityError(
                f"password file {path}:{number}: expected user:hash with a mosquitto_passwd ($7$, $6$) "
                "or argon2 hash"
            )
        users[user] = stored
    if not users:
        raise BrokerSecurityError(f"password file {path} lists no user")
    return users


class PasswordFileAuth(BaseAuthPlugin):
    """amqtt authentication plugin: only the users of a password file, with their password."""

    @dataclasses.dataclass
    class Config:
        """The plugin's configuration (``{"password_file": path}``)."""

        password_file: str = ""

    def __init__(self, context: Any) -> None:
        super().__init__(context)
        self._users = read_password_file(self.config.password_file)

    async def authenticate(self, *, session: Session) -> bool | None:
        """Accept a session whose username is listed and whose password matches its hash."""
        stored = self._users.get(session.username or "") if session is not None else None
        return stored is not None and verify_password(session.password or "", stored)


def self_signed_certificate(folder: str | Path, host: str) -> tuple[Path, Path]:
    """Write a throw-away self-signed certificate and key (``cert.pem``, ``key.pem``) into ``folder``.

    The certificate names localhost, 127.0.0.1, ::1 and ``host``; a client verifies the broker by
    trusting ``cert.pem`` itself (``--cafile``, ``tls_set(ca_certs=…)``). It is valid for 30 days.
    """
    import datetime

    from cryptography import x509
    from cryptography.hazmat.primitives import hashes, serialization
    from cryptography.hazmat.primitives.asymmetric import ec
    from cryptography.x509.oid import ExtendedKeyUsageOID, NameOID

    key = ec.generate_private_key(ec.SECP256R1())
    names: list[x509.GeneralName] = [x509.DNSName("localhost")]
    addresses = {"127.0.0.1", "::1"}
    try:
        addresses.add(str(ipaddress.ip_address(host.strip("[]"))))
    except ValueError:
        if host:
            names.append(x509.DNSName(host))
    names += [x509.IPAddress(ipaddress.ip_address(a)) for a in sorted(addresses)]
    subject = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "aiaas-twin broker")])
    now = datetime.datetime.now(datetime.UTC)
    public = key.public_key()
    cert = (
        x509.CertificateBuilder()
        .subject_name(subject)
        .issuer_name(subject)
        .public_key(public)
        .serial_number(x509.random_serial_number())
        .not_valid_before(now - datetime.timedelta(minutes=5))
        .not_valid_after(now + datetime.timedelta(days=30))
        .add_extension(x509.SubjectAlternativeName(names), critical=False)
        .add_extension(x509.BasicConstraints(ca=True, path_length=0), critical=True)
        .add_extension(
            x509.KeyUsage(
                digital_signature=True,
                content_commitment=False,
                key_encipherment=False,
                data_encipherment=False,
                key_agreement=False,
                key_cert_sign=True,
                crl_sign=False,
                encipher_only=False,
                decipher_only=False,
            ),
            critical=True,
        )
        .add_extension(x509.ExtendedKeyUsage([ExtendedKeyUsageOID.SERVER_AUTH]), critical=False)
        .add_extension(x509.SubjectKeyIdentifier.from_public_key(public), critical=False)
        .add_extension(x509.AuthorityKeyIdentifier.from_issuer_public_key(public), critical=False)
        .sign(key, hashes.SHA256())
    )
    folder = Path(folder)
    cert_path, key_path = folder / "cert.pem", folder / "key.pem"
    cert_path.write_bytes(cert.public_bytes(serialization.Encoding.PEM))
    key_bytes = key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    fd = os.open(key_path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as file:
        file.write(key_bytes)
    return cert_path, key_path


def check_security(
    host: str,
    password_file: str | Path | None,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
) -> None:
    """Refuse a configuration that would open the broker to other machines, or unusable files.

    Raises:
        BrokerSecurityError: ``host`` is not loopback and there is no password file; the password file
            is unusable; only one of certificate and key is given, or one is missing.
    """
    if password_file is None and not is_loopback(host):
        raise BrokerSecurityError(
            f"refusing to serve on {host} without credentials: pass --password-file (user:hash lines "
            "from mosquitto_passwd), or bind to 127.0.0.1"
        )
    if password_file is not None:
        read_password_file(password_file)
    if (certfile is None) != (keyfile is None):
        raise BrokerSecurityError("TLS needs both a certificate (--tls-cert) and its key (--tls-key)")
    for what, path in (("certificate", certfile), ("key", keyfile)):
        if path is not None and not Path(path).is_file():
            raise BrokerSecurityError(f"TLS {what} {path}: no such file")


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
    config: dict[str, Any],
) -> None:
    loop = asyncio.get_running_loop()
    loop.set_exception_handler(_log_loop_error)
    try:
        broker = quiet_broker_class()(config, loop=loop)
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
    password_file: str | Path | None = None,
    certfile: str | Path | None = None,
    keyfile: str | Path | None = None,
) -> None:
    """Serve the broker in this (main) thread until a stop signal, stdin EOF or the parent's death.

    Args:
        host: Interface to listen on.
        port: TCP port.
        on_ready: Called once the broker accepts connections.
        stop_signals: Signals that stop the broker cleanly.
        stop_on_stdin_eof: Stop when stdin reaches end-of-file (the parent closed its pipe or died).
        parent_pid: Stop when this process is no longer our parent.
        password_file: ``user:hash`` lines; only these users may connect. Required off loopback.
        certfile: PEM certificate (chain) to serve TLS with, together with ``keyfile``.
        keyfile: PEM private key of ``certfile``.

    Raises:
        BrokerSecurityError: not loopback and no password file, or an unusable password/TLS file.
        TwinError: the broker cannot start (port in use, not permitted).
    """
    check_security(host, password_file, certfile, keyfile)
    config = broker_config(host, port, password_file=password_file, certfile=certfile, keyfile=keyfile)
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
        await _serve(host, port, stop, on_ready, watch, config)

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
    parser.add_argument("--password-file", default=None)
    parser.add_argument("--tls-cert", default=None)
    parser.add_argument("--tls-key", default=None)
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
            password_file=args.password_file,
            certfile=args.tls_cert,
            keyfile=args.tls_key,
        )
    except Exception as exc:  # noqa: BLE001 - reported to the parent as one line
        message = " ".join(str(exc).split()) or type(exc).__name__
        print(f"error {message}", flush=True)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
