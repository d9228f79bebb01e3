"""Telemetry over TLS with a password: a private Mosquitto with its own CA, followed with `twin watch`."""

from __future__ import annotations

import os
import shutil
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest

from twin.runner import RunOptions, run_scenario

pytestmark = [
    pytest.mark.broker,
    pytest.mark.skipif(
        shutil.which("mosquitto") is None
        or shutil.which("openssl") is None
        or shutil.which("mosquitto_passwd") is None,
        reason="needs mosquitto, mosquitto_passwd and openssl",
    ),
]

USER, PASSWORD = "twin", "s3cret-pass"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def _openssl(*args: str, cwd: Path) -> None:
    subprocess.run(["openssl", *args], cwd=cwd, check=True, capture_output=True, timeout=60)


def _make_certificates(folder: Path) -> None:
    """A private CA and a server certificate for localhost / 127.0.0.1 signed by it."""
    _openssl(
        "req",
        "-x509",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "ca.key",
        "-out",
        "ca.crt",
        "-days",
        "2",
        "-subj",
        "/CN=aiaas-twin test CA",
        "-addext",
        "basicConstraints=critical,CA:TRUE",
        "-addext",
        "keyUsage=critical,keyCertSign,cRLSign",
        cwd=folder,
    )
    _openssl(
        "req",
        "-newkey",
        "rsa:2048",
        "-nodes",
        "-keyout",
        "server.key",
        "-out",
        "server.csr",
        "-subj",
        "/CN=localhost",
        cwd=folder,
    )
    (folder / "server.ext").write_text(
        "subjectAltName=DNS:localhost,IP:127.0.0.1\nbasicConstraints=CA:FALSE\n"
        "keyUsage=digitalSignature,keyEncipherment\nextendedKeyUsage=serverAuth\n"
        "authorityKeyIdentifier=keyid,issuer\n"
    )
    _openssl(
        "x509",
        "-req",
        "-in",
        "server.csr",
        "-CA",
        "ca.crt",
        "-CAkey",
        "ca.key",
        "-CAcreateserial",
        "-out",
        "server.crt",
        "-days",
        "2",
        "-extfile",
        "server.ext",
        cwd=folder,
    )


@pytest.fixture(scope="module")
def tls_broker(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[str, Path]]:
    """A Mosquitto of its own: TLS only, username and password required. Yields (host:port, CA file)."""
    folder = tmp_path_factory.mktemp("tls-broker")
    _make_certificates(folder)
    subprocess.run(
        ["mosquitto_passwd", "-b", "-c", str(folder / "passwd"), USER, PASSWORD],
        check=True,
        capture_output=True,
        timeout=30,
    )
    for path in folder.iterdir():
        path.chmod(0o644)
    folder.chmod(0o755)
    port = _free_port()
    (folder / "mosquitto.conf").write_text(
        f"listener {port} 127.0.0.1\ncertfile {folder / 'server.crt'}\nkeyfile {folder / 'server.key'}\n"
        f"allow_anonymous false\npassword_file {folder / 'passwd'}\npersistence false\nlog_dest stderr\n"
        + ("user root\n" if os.geteuid() == 0 else "")
    )
    broker = subprocess.Popen(
        ["mosquitto", "-c", str(folder / "mosquitto.conf")],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.monotonic() + 10
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
            break
        except OSError:
            assert broker.poll() is None, broker.stderr.read() if broker.stderr else ""
            assert time.monotonic() < deadline, "the TLS Mosquitto did not start"
            time.sleep(0.1)
    yield f"localhost:{port}", folder / "ca.crt"
    broker.terminate()
    broker.communicate(timeout=10)


def _twin(*args: str, ca_file: Path | None) -> subprocess.Popen[str]:
    env = {k: v for k, v in os.environ.items() if k != "SSL_CERT_FILE"}
    if ca_file is not None:
        env["SSL_CERT_FILE"] = str(ca_file)
    return subprocess.Popen(
        [sys.executable, "-m", "twin", *args],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=env,
    )


def test_run_and_watch_over_tls_with_password(
    tls_broker: tuple[str, Path], tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A run publishes over mqtts:// with user:pass and `twin watch` follows it there; no password leaks."""
    # Prepare
    address, ca_file = tls_broker
    url = f"mqtts://{USER}:{PASSWORD}@{address}"
    run_id = f"tls-test-{uuid.uuid4().hex[:8]}"
    monkeypatch.setenv("SSL_CERT_FILE", str(ca_file))
    watcher = _twin("watch", run_id, "--broker", url, "--timeout", "60", ca_file=ca_file)
    assert watcher.stderr is not None
    assert watcher.stderr.readline().startswith(f"watching run {run_id} on mqtts://{USER}@{address}")
    # Execute
    result = run_scenario(
        RunOptions(scenario="home-health", rounds=1, broker=url, out_dir=tmp_path, run_id=run_id)
    )
    out, err = watcher.communicate(timeout=60)
    # Assert
    assert result.status == "finished"
    assert watcher.returncode == 0, err
    assert "finished" in out and f"mqtts://{USER}@{address}" in out
    assert PASSWORD not in out + err
    assert not [f.name for f in result.run_dir.iterdir() if PASSWORD.encode() in f.read_bytes()]


@pytest.mark.parametrize(
    ("credentials", "trusted", "words"),
    [
        (f"{USER}:wrong", True, "refused the connection"),
        (f"{USER}:{PASSWORD}", False, "CERTIFICATE_VERIFY_FAILED"),
    ],
)
def test_bad_password_or_untrusted_certificate_is_refused(
    tls_broker: tuple[str, Path], credentials: str, trusted: bool, words: str
) -> None:
    """A wrong password, or a certificate from a CA the client does not trust, is a one-line exit 3."""
    # Prepare
    address, ca_file = tls_broker
    # Execute
    proc = _twin(
        "watch",
        "any-run",
        "--broker",
        f"mqtts://{credentials}@{address}",
        ca_file=ca_file if trusted else None,
    )
    out, err = proc.communicate(timeout=60)
    # Assert
    lines = [line for line in err.splitlines() if line.strip()]
    assert proc.returncode == 3
    assert len(lines) == 1 and words in lines[0] and "Traceback" not in err
