"""The ``twin`` command line: list, run, broker (and more as the project grows).

Exit codes: 0 success · 1 error · 2 bad input (unknown scenario, bad config) · 3 broker unreachable ·
4 run aborted (records kept).
"""

from __future__ import annotations

import json
import logging
import sys
import time
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.console import Console
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.config import parse_set_options
from twin.errors import ConfigError, TwinError
from twin.render import calculation_tables, qoais_table

app = typer.Typer(
    add_completion=False,
    no_args_is_help=True,
    pretty_exceptions_enable=False,
    help="aiaas-twin: digital twin of 6G AI-as-a-Service use cases.",
)
console = Console()
err_console = Console(stderr=True)

SetOption = Annotated[
    list[str] | None, typer.Option("--set", help="Override a config value: key=value (repeatable).")
]
SeedOption = Annotated[int, typer.Option("--seed", help="Seed of every random stream.")]


@app.command("list")
def list_scenarios() -> None:
    """List the named scenarios."""
    from usecases import registry

    table = Table("scenario", "paper §", "kind", "what it does", box=None)
    for entry in registry.entries():
        table.add_row(entry.name, entry.paper_section, entry.kind, entry.summary)
    console.print(table)


@app.command("run")
def run(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `twin list`).")],
    seed: SeedOption = 0,
    until: Annotated[float | None, typer.Option("--until", help="Stop at this simulated time (s).")] = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Number of federated rounds.")] = None,
    set_: SetOption = None,
    broker: Annotated[
        str, typer.Option("--broker", help="embedded | local | mqtt[s]://[user:pass@]host:port")
    ] = "embedded",
    out: Annotated[Path, typer.Option("--out", help="Parent folder of run directories.")] = Path("runs"),
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people) or json (for machines, on stdout).")
    ] = "table",
    metrics_port: Annotated[
        int | None,
        typer.Option("--metrics-port", help="Serve Prometheus metrics on this port during the run."),
    ] = None,
    run_id: Annotated[
        str | None,
        typer.Option("--run-id", help="Run id (default: generated); lets external devices join by name."),
    ] = None,
    workers: Annotated[
        int, typer.Option("--workers", help="Place the devices on N device-host processes (Ray actors).")
    ] = 0,
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Use this Ray cluster for --workers (default: local).")
    ] = None,
) -> None:
    """Run a scenario; show progress, then its KPI and QoAIS summary and its run directory."""
    from twin.runner import RunOptions, run_calculation, run_scenario
    from usecases import registry
    from usecases.registry import CalculationScenario

    if output_format not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {output_format!r}")

    options = RunOptions(
        scenario=scenario,
        seed=seed,
        overrides=parse_set_options(set_ or []),
        broker=broker,
        out_dir=out,
        until_s=until,
        rounds=rounds,
        metrics_port=metrics_port,
        run_id=run_id,
        workers=workers,
        ray_address=ray_address,
    )
    if isinstance(registry.get(scenario), CalculationScenario):
        calc = run_calculation(options)
        if output_format == "json":
            print(json.dumps({"run_id": calc.run_id, "run_dir": str(calc.run_dir), **calc.result.to_dict()}))
            return
        for table in calculation_tables(calc.result):
            console.print(table)
        console.print(qoais_table(calc.result.qoais))
        console.print(f"run directory: {calc.run_dir}")
        return
    started = time.monotonic()
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console if output_format == "json" else console,
        transient=output_format == "json",
    ) as progress:
        task = progress.add_task(scenario, total=None, info="starting")
        state: dict[str, Any] = {}

        def on_model(model: Any) -> None:
            state["total"] = model.rounds_limit
            progress.update(task, total=model.rounds_limit)

        def on_step(model: Any) -> None:
            rows = model.kpi_rows
            acc = f"{rows[-1]['accuracy']:.3f}" if rows else "—"
            progress.update(
                task,
                completed=len(rows),
                info=f"t={model.time:7.1f} s  round {len(rows)}/{state.get('total')}  accuracy {acc}",
            )

        result = run_scenario(options, on_step=on_step, on_model=on_model)
    if output_format == "json":
        document = {
            **result.summary,
            "run_dir": str(result.run_dir),
            "kpis": result.kpis.to_dict("records"),
            "qoais_reports": [r.to_dict() for r in result.qoais],
        }
        print(json.dumps(document, default=str))
    else:
        _print_summary(result, time.monotonic() - started)
        console.print(qoais_table(result.qoais))
        console.print(f"run directory: {result.run_dir}")
    if result.status != "finished":
        raise typer.Exit(4)


def _print_summary(result: Any, wall_s: float) -> None:
    kpis = result.kpis
    table = Table(title=f"{result.summary['scenario']} — {result.status}", box=None)
    table.add_column("KPI")
    table.add_column("value", justify="right")
    if len(kpis):
        last = kpis.iloc[-1]
        rows = [
            ("rounds", f"{len(kpis)}"),
            ("accuracy (held-out, last round)", f"{last['accuracy']:.3f}"),
            (
                "majority-class baseline",
                f"{result.summary.get('majority_baseline_accuracy', float('nan')):.3f}",
            ),
            ("service accuracy (× link reliability)", f"{last['service_accuracy']:.3f}"),
            ("mean round latency", f"{kpis['round_latency_s'].mean() * 1000:.1f} ms"),
            (
                "stragglers / offline (all rounds)",
                f"{int(kpis['stragglers'].sum())} / {int(kpis['offline'].sum())}",
            ),
            ("energy, devices + network", f"{last['energy_total_j']:.2f} J"),
            ("CO2-eq", f"{last['co2_total_g']:.4f} g"),
            ("simulated time", f"{result.summary['sim_time_s']:.0f} s"),
        ]
        for name, value in rows:
            table.add_row(name, value)
    bus = result.summary["bus"]
    rejected = {k: v for k, v in bus.items() if k.startswith("rejected_")}
    table.add_row("MQTT messages published / received", f"{bus['published']} / {bus['received']}")
    if rejected:
        table.add_row("MQTT messages rejected", ", ".join(f"{k[9:]}={v}" for k, v in rejected.items()))
    table.add_row("wall-clock", f"{wall_s:.1f} s")
    console.print(table)
    if result.error:
        err_console.print(f"run {result.status}: {result.error}")


@app.command("check")
def check(
    target: Annotated[
        str, typer.Argument(help="A scenario name, or a Python module that registers scenarios.")
    ],
) -> None:
    """Check that a (user-written) use case honours the engine's contracts; exit 2 if it does not."""
    from usecases import registry
    from usecases.check import check_scenario, load
    from usecases.registry import CalculationScenario

    failed = False
    for name in load(target):
        problems = check_scenario(name)
        if problems:
            failed = True
            console.print(f"[red]✗[/red] {name}")
            for problem in problems:
                console.print(f"    - {problem}")
        else:
            what = (
                "config and computation"
                if isinstance(registry.get(name), CalculationScenario)
                else "config, world, one round, KPIs and determinism"
            )
            console.print(f"[green]✓[/green] {name}: {what} are fine")
    if failed:
        raise typer.Exit(2)


@app.command("broker")
def broker_cmd(
    host: Annotated[str, typer.Option(help="Interface to listen on.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port.")] = 1883,
) -> None:
    """Serve the embedded MQTT broker alone (for external tools) until Ctrl-C."""
    from broker.embedded_server import serve

    def ready() -> None:
        console.print(f"embedded MQTT broker listening on mqtt://{host}:{port} (Ctrl-C to stop)")

    serve(host, port, on_ready=ready)
    console.print("stopping")


from twin import cli_device, cli_stream  # noqa: E402,F401  (registers device, watch, export)
from twin import cli_viz as cli_viz  # noqa: E402,F401  (registers viz)


def main() -> None:
    """Entry point: user errors become one line on stderr and a documented exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        app()
    except TwinError as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)


if __name__ == "__main__":
    main()
