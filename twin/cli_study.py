"""CLI commands for studies over runs: ``twin sweep``, ``twin compare`` and ``twin report``.

Registered on :data:`twin.cli.app` when :mod:`twin.cli` imports this module; the heavy imports wait
until a command runs. Exit codes follow :mod:`twin.cli`: 2 for bad input (an unknown grid key or a bad
value, checked before anything runs; not a run directory), and ``sweep`` exits 4 when some run did not
finish (its row in the table says why; every other run's records are kept).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Annotated, Any

import typer
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.cli import SetOption, app, console, err_console
from twin.config import parse_set_options
from twin.errors import ConfigError


@app.command("sweep")
def sweep(
    scenario: Annotated[str, typer.Argument(help="Scenario name (see `twin list`).")],
    grid: Annotated[
        list[str] | None,
        typer.Option("--grid", help="A swept config key and its values: key=v1,v2 (repeatable)."),
    ] = None,
    seeds: Annotated[str, typer.Option("--seeds", help="Seeds of each grid point: 0-4, or 0,3,7.")] = "0",
    set_: SetOption = None,
    rounds: Annotated[int | None, typer.Option("--rounds", help="Number of federated rounds.")] = None,
    out: Annotated[Path, typer.Option("--out", help="Parent folder of the sweep directory.")] = Path("runs"),
    broker: Annotated[
        str, typer.Option("--broker", help="Bus of every run: local (in-process), embedded, mqtt[s]://…")
    ] = "local",
    ray_address: Annotated[
        str | None, typer.Option("--ray-address", help="Run on this Ray cluster (default: a local one).")
    ] = None,
    sequential: Annotated[
        bool, typer.Option("--sequential", help="Run one after the other in this process, without Ray.")
    ] = False,
    jobs: Annotated[
        int | None, typer.Option("--jobs", help="CPUs of the local Ray cluster (runs at once; default: all).")
    ] = None,
) -> None:
    """Run SCENARIO over the cartesian product of --grid values × --seeds; tables and plots per sweep."""
    from twin.sweep import parse_grid, parse_seeds, plan_sweep, ray_available, run_sweep

    plan = plan_sweep(
        scenario, parse_grid(grid or []), parse_seeds(seeds), parse_set_options(set_ or []), rounds
    )
    if not sequential and not ray_available():
        err_console.print(
            "Ray is not installed (pip install 'aiaas-twin[ray]'): running the sweep sequentially",
            markup=False,
            highlight=False,
            soft_wrap=True,
        )
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        MofNCompleteColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=console,
    ) as progress:
        task = progress.add_task(f"sweep {scenario}", total=len(plan.runs), info="starting")
        failed: list[str] = []

        def on_start(total: int, executor: str) -> None:
            progress.console.print(f"{total} runs on {executor}", highlight=False)

        def on_done(row: dict[str, Any]) -> None:
            if row["status"] != "finished":
                failed.append(row["run_id"])
                error = escape(str(row.get("error")))
                progress.console.print(
                    f"[red]{row['run_id']} {row['status']}[/red]: {error}", highlight=False
                )
            progress.update(task, advance=1, info=f"{row['run_id']} {row['status']}; failed: {len(failed)}")

        result = run_sweep(
            plan,
            out_dir=out,
            broker=broker,
            sequential=sequential,
            ray_address=ray_address,
            num_cpus=jobs,
            on_start=on_start,
            on_done=on_done,
        )
    console.print(_aggregate_table(result.aggregate, plan.keys))
    console.print(f"sweep directory: {result.sweep_dir}", highlight=False, soft_wrap=True)
    console.print("tables: runs.parquet/.csv, aggregate.parquet/.csv; plots: " + ", ".join(
        p.name for p in result.plots) or "none", highlight=False)  # fmt: skip
    if len(result.failed):
        err_console.print(f"{len(result.failed)} of {len(result.runs)} runs did not finish (see runs.csv)")
        raise typer.Exit(4)


def _fmt(value: Any, digits: int = 4) -> str:
    if value is None:
        return "—"
    if isinstance(value, float):
        return "n/a" if value != value else f"{value:.{digits}g}"
    return str(value)


def _aggregate_table(aggregate: Any, keys: list[str]) -> Table:
    table = Table(
        title="mean ± 95 % interval (t) over the seeds of each grid point", box=None, title_justify="left"
    )
    for key in keys:
        table.add_column(key)
    table.add_column("finished", justify="right")
    for kpi in ("accuracy", "energy_total_j", "round_latency_s"):
        table.add_column(kpi, justify="right")
    for row in aggregate.to_dict("records"):
        cells = [_fmt(row[k]) for k in keys] + [f"{row['finished']}/{row['runs']}"]
        for kpi in ("accuracy", "energy_total_j", "round_latency_s"):
            mean, high = row[f"{kpi}_mean"], row[f"{kpi}_ci95_high"]
            cells.append(_fmt(mean) + ("" if high != high else f" ± {_fmt(high - mean, 2)}"))
        table.add_row(*cells)
    return table


@app.command("compare")
def compare(
    run_dirs: Annotated[list[Path], typer.Argument(help="Two or more run directories (runs/<run_id>).")],
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people) or json (for machines, on stdout).")
    ] = "table",
    plot: Annotated[
        Path | None, typer.Option("--plot", help="Also write the KPI curves, overlaid, to this PNG.")
    ] = None,
) -> None:
    """Compare runs side by side: final KPIs, QoAIS verdicts, config differences (and KPI curves)."""
    from twin.compare import FINAL_KPIS, comparison, load_runs, plot_curves

    if output_format not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {output_format!r}")
    records = load_runs(run_dirs)
    document = comparison(records)
    if plot is not None:
        document["plot"] = str(plot_curves(records, plot))
    if output_format == "json":
        print(json.dumps(document, default=str))
        return
    labels = [r.label for r in records]
    kpis = Table("final KPI", *labels, title="final KPIs", box=None, title_justify="left")
    for key in ("scenario", "seed"):
        kpis.add_row(key, *(_fmt(run[key]) for run in document["runs"]))
    for key, label in FINAL_KPIS:
        kpis.add_row(label, *(_fmt(v) for v in document["final"][key]))
    console.print(kpis)
    qoais = Table("service", *labels, title="QoAIS verdicts", box=None, title_justify="left")
    for service, verdicts in document["qoais"].items():
        qoais.add_row(service, *(_colour(v) for v in verdicts))
    console.print(qoais)
    if document["config_diff"]:
        diff = Table("config key", *labels, title="config differences", box=None, title_justify="left")
        for key, values in document["config_diff"].items():
            diff.add_row(key, *(_fmt(v) for v in values))
        console.print(diff)
    else:
        console.print("config: identical")
    if plot is not None:
        console.print(f"KPI curves: {plot}", highlight=False, soft_wrap=True)


def _colour(verdict: str | None) -> str:
    if verdict is None:
        return "—"
    colour = "green" if verdict == "PASS" else ("red" if verdict == "FAIL" else "yellow")
    return f"[{colour}]{verdict}[/{colour}]"


@app.command("report")
def report(
    run_dir: Annotated[Path, typer.Argument(help="A run directory (runs/<run_id>).")],
    out: Annotated[
        Path | None, typer.Option("--out", help="HTML file to write (default: <run_dir>/report.html).")
    ] = None,
) -> None:
    """Write a self-contained HTML report of a run: KPI curves, energy, QoAIS, coverage map."""
    from twin.report import write_report

    written = write_report(run_dir, out)
    for note in written.notes:
        err_console.print(f"note: {note}", highlight=False)
    console.print(f"report: {written.html_path}", highlight=False, soft_wrap=True)
    for path in written.plots:
        console.print(f"plot: {path}", highlight=False, soft_wrap=True)
