"""CLI command ``twin device``: the reference client that lets a machine outside the run be a device.

Registered on :data:`twin.cli.app` when :mod:`twin.cli` imports this module; torch and paho are imported
only when the command runs. Exit codes follow :mod:`twin.cli`: 0 when the run ended (or ``--rounds``
were trained), 1 when nothing selected the device within ``--timeout``, 2 for bad input, 3 when the
broker is unreachable.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from twin.cli import app, err_console


@app.command("device")
def device(
    broker: Annotated[str, typer.Option("--broker", help="mqtt[s]://[user:pass@]host:port of the run.")],
    run: Annotated[str, typer.Option("--run", help="Run id to join (`twin run --run-id …` sets it).")],
    device_id: Annotated[str, typer.Option("--device", help="Device id reserved by devices.external.")],
    data: Annotated[Path, typer.Option("--data", help="safetensors file with tensors x and y.")],
    credentials: Annotated[
        Path,
        typer.Option("--credentials", help="The run's credentials/<device>.json for this device (secret)."),
    ],
    seed: Annotated[
        int, typer.Option("--seed", help="Seed of the minibatch order (the run's: same result).")
    ] = 0,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Stop after this many rounds.")] = None,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds (default: never).")
    ] = None,
) -> None:
    """Be device DEVICE of a running twin: train on your own data each round you are selected."""
    from broker.mqtt_bus import MqttBus
    from broker.topics import check_segment
    from broker.url import parse_broker_url
    from twin.auth import Credentials
    from twin.device_client import DeviceClient, load_device_data
    from twin.errors import ConfigError

    try:
        check_segment(run, "--run")
        check_segment(device_id, "--device")
    except ValueError as exc:
        raise ConfigError(str(exc)) from exc
    local = load_device_data(data)
    keys = Credentials.load(credentials)
    bus = MqttBus(parse_broker_url(broker), client_id=f"twin-device-{device_id}")
    try:
        client = DeviceClient(bus, run_id=run, device_id=device_id, data=local, credentials=keys, seed=seed)
        err_console.print(f"device {device_id} waiting for run {run} on {bus.url}", highlight=False)
        report = client.run(rounds=rounds, timeout_s=timeout)
    finally:
        bus.close()
    err_console.print(
        f"device {device_id}: trained rounds {report.rounds_trained or 'none'}, "
        f"{report.updates_sent} update(s) sent; run status {report.run_status or 'unknown'}",
        highlight=False,
    )
