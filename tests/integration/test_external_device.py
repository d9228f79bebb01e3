"""A real device joins a run: the reference client (``twin device``) in its own process.

The run reserves one device (``devices.external``); the client trains it on its own data file and
uploads over a real MQTT broker. With the same data and seed as the twin would have used, the run's
federated KPIs are exactly those of the run that hosts every device itself: the client's update was
decoded, weighted and aggregated like any other.
"""

from __future__ import annotations

import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pandas as pd
import pytest

from broker.embedded import EmbeddedBroker
from twin.device_client import save_device_data
from twin.runner import RunOptions, RunResult, RunSession, run_scenario

pytestmark = [pytest.mark.slow, pytest.mark.broker]

DEVICE = "hh-0003"
SMALL = {
    "devices.count": "12",
    "inference.interval_s": "4",
    "fl.clients_per_round": "1",
    "fl.dropout_prob": "0",
}
FL_COLUMNS = [
    "round",
    "selected",
    "accepted",
    "stragglers",
    "offline",
    "samples",
    "accuracy",
    "loss",
    "energy_round_j",
    "bits_up",
    "bits_down",
    "round_latency_s",
]


@pytest.fixture()
def broker_url() -> Iterator[str]:
    with EmbeddedBroker() as broker:
        yield broker.url


def _device_data(tmp_path: Path, seed: int) -> Path:
    """The data the twin would have given DEVICE, written as the client's data file."""
    session = RunSession(
        RunOptions("home-health", seed=seed, overrides=SMALL, broker="local", out_dir=tmp_path)
    )
    model = session.open()
    path = tmp_path.parent / f"{DEVICE}.safetensors"
    save_device_data(path, model.network.task.local[DEVICE])
    session.close("stopped")
    return path


def _run_with_client(
    tmp_path: Path, broker_url: str, *, data: Path, run_id: str, rounds: int
) -> tuple[RunResult, str]:
    """Run the scenario with DEVICE reserved; start `twin device` once the run wrote its credentials."""
    out = tmp_path / "ext"
    box: dict[str, RunResult] = {}
    options = RunOptions(
        "home-health",
        seed=2,
        overrides={**SMALL, "devices.external": DEVICE},
        broker=broker_url,
        out_dir=out,
        rounds=rounds,
        run_id=run_id,
    )
    runner = threading.Thread(target=lambda: box.update(result=run_scenario(options)))
    runner.start()
    credentials = out / run_id / "credentials" / f"{DEVICE}.json"
    deadline = time.monotonic() + 60
    while not credentials.exists() and time.monotonic() < deadline:
        time.sleep(0.05)
    assert credentials.exists() and credentials.stat().st_mode & 0o077 == 0  # owner-only
    client = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "twin",
            "device",
            "--broker",
            broker_url,
            "--run",
            run_id,
            "--device",
            DEVICE,
            "--data",
            str(data),
            "--credentials",
            str(credentials),
            "--seed",
            "2",
            "--timeout",
            "120",
        ],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        runner.join(180)
        _, err = client.communicate(timeout=60)
    finally:
        client.kill()
    assert client.returncode == 0, err
    return box["result"], err


def test_reference_client_in_another_process_is_aggregated(tmp_path: Path, broker_url: str) -> None:
    data = _device_data(tmp_path / "setup", 2)
    result, err = _run_with_client(tmp_path, broker_url, data=data, run_id="ext-device-test-1", rounds=3)
    assert result.status == "finished", result.error
    assert "trained rounds [1, 2, 3], 3 update(s) sent" in err and "run status finished" in err
    local = run_scenario(
        RunOptions(
            "home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path / "local", rounds=3
        )
    )
    pd.testing.assert_frame_equal(result.kpis[FL_COLUMNS], local.kpis[FL_COLUMNS])
    assert "rejected_forged" not in result.summary["bus"]


def test_other_data_on_the_external_device_changes_the_model(tmp_path: Path, broker_url: str) -> None:
    """The client's own data is what trains: labels it reverses move the aggregated model."""
    path = _device_data(tmp_path / "setup", 2)
    from twin.device_client import load_device_data

    data = load_device_data(path)
    save_device_data(path, type(data)(data.x, (data.y + 1) % 4))
    result, _ = _run_with_client(tmp_path, broker_url, data=path, run_id="ext-device-test-2", rounds=1)
    local = run_scenario(
        RunOptions(
            "home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path / "local", rounds=1
        )
    )
    assert result.kpis.accepted.iloc[0] == local.kpis.accepted.iloc[0] == 12
    assert result.kpis.loss.iloc[0] != local.kpis.loss.iloc[0]
