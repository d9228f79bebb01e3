"""CLI commands for streaming and outputs: ``twin watch`` and ``twin export``.

Registered on :data:`twin.cli.app` when :mod:`twin.cli` imports this module; the heavy imports wait
until a command runs, so ``twin list`` stays fast. Exit codes follow :mod:`twin.cli`: ``watch``
exits 0 when the run finished, 4 when it ended otherwise (aborted, stopped), 3 when the broker is
unreachable, 2 for a bad run id, broker URL or port, 1 when ``--timeout`` passed without a message.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer

from twin.cli import app, console, err_console

if TYPE_CHECKING:
    from twin.metrics import MetricsExporter

WATCH_BROKER = "mqtt://127.0.0.1:1883"
"""Default broker of ``twin watch``: the local Mosquitto (an embedded broker dies with its run)."""


@app.command("watch")
def watch(
    run_id: Annotated[str, typer.Argument(help="Run id (the run directory's name; `twin run` prints it).")],
    broker: Annotated[
        str, typer.Option("--broker", help="mqtt[s]://[user:pass@]host:port the run publishes to.")
    ] = WATCH_BROKER,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds without a message.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Also serve the stream as Prometheus metrics here.")
    ] = None,
) -> None:
    """Watch a run live from its MQTT stream: status, latest KPIs, agents by state, events."""
    from twin.metrics import MetricsExporter
    from twin.watch import watch_run

    metrics: MetricsExporter | None = None
    try:
        if metrics_port is not None:
            metrics = MetricsExporter()
            port = metrics.serve(metrics_port)
            err_console.print(f"Prometheus metrics on port {port} (/metrics)")
        view = watch_run(
            run_id,
            broker,
            console=console,
            timeout_s=timeout,
            metrics=metrics,
            on_subscribed=lambda url: err_console.print(f"watching run {run_id} on {url}", highlight=False),
        )
    finally:
        if metrics is not None:
            metrics.close()
    if view.status_name != "finished":
        error = (view.status or {}).get("error")
        ending = f"{view.status_name}: {error}" if error else view.status_name
        err_console.print(f"run {run_id} {ending}", highlight=False)
        raise typer.Exit(4)


@app.command("export")
def export(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<run_id>).")],
    output_format: Annotated[str, typer.Option("--format", help="csv, json or parquet.")] = "csv",
    out: Annotated[
        Path | None, typer.Option("--out", help="Folder to write to (default: the run directory).")
    ] = None,
) -> None:
    """Export a run directory's tables (kpi, events, requests …) as CSV, JSON or Parquet."""
    from twin.export import export_run

    for path in export_run(run_dir, output_format, out):
        console.print(str(path), highlight=False, soft_wrap=True)
