"""The scenario catalog agrees with what the scenario modules register; listing imports no torch."""

from __future__ import annotations

import importlib
import pkgutil
import subprocess
import sys

import usecases
from usecases import catalog, registry
from usecases.registry import AgentScenario, CalculationScenario

HEAVY = ("torch", "mesa", "pandas", "twin.runner", "twin.model", "amqtt", "paho")


def _builtin_modules() -> list[str]:
    return [f"usecases.{m.name}" for m in pkgutil.iter_modules(usecases.__path__)]


def test_catalog_matches_registered_scenarios() -> None:
    """Every built-in scenario is in the catalog with the same name, summary, paper section and kind."""
    # Prepare
    for module in _builtin_modules():
        importlib.import_module(module)
    # Execute
    registered = {
        spec.name: spec
        for spec in registry.registered()
        if spec.default_config.__module__ in _builtin_modules()
    }
    # Assert
    assert sorted(registered) == sorted(entry.name for entry in catalog.BUILTIN)
    for entry in catalog.BUILTIN:
        spec = registered[entry.name]
        assert (spec.summary, spec.paper_section) == (entry.summary, entry.paper_section), entry.name
        expected = AgentScenario if entry.kind == "agents" else CalculationScenario
        assert isinstance(spec, expected), entry.name
        assert spec.default_config.__module__ == entry.module, entry.name
        assert registry.describe(spec) == entry


def test_user_scenarios_are_listed_with_the_builtins() -> None:
    """A scenario registered at run time is listed next to the built-ins and found by get()."""
    # Prepare
    home = registry.get("home-health")
    assert isinstance(home, AgentScenario)
    mine = AgentScenario("my-scenario", "mine", "0.0", home.default_config, home.build)
    registry.register(mine)
    try:
        # Execute
        listed = {entry.name: entry for entry in registry.entries()}
        # Assert
        assert set(listed) == {e.name for e in catalog.BUILTIN} | {"my-scenario"}
        assert listed["my-scenario"].summary == "mine" and listed["my-scenario"].kind == "agents"
        assert registry.get("my-scenario") is mine
        assert "my-scenario" in registry.names()
    finally:
        registry.unregister("my-scenario")


def _fresh_python(code: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)


def test_twin_list_and_help_import_no_torch() -> None:
    """`twin list` and `twin --help` answer from the catalog: no torch, Mesa, pandas or runner loaded."""
    # Prepare
    code = (
        "import sys\n"
        "from typer.testing import CliRunner\n"
        "from twin.cli import app\n"
        "runner = CliRunner()\n"
        "listed = runner.invoke(app, ['list'], terminal_width=200)\n"
        "helped = runner.invoke(app, ['--help'], terminal_width=200)\n"
        "assert listed.exit_code == 0 and helped.exit_code == 0, (listed.output, helped.output)\n"
        "print(listed.output)\n"
        f"heavy = [m for m in sys.modules if m.split('.')[0] in {HEAVY!r} or m in {HEAVY!r}]\n"
        "print('HEAVY', sorted(heavy))\n"
    )
    # Execute
    proc = _fresh_python(code)
    # Assert
    assert proc.returncode == 0, proc.stderr
    assert "HEAVY []" in proc.stdout
    for entry in catalog.BUILTIN:
        assert entry.name in proc.stdout and entry.paper_section in proc.stdout


def test_unknown_scenario_imports_nothing_heavy() -> None:
    """An unknown name is refused from the catalog, listing the available scenarios, without torch."""
    # Prepare
    code = (
        "import sys\n"
        "from usecases import registry\n"
        "from twin.errors import UnknownScenarioError\n"
        "try:\n"
        "    registry.get('no-such-thing')\n"
        "except UnknownScenarioError as exc:\n"
        "    print(exc)\n"
        "print('torch' in sys.modules)\n"
    )
    # Execute
    proc = _fresh_python(code)
    # Assert
    assert proc.returncode == 0, proc.stderr
    assert "home-health" in proc.stdout and proc.stdout.strip().endswith("False")
