"""``twin config <scenario>``: every config key with its default, unit and meaning (table or TOML).

The TOML form is a complete, commented config file: edit it and run it with
``twin run <scenario> --config file.toml``.
"""

from __future__ import annotations

import json
from typing import Annotated

import typer
from rich.markup import escape
from rich.table import Table

from twin.cli import ScenarioArgument, SetOption, app, console
from twin.config import parse_set_options
from twin.errors import ConfigError


@app.command("config")
def config_cmd(
    scenario: ScenarioArgument,
    set_: SetOption = None,
    output_format: Annotated[
        str, typer.Option("--format", help="table (for people) or toml (a config file for --config).")
    ] = "table",
) -> None:
    """Show every config key of SCENARIO: default (after --set), unit and meaning."""
    from twin.config_doc import describe_config, documented_toml
    from twin.runner import resolve_config
    from usecases import registry

    if output_format not in ("table", "toml"):
        raise ConfigError(f"--format must be table or toml, got {output_format!r}")
    name = registry.resolve_one(scenario)
    _, config = resolve_config(name, parse_set_options(set_ or []))
    if output_format == "toml":
        print(f"# twin config {name}: edit, then `twin run {scenario} --config this.toml`\n", end="")
        print(documented_toml(config), end="")
        print(f"\n# What --config runs when no scenario is given.\n[twin]\nscenario = {json.dumps(name)}")
        return
    table = Table(
        "key", "default", "unit", "meaning", title=f"{name} — config keys (--set key=value)", box=None
    )
    for item in describe_config(config):
        default = ",".join(map(str, item.default)) if isinstance(item.default, tuple) else str(item.default)
        table.add_row(item.key, escape(default), escape(item.unit), escape(item.meaning or "(undocumented)"))
    console.print(table)
