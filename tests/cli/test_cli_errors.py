import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

pytestmark = pytest.mark.slow  # each test starts a `twin` process (interpreter + torch import)


def twin(*args: str, timeout: float = 120) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-m", "twin", *args], capture_output=True, text=True, timeout=timeout
    )


def _one_line_error(proc: subprocess.CompletedProcess[str]) -> str:
    lines = [line for line in proc.stderr.strip().splitlines() if line.strip()]
    assert "Traceback" not in proc.stderr, proc.stderr
    assert len(lines) == 1, proc.stderr
    return lines[0]


def test_list_shows_home_health() -> None:
    """`twin list` names the home-health scenario with its paper section."""
    proc = twin("list")
    assert proc.returncode == 0
    assert "home-health" in proc.stdout and "2.3.4" in proc.stdout


def test_unknown_scenario_lists_available() -> None:
    """An unknown scenario is one line naming the available scenarios, exit code 2."""
    proc = twin("run", "no-such-thing")
    line = _one_line_error(proc)
    assert proc.returncode == 2
    assert "no-such-thing" in line and "home-health" in line


def test_bad_set_key_names_the_key() -> None:
    """An unknown --set key is named, with a suggestion of the valid key, exit 2."""
    proc = twin("run", "home-health", "--set", "rounds=3")
    line = _one_line_error(proc)
    assert proc.returncode == 2
    assert "rounds" in line and "fl.rounds" in line


def test_bad_set_value_names_key_and_type() -> None:
    """A --set value of the wrong type names the key and the expected type."""
    proc = twin("run", "home-health", "--set", "fl.rounds=many")
    line = _one_line_error(proc)
    assert proc.returncode == 2
    assert "fl.rounds" in line and "int" in line


def test_out_of_range_value_is_refused() -> None:
    """A value that fails validation (negative deadline) is a one-line error naming the field."""
    proc = twin("run", "home-health", "--set", "fl.deadline_s=-1")
    line = _one_line_error(proc)
    assert proc.returncode == 2
    assert "deadline_s" in line


def test_refused_broker_fails_fast() -> None:
    """A closed port is reported in one line within 10 s, exit code 3."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    started = time.monotonic()
    proc = twin("run", "home-health", "--broker", f"mqtt://127.0.0.1:{port}")
    line = _one_line_error(proc)
    assert proc.returncode == 3
    assert f"127.0.0.1:{port}" in line
    assert time.monotonic() - started < 20  # includes interpreter + torch import


@pytest.fixture
def silent_server() -> Iterator[int]:
    """A TCP server that accepts connections and never answers (not an MQTT broker)."""
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen()
    held: list[socket.socket] = []
    stop = threading.Event()

    def accept() -> None:
        server.settimeout(0.2)
        while not stop.is_set():
            try:
                held.append(server.accept()[0])
            except OSError:
                continue

    thread = threading.Thread(target=accept, daemon=True)
    thread.start()
    yield server.getsockname()[1]
    stop.set()
    thread.join()
    for conn in held:
        conn.close()
    server.close()


def test_silent_broker_times_out_within_10_s(silent_server: int) -> None:
    """A peer that accepts TCP but never sends CONNACK is reported as unreachable within 10 s."""
    from broker.mqtt_bus import MqttBus
    from broker.url import parse_broker_url
    from twin.errors import BrokerUnreachableError

    started = time.monotonic()
    with pytest.raises(BrokerUnreachableError, match="did not accept"):
        MqttBus(parse_broker_url(f"mqtt://127.0.0.1:{silent_server}"))
    assert time.monotonic() - started <= 10.5


def test_malformed_broker_url() -> None:
    """A broker URL with a wrong scheme is a one-line config error."""
    proc = twin("run", "home-health", "--broker", "http://localhost:1883")
    line = _one_line_error(proc)
    assert proc.returncode == 2 and "mqtt://" in line


def test_run_writes_outputs(tmp_path: Path) -> None:
    """A short run on the embedded broker prints its KPI table and writes config, KPIs and summary."""
    proc = twin("run", "home-health", "--rounds", "2", "--set", "devices.count=12", "--out", str(tmp_path))
    assert proc.returncode == 0, proc.stderr
    assert "accuracy" in proc.stdout and "run directory" in proc.stdout
    (run_dir,) = list(tmp_path.iterdir())
    assert {p.name for p in run_dir.iterdir()} >= {
        "config.toml",
        "kpi.parquet",
        "summary.json",
        "qoais.json",
        "qoais.md",
        "events.parquet",
    }
    assert "QoAIS" in proc.stdout and "fall-detection" in (run_dir / "qoais.md").read_text()
    assert "count = 12" in (run_dir / "config.toml").read_text()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("run", "home-health", "--workers", "2", "--broker", "local"), "--workers"),
        (("run", "home-health", "--ray-address", "ray://head:10001", "--workers", "2"), "--ray-address"),
        (("run", "home-health", "--run-id", "bad/id"), "--run-id"),
        (("run", "home-health", "--set", "devices.external=nobody", "--broker", "local"), "devices.external"),
    ],
)
def test_bad_placement_options_are_one_line(args: tuple[str, ...], needle: str) -> None:
    """--workers with the in-process bus, a cluster without a reachable broker, a run id that breaks the
    topic tree, an external device the world does not have: one line naming the option, exit 2."""
    proc = twin(*args)
    assert proc.returncode == 2 and needle in _one_line_error(proc)


def test_device_client_refuses_a_bad_data_file_or_credentials(tmp_path: Path) -> None:
    """`twin device` with a data file that is not safetensors, or no credentials: one line, exit 2."""
    bad = tmp_path / "data.safetensors"
    bad.write_bytes(b"not a tensor file")
    common = ["device", "--broker", "mqtt://127.0.0.1:1", "--run", "r1", "--device", "hh-0001"]
    proc = twin(*common, "--data", str(bad), "--credentials", str(tmp_path / "none.json"))
    assert proc.returncode == 2 and "--data" in _one_line_error(proc)
    good = tmp_path / "good.safetensors"
    import torch
    from safetensors.torch import save_file

    save_file({"x": torch.zeros(4, 64), "y": torch.zeros(4, dtype=torch.int64)}, str(good))
    proc = twin(*common, "--data", str(good), "--credentials", str(tmp_path / "none.json"))
    assert proc.returncode == 2 and "--credentials" in _one_line_error(proc)


def test_out_that_is_a_file_is_refused_before_running(tmp_path: Path) -> None:
    """`--out` naming a file: one line, exit 2, nothing computed."""
    file = tmp_path / "not-a-dir"
    file.write_text("x")
    proc = twin("run", "home-health", "--broker", "local", "--out", str(file))
    assert proc.returncode == 2 and "--out" in _one_line_error(proc)


def test_sigterm_ends_the_run_aborted_with_its_directory_written(tmp_path: Path) -> None:
    """SIGTERM mid-run is handled like Ctrl-C: exit 4, the run directory written, the signal named."""
    import json
    import signal

    run_id = "sigterm-test"
    args = ["run", "home-health", "--broker", "local", "--out", str(tmp_path), "--run-id", run_id]
    args += ["--set", "devices.count=12", "--set", "devices.external=hh-0001"]  # waits for hh-0001
    proc = subprocess.Popen(
        [sys.executable, "-m", "twin", *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE
    )
    marker = tmp_path / run_id / "credentials" / "hh-0001.json"  # written once the run is open
    deadline = time.monotonic() + 60
    while not marker.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert marker.exists()
    time.sleep(0.5)
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=30)
    summary = json.loads((tmp_path / run_id / "summary.json").read_text())
    assert proc.returncode == 4, err
    assert summary["status"] == "aborted" and summary["error"] == "stopped by SIGTERM"
    assert all(q["verdict"].startswith("incomplete") for q in summary["qoais"].values())
