"""`twin broker` off loopback needs credentials; with a password file only its users get in; TLS verifies."""

from __future__ import annotations

import os
import queue
import shutil
import signal
import socket
import ssl
import subprocess
import sys
import threading
import uuid
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest

from broker.embedded import EmbeddedBroker
from broker.embedded_server import (
    BrokerSecurityError,
    check_security,
    hash_password,
    read_password_file,
    self_signed_certificate,
    verify_password,
)

pytestmark = pytest.mark.broker

USER, PASSWORD = "twin", "s3cret-pass"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


class _Client:
    """A paho client: did the broker accept it, and what did it receive."""

    def __init__(self, port: int, *, auth: tuple[str, str] | None = None, ca: Path | None = None) -> None:
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"t-{uuid.uuid4().hex[:8]}")
        if auth is not None:
            self.client.username_pw_set(*auth)
        if ca is not None:
            self.client.tls_set(ca_certs=str(ca))
        self.outcome: queue.Queue[bool] = queue.Queue()
        self.messages: queue.Queue[bytes] = queue.Queue()
        self.subscribed = threading.Event()
        self.client.on_connect = lambda c, u, f, rc, p: self.outcome.put(not rc.is_failure)
        self.client.on_disconnect = lambda c, u, f, rc, p: self.outcome.put(False)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = lambda c, u, msg: self.messages.put(bytes(msg.payload))
        self.client.connect("127.0.0.1", port)
        self.client.loop_start()

    def accepted(self) -> bool:
        return self.outcome.get(timeout=10)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def _round_trip(port: int, **kwargs: Any) -> bytes:
    """Subscribe with one client, publish with another, return what the first received."""
    sub, pub = _Client(port, **kwargs), _Client(port, **kwargs)
    try:
        assert sub.accepted() and pub.accepted()
        sub.client.subscribe("twin/test/secure", qos=1)
        assert sub.subscribed.wait(10)
        pub.client.publish("twin/test/secure", b"hello", qos=1).wait_for_publish(10)
        return sub.messages.get(timeout=10)
    finally:
        sub.close()
        pub.close()


@pytest.fixture
def password_file(tmp_path: Path) -> Path:
    file = tmp_path / "passwd"
    file.write_text(f"# users\n{USER}:{hash_password(PASSWORD)}\nother:{hash_password('x')}\n")
    return file


def test_refuses_non_loopback_without_password_file() -> None:
    """`twin broker --host 0.0.0.0` without --password-file: one line, exit 2, nothing listens."""
    port = _free_port()
    proc = subprocess.run(
        [sys.executable, "-m", "twin", "broker", "--host", "0.0.0.0", "--port", str(port)],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2, proc.stderr
    assert "Traceback" not in proc.stderr
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and "--password-file" in lines[0] and "0.0.0.0" in lines[0]
    assert "listening" not in proc.stdout


def test_security_rules(password_file: Path, tmp_path: Path) -> None:
    """Loopback may be anonymous; other interfaces need a usable password file; TLS needs cert and key."""
    check_security("127.0.0.1", None)
    check_security("localhost", None)
    check_security("::1", None)
    check_security("0.0.0.0", password_file)
    for host in ("0.0.0.0", "::", "192.168.1.10", "broker.example"):
        with pytest.raises(BrokerSecurityError, match="without credentials"):
            check_security(host, None)
    bad = tmp_path / "bad"
    bad.write_text("twin:plaintext\n")
    with pytest.raises(BrokerSecurityError, match=r"bad:1: expected user:hash"):
        check_security("0.0.0.0", bad)
    with pytest.raises(BrokerSecurityError, match="cannot be read"):
        check_security("0.0.0.0", tmp_path / "missing")
    with pytest.raises(BrokerSecurityError, match="both"):
        check_security("127.0.0.1", None, certfile=password_file)
    assert set(read_password_file(password_file)) == {USER, "other"}


def test_password_hashes() -> None:
    """Mosquitto $7$ and $6$ and amqtt's argon2 hashes verify the right password only."""
    import base64
    import hashlib

    from pwdlib.hashers.argon2 import Argon2Hasher

    salt = b"0123456789ab"
    six = (
        f"$6${base64.b64encode(salt).decode()}$"
        + base64.b64encode(hashlib.sha512(PASSWORD.encode() + salt).digest()).decode()
    )
    for stored in (hash_password(PASSWORD), six, Argon2Hasher().hash(PASSWORD)):
        assert verify_password(PASSWORD, stored)
        assert not verify_password(PASSWORD + "x", stored)
    assert not verify_password(PASSWORD, "$7$broken")


@pytest.mark.skipif(shutil.which("mosquitto_passwd") is None, reason="needs mosquitto_passwd")
def test_mosquitto_passwd_file_is_accepted(tmp_path: Path) -> None:
    """A file written by mosquitto_passwd verifies its user's password."""
    file = tmp_path / "passwd"
    subprocess.run(["mosquitto_passwd", "-c", "-b", str(file), USER, PASSWORD], check=True, timeout=30)
    stored = read_password_file(file)[USER]
    assert stored.startswith("$7$")
    assert verify_password(PASSWORD, stored) and not verify_password("wrong", stored)


def test_password_file_admits_only_its_users(password_file: Path) -> None:
    """Without credentials or with a wrong password a client is refused; with them it publishes/subscribes."""
    with EmbeddedBroker(password_file=password_file) as broker:
        anonymous = _Client(broker.port)
        wrong = _Client(broker.port, auth=(USER, "wrong"))
        try:
            assert not anonymous.accepted()
            assert not wrong.accepted()
        finally:
            anonymous.close()
            wrong.close()
        assert _round_trip(broker.port, auth=(USER, PASSWORD)) == b"hello"


def test_tls_serves_a_verified_certificate(tmp_path: Path) -> None:
    """With a certificate the broker speaks TLS: a client trusting it connects, a default client does not."""
    cert, key = self_signed_certificate(tmp_path, "127.0.0.1")
    assert os.stat(key).st_mode & 0o077 == 0
    with EmbeddedBroker(certfile=cert, keyfile=key) as broker:
        assert broker.url.startswith("mqtts://")
        assert _round_trip(broker.port, ca=cert) == b"hello"
        untrusting = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2)
        untrusting.tls_set()  # the system's CAs: the self-signed certificate is not among them
        with pytest.raises(ssl.SSLCertVerificationError):
            untrusting.connect("127.0.0.1", broker.port)


def test_twin_broker_self_signed_with_password(password_file: Path) -> None:
    """`twin broker --tls-self-signed --password-file F` prints its certificate and serves mqtts to users."""
    port = _free_port()
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin", "broker", "--port", str(port), "--tls-self-signed"]
        + ["--password-file", str(password_file)],
        stdout=subprocess.PIPE,
        stderr=subprocess.STDOUT,
        text=True,
    )
    try:
        assert proc.stdout is not None
        first = proc.stdout.readline()
        assert "self-signed TLS certificate:" in first, first
        cert = Path(first.split("certificate:")[1].split()[0])
        listening = proc.stdout.readline()
        assert f"mqtts://127.0.0.1:{port}" in listening, listening
        assert _round_trip(port, ca=cert, auth=(USER, PASSWORD)) == b"hello"
    finally:
        proc.send_signal(signal.SIGTERM)
        proc.wait(timeout=30)
    assert not cert.exists()  # the throw-away certificate and key are removed when the broker stops
