"""``twin viz``: watch a scenario run in the browser (a Solara app built on Mesa's SolaraViz), or replay one.

The command checks the scenario and its ``--set`` values first (a mistake is one line and exit 2, as
for ``twin run``), then serves :mod:`twin.viz.app` with ``solara run`` in a child process until
Ctrl-C. ``--host``, ``--port`` and ``--no-open`` mean what they mean for ``solara run``.
``--replay runs/<id>`` serves the replay of a finished run (:mod:`twin.viz.replay`); its directory is
checked first in the same way.
"""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from typing import Annotated

import typer

from twin.cli import SeedOption, SetOption, app, err_console
from twin.config import parse_set_options
from twin.errors import ConfigError

OptionalScenarioArgument = Annotated[
    str | None,
    typer.Argument(
        help="Scenario name (see `twin list`), or a .py file or module that registers one "
        "(`path.py:name` picks one of several). With --replay: only for a scenario not known by name.",
        show_default=False,
    ),
]

# A tab closed without its unload beacon (a crashed browser) frees its run after this long.
KERNEL_CULL_TIMEOUT = "2m"


def solara_command(*, host: str, port: int, open_browser: bool) -> list[str]:
    """The ``solara run`` command line that serves the app."""
    return [
        sys.executable,
        "-m",
        "solara",
        "run",
        "twin.viz.app",
        "--host",
        host,
        "--port",
        str(port),
        "--open" if open_browser else "--no-open",
        "--production",
        "--no-check-version",
    ]


@app.command("viz")
def viz(
    scenario: OptionalScenarioArgument = None,
    seed: SeedOption = 0,
    set_: SetOption = None,
    broker: Annotated[
        str, typer.Option("--broker", help="embedded | local | mqtt[s]://[user:pass@]host:port")
    ] = "embedded",
    host: Annotated[str, typer.Option("--host", help="Interface to serve on (0.0.0.0: all).")] = "localhost",
    port: Annotated[int, typer.Option("--port", help="TCP port to serve on (0: any free one).")] = 8765,
    open_browser: Annotated[bool, typer.Option("--open/--no-open", help="Open a browser tab.")] = True,
    out: Annotated[
        Path | None, typer.Option("--out", help="Keep each run's directory here (default: not kept).")
    ] = None,
    replay: Annotated[
        Path | None,
        typer.Option(
            "--replay",
            help="Replay a finished run (runs/<id>) instead: its map, plots and QoAIS over a time slider.",
        ),
    ] = None,
) -> None:
    """Serve a page that runs SCENARIO live (map, KPI plots, QoAIS, parameters, play / step / reset).

    With --replay RUN_DIR, the page replays that finished run instead; SCENARIO is then needed only for a
    scenario of your own that is not known by name (its file or module).
    """
    from twin.runner import broker_security, resolve_config
    from twin.viz import assets
    from twin.viz.app import LaunchSettings
    from usecases import registry

    if not 0 <= port <= 65535:
        raise ConfigError(f"--port must be within [0, 65535], got {port}")
    if replay is not None:
        if seed != 0 or set_ or broker != "embedded" or out is not None:
            raise ConfigError("--replay shows a recorded run: --seed, --set, --broker and --out do not apply")
        from twin.viz.replay import load_replay

        load_replay(replay, scenario)  # a bad directory is one line and exit 2, before serving
        target = _portable_target(scenario) if scenario is not None else ""
        settings = LaunchSettings(target, replay=str(replay.expanduser().resolve()))
    else:
        if scenario is None:
            raise ConfigError("give a scenario (see `twin list`), or --replay runs/<run_id>")
        if seed < 0:
            raise ConfigError(f"--seed must be >= 0, got {seed}")
        overrides = parse_set_options(set_ or [])
        resolve_config(registry.resolve_one(scenario), overrides)
        broker_security(broker)
        target = _portable_target(scenario)  # the page's process imports it again
        settings = LaunchSettings(target, seed, overrides, broker, str(out) if out is not None else "")
    missing = assets.missing_packages()
    if missing:
        err_console.print(
            "note: Solara's front end is fetched from its CDN at page load; without internet the page "
            "stays blank. Install it locally once: python -m twin.viz.assets",
            highlight=False,
        )
    env = {**os.environ, **settings.to_env()}
    env.setdefault("SOLARA_TELEMETRY_MIXPANEL_ENABLE", "false")
    env.setdefault("SOLARA_KERNEL_CULL_TIMEOUT", KERNEL_CULL_TIMEOUT)
    env.setdefault("REACTON_FAST", "1")  # re-render only what changed (as twin.viz.app sets it too)
    command = solara_command(host=host, port=port, open_browser=open_browser)
    server = subprocess.Popen(command, env=env)
    try:
        code = server.wait()
    except KeyboardInterrupt:
        # The server got the same Ctrl-C: let it close its pages' runs (brokers, run folders).
        code = server.wait()
    if code:
        raise typer.Exit(code)


def _portable_target(target: str) -> str:
    """``target`` with the path of a ``.py`` file made absolute (``file.py`` or ``file.py:name``)."""
    source, sep, name = target.rpartition(":")
    if not sep or not source.endswith(".py"):
        source, name = target, ""
    if not source.endswith(".py"):
        return target
    absolute = str(Path(source).expanduser().resolve())
    return f"{absolute}:{name}" if name else absolute
