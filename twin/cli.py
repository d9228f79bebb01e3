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
from typing import Annotated, Any, NoReturn

import typer
from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

from twin.config import parse_set_options
from twin.errors import ConfigError, TwinError
from twin.progress import ticked_service
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


ScenarioArgument = Annotated[
    str,
    typer.Argument(
        help="Scenario name (see `twin list`), or a .py file or module that registers one "
        "(`path.py:name` picks one of several)."
    ),
]
ConfigOption = Annotated[
    Path | None,
    typer.Option(
        "--config",
        help="TOML config file: the same dotted keys as --set, in tables (--set overrides it); "
        "a run's config.toml repeats that run.",
    ),
]


@app.command("run")
def run(
    scenario: Annotated[
        str | None,
        typer.Argument(
            help="Scenario name (see `twin list`), or a .py file or module that registers one "
            "(`path.py:name` picks one of several); may come from --config instead.",
            show_default=False,
        ),
    ] = None,
    seed: Annotated[
        int | None, typer.Option("--seed", help="Seed of every random stream [default: --config's, else 0].")
    ] = None,
    config: ConfigOption = None,
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
    threads: Annotated[
        int | None,
        typer.Option(
            "--threads",
            min=1,
            help="Threads for the run's array work (default: every core). Never changes a result.",
        ),
    ] = None,
) -> None:
    """Run a scenario; show progress, then its KPI and QoAIS summary and its run directory."""
    from twin.config_file import overrides_with_file, read_config_file, scenario_and_seed
    from twin.progress import run_progress
    from twin.runner import RunOptions, RunSession, run_calculation, run_session
    from usecases import registry
    from usecases.registry import CalculationScenario

    if output_format not in ("table", "json"):
        raise ConfigError(f"--format must be table or json, got {output_format!r}")

    config_file = read_config_file(config) if config is not None else None
    scenario, seed = scenario_and_seed(scenario, seed, config_file)
    options = RunOptions(
        scenario=scenario,
        seed=seed,
        overrides=overrides_with_file(scenario, config_file, parse_set_options(set_ or [])),
        broker=broker,
        out_dir=out,
        until_s=until,
        rounds=rounds,
        metrics_port=metrics_port,
        run_id=run_id,
        workers=workers,
        ray_address=ray_address,
        threads=threads,
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
    session = RunSession(options)  # bad options are refused here, before any progress line is printed
    with Progress(
        TextColumn("[bold]{task.description}"),
        BarColumn(),
        TextColumn("{task.fields[info]}"),
        TimeElapsedColumn(),
        console=err_console if output_format == "json" else console,
        transient=output_format == "json",
    ) as progress:
        task = progress.add_task(scenario, total=None, info="starting")

        def on_model(model: Any) -> None:
            progress.update(task, total=run_progress(model).total)

        def on_step(model: Any) -> None:
            rows = model.kpi_rows
            acc = f"{rows[-1]['accuracy']:.3f}" if rows else "—"
            now = run_progress(model)  # --rounds counts a ticked service's ticks; training rounds run within
            info = f"t={model.time:7.1f} s  {now.text()}  accuracy {acc}"
            progress.update(task, completed=now.done, info=info)

        from twin.cli_stream import announce_run  # run id, broker, metrics URL: before the first round

        result = run_session(
            session, on_step=on_step, on_model=on_model, on_start=lambda s: announce_run(s, progress.console)
        )
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


_ticked_service = ticked_service  # the name tests/cli/test_progress.py knows


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
        str,
        typer.Argument(
            help="A scenario name, a Python module that registers scenarios, or the path of a .py file."
        ),
    ],
) -> None:
    """Check that a (user-written) use case honours the engine's contracts; exit 2 if it does not.

    Every exception of the use case's code (importing, registering, building, running) is reported as a
    failed check with the line of the user's file that raised; the other checks still run.
    """
    from usecases import registry
    from usecases.check import UseCaseLoadError, check_scenario
    from usecases.registry import CalculationScenario

    failed = False
    try:
        names = registry.resolve(target)  # usecases.check.load, once per process; also `file.py:name`
    except UseCaseLoadError as exc:
        failed = True
        names = exc.scenarios
        console.print(f"[red]✗[/red] {escape(target)}", highlight=False, soft_wrap=True)
        console.print(f"    - {exc}", highlight=False, markup=False, soft_wrap=True)
    for name in names:
        problems = check_scenario(name)
        if problems:
            failed = True
            console.print(f"[red]✗[/red] {escape(name)}", highlight=False, soft_wrap=True)
            for problem in problems:
                console.print(f"    - {problem}", highlight=False, markup=False, soft_wrap=True)
        else:
            what = (
                "config and computation"
                if isinstance(registry.get(name), CalculationScenario)
                else "config, world, one round, KPIs and determinism"
            )
            console.print(f"[green]✓[/green] {escape(name)}: {what} are fine", soft_wrap=True)
    if failed:
        raise typer.Exit(2)


@app.command("broker")
def broker_cmd(
    host: Annotated[
        str, typer.Option(help="Interface to listen on; anything but loopback needs --password-file.")
    ] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="TCP port (default 1883, or 8883 with TLS).")] = 0,
    password_file: Annotated[
        Path | None,
        typer.Option(help="user:hash lines (mosquitto_passwd, or argon2): only these users may connect."),
    ] = None,
    tls_cert: Annotated[Path | None, typer.Option(help="PEM certificate to serve TLS (mqtts) with.")] = None,
    tls_key: Annotated[Path | None, typer.Option(help="PEM private key of --tls-cert.")] = None,
    tls_self_signed: Annotated[
        bool, typer.Option(help="Serve TLS with a throw-away self-signed certificate (its path is printed).")
    ] = False,
) -> None:
    """Serve the embedded MQTT broker alone (for external tools) until Ctrl-C.

    Anonymous on loopback (the default); on any other interface only with --password-file. TLS with
    --tls-cert/--tls-key, or --tls-self-signed for a certificate made now (clients trust that file).
    """
    import shutil
    import tempfile

    from broker.embedded_server import BrokerSecurityError, check_security, self_signed_certificate, serve

    if tls_self_signed and (tls_cert is not None or tls_key is not None):
        raise BrokerSecurityError("--tls-self-signed makes its own certificate: drop --tls-cert/--tls-key")
    tls = tls_self_signed or tls_cert is not None or tls_key is not None
    port = port or (8883 if tls else 1883)
    check_security(host, password_file, tls_cert, tls_key)  # before making a certificate
    folder = tempfile.mkdtemp(prefix="twin-broker-tls-") if tls_self_signed else None
    try:
        if folder is not None:
            tls_cert, tls_key = self_signed_certificate(folder, host)
            console.print(f"self-signed TLS certificate: {tls_cert} (clients trust it)", soft_wrap=True)
        scheme = "mqtts" if tls else "mqtt"
        who = "users of " + str(password_file) if password_file is not None else "anyone (anonymous)"

        def ready() -> None:
            console.print(
                f"embedded MQTT broker listening on {scheme}://{host}:{port} for {who} (Ctrl-C to stop)",
                soft_wrap=True,
                highlight=False,
            )

        serve(host, port, on_ready=ready, password_file=password_file, certfile=tls_cert, keyfile=tls_key)
    finally:
        if folder is not None:
            shutil.rmtree(folder, ignore_errors=True)
    console.print("stopping")


from twin import cli_config as cli_config  # noqa: E402,F401  (registers config)
from twin import cli_device, cli_stream  # noqa: E402,F401  (registers device, watch, export)
from twin import cli_study as cli_study  # noqa: E402,F401  (registers sweep, compare, report)
from twin import cli_viz as cli_viz  # noqa: E402,F401  (registers viz)


def main() -> None:
    """Entry point: user errors become one line on stderr and a documented exit code."""
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    try:
        code = app(standalone_mode=False)
    except TwinError as exc:
        err_console.print(f"error: {exc}", highlight=False, soft_wrap=True)
        sys.exit(exc.exit_code)
    except typer.Abort:
        err_console.print("aborted", highlight=False)
        sys.exit(1)
    except typer.TyperException as exc:  # unknown option or command, an option of the wrong type
        _usage_error(exc)
    if isinstance(code, int) and code:
        sys.exit(code)


def _usage_error(exc: typer.TyperException) -> NoReturn:
    """A command-line usage error as one line (``error: … (see `twin run --help`)``) and its exit code."""
    code = getattr(exc, "exit_code", 2)
    if type(exc).__name__ != "NoArgsIsHelpError":  # that one has printed the help already
        message = exc.format_message() if hasattr(exc, "format_message") else str(exc)
        ctx = getattr(exc, "ctx", None)
        hint = f" (see `{ctx.command_path} --help`)" if ctx is not None else ""
        err_console.print(f"error: {message}{hint}", highlight=False, soft_wrap=True)
    sys.exit(code)


if __name__ == "__main__":
    main()
