"""CLI commands for streaming and outputs: ``twin watch``, ``twin runs`` and ``twin export``.

Registered on :data:`twin.cli.app` when :mod:`twin.cli` imports this module; the heavy imports wait
until a command runs, so ``twin list`` stays fast. Exit codes follow :mod:`twin.cli`: ``watch``
exits 0 when the run finished, 4 when it ended otherwise (aborted, stopped), 3 when the broker is
unreachable, 2 for a bad run id, broker URL, port or key file, or a run the broker knows nothing of
(after ``--wait`` seconds), 1 when ``--timeout`` passed without a message.
"""

from __future__ import annotations

import json
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Annotated

import typer
from rich.console import Console
from rich.table import Table
from rich.text import Text

from twin.cli import app, console, err_console

if TYPE_CHECKING:
    from twin.metrics import MetricsExporter
    from twin.runner import RunSession

WATCH_BROKER = "mqtt://127.0.0.1:1883"
"""Default broker of ``twin watch``: the local Mosquitto (an embedded broker dies with its run)."""


def metrics_url(port: int) -> str:
    """The URL of a ``/metrics`` endpoint served on all interfaces of this machine."""
    return f"http://127.0.0.1:{port}/metrics"


def announce_run(session: RunSession, out: Console) -> None:
    """Tell, as soon as a run starts, its id, where it streams, its run directory and metrics URL."""
    handle = session._handle
    broker = handle.bus.url if handle is not None else session.options.broker
    out.print(f"run {session.run_id} started on {broker}", highlight=False, markup=False)
    out.print(f"run directory: {session.run_dir}", highlight=False, markup=False)
    if session.metrics is not None and session.metrics.port is not None:
        out.print(f"Prometheus metrics: {metrics_url(session.metrics.port)}", highlight=False, markup=False)


@app.command("watch")
def watch(
    run_id: Annotated[
        str | None,
        typer.Argument(help="Run id (`twin run` prints it); default: the newest running run on the broker."),
    ] = None,
    broker: Annotated[
        str, typer.Option("--broker", help="mqtt[s]://[user:pass@]host:port the run publishes to.")
    ] = WATCH_BROKER,
    timeout: Annotated[
        float | None, typer.Option("--timeout", help="Give up after this many seconds without a message.")
    ] = None,
    metrics_port: Annotated[
        int | None, typer.Option("--metrics-port", help="Also serve the stream as Prometheus metrics here.")
    ] = None,
    key: Annotated[
        Path | None,
        typer.Option("--key", help="The run's public key file (runs/<run_id>/run_key.pub) to verify it by."),
    ] = None,
    runs_dir: Annotated[
        Path, typer.Option("--runs-dir", help="Where run directories are (the run's key is read there).")
    ] = Path("runs"),
    wait: Annotated[
        float, typer.Option("--wait", help="Seconds to wait for a run the broker knows nothing of yet.")
    ] = 5.0,
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
            on_subscribed=lambda watched, url: err_console.print(
                f"watching run {watched} on {url}", highlight=False, markup=False
            ),
            key_file=key,
            runs_dir=runs_dir,
            find_timeout_s=wait,
        )
    finally:
        if metrics is not None:
            metrics.close()
    if view.status_name != "finished":
        error = (view.status or {}).get("error")
        ending = f"{view.status_name}: {error}" if error else view.status_name
        err_console.print(f"run {view.run_id} {ending}", highlight=False, markup=False)
        raise typer.Exit(4)


@app.command("runs")
def runs(
    broker: Annotated[
        str, typer.Option("--broker", help="mqtt[s]://[user:pass@]host:port to list the runs of.")
    ] = WATCH_BROKER,
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people) or json (for machines).")
    ] = "table",
    limit: Annotated[int, typer.Option("--limit", help="Show at most this many runs (newest first).")] = 50,
) -> None:
    """List the live and recent runs on a broker (from their retained meta and status), newest first."""
    from twin.errors import ConfigError
    from twin.watch import list_runs

    if output_format not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {output_format!r}")
    url, found = list_runs(broker)
    shown = found[: max(limit, 0)]
    if output_format == "json":
        print(json.dumps([asdict(r) for r in shown]))
        return
    if not found:
        err_console.print(f"no runs on {url}", highlight=False, markup=False)
        return
    table = Table("run", "scenario", "status", "started (UTC)", box=None)
    for run in shown:
        status = run.status or ("?" if run.signed else "? (unsigned)")
        table.add_row(
            *(Text(str(v)) for v in (run.run_id, run.scenario or "—", status, run.started_at or "—"))
        )
    console.print(table)


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
