"""Running what you wrote: a .py file, a module, ``file.py:name``, and installed entry points."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pandas as pd
import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.errors import UnknownScenarioError
from usecases import catalog, registry

# A small use case in the style of tests/usecases/test_check.py: home-health with 6 homes, 1 round.
SMALL_USECASE = """
import dataclasses
from twin.config import apply_overrides
from usecases import catalog, home_health, registry


def small():
    return apply_overrides(home_health.HomeHealthConfig(), {"devices.count": "6", "fl.rounds": "1"})


registry.register(
    dataclasses.replace(registry.get("home-health"), name="{name}", summary="six homes", default_config=small)
)
"""


@pytest.fixture
def user_file(tmp_path: Path) -> Iterator[Any]:
    """Write use-case files; afterwards forget the scenarios and modules that importing them added."""
    names = {spec.name for spec in registry.registered()}
    modules, path = set(sys.modules), list(sys.path)

    def write(stem: str, *scenario_names: str) -> Path:
        file = tmp_path / f"{stem}.py"
        file.write_text("".join(SMALL_USECASE.replace("{name}", name) for name in scenario_names))
        return file

    yield write
    for spec in registry.registered():
        if spec.name not in names and catalog.builtin(spec.name) is None:  # built-ins register only once
            registry.unregister(spec.name)
    for name in set(sys.modules) - modules:
        if name.startswith(("twin_usecase_", "fake_plugin")):
            del sys.modules[name]
    sys.path[:] = path


def test_run_a_python_file_to_a_run_directory(user_file: Any, tmp_path: Path) -> None:
    """``twin run file.py --rounds 1`` runs the scenario the file registers and writes its run directory."""
    # Prepare
    file = user_file("my_small_usecase", "small-homes")
    # Execute
    result = CliRunner().invoke(
        app, ["run", str(file), "--rounds", "1", "--broker", "local", "--out", str(tmp_path / "runs")]
    )
    # Assert
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert run_dir.name.startswith("small-homes-s0-")
    kpis = pd.read_parquet(run_dir / "kpi.parquet")
    assert list(kpis["round"]) == [1]


def test_resolve_is_idempotent_and_picks_by_name(user_file: Any) -> None:
    """A file is imported once per process; ``file.py:name`` picks one of the scenarios it registers."""
    # Prepare
    file = user_file("two_usecases", "homes-a", "homes-b")
    # Execute
    found = registry.resolve(str(file))
    again = registry.resolve(str(file))
    picked = registry.resolve_one(f"{file}:homes-b")
    # Assert
    assert found == again == ["homes-a", "homes-b"]
    assert picked == "homes-b"
    with pytest.raises(UnknownScenarioError, match=r"several scenarios .*two_usecases.py:homes-a"):
        registry.resolve_one(str(file))
    with pytest.raises(UnknownScenarioError, match="registers no scenario 'homes-c'"):
        registry.resolve(f"{file}:homes-c")


def test_run_several_without_a_pick_is_one_line_exit_2(user_file: Any, tmp_path: Path) -> None:
    """``twin run`` of a file that registers several scenarios says how to pick one (exit 2), runs nothing."""
    file = user_file("two_more", "homes-c", "homes-d")
    result = CliRunner().invoke(app, ["run", str(file), "--out", str(tmp_path)])
    assert isinstance(result.exception, UnknownScenarioError)
    assert result.exception.exit_code == 2
    assert f"pick one: {file}:homes-c or {file}:homes-d" in str(result.exception)
    assert not list(tmp_path.glob("homes-*"))


def test_unknown_target_lists_the_scenarios() -> None:
    """A name that is neither a scenario nor importable is an UnknownScenarioError naming the scenarios."""
    with pytest.raises(UnknownScenarioError, match="home-health"):
        registry.resolve("no_such_usecase_module")


def _fake_distribution(root: Path) -> None:
    """An installed package ``fake-plugin`` whose entry point adds scenario ``plugin-split``."""
    (root / "fake_plugin.py").write_text(
        "import dataclasses\nfrom usecases import registry\n"
        "registry.register(dataclasses.replace(registry.get('seed-split-inference'), name='plugin-split'))\n"
    )
    info = root / "fake_plugin-0.1.dist-info"
    info.mkdir()
    (info / "METADATA").write_text(
        "Metadata-Version: 2.1\nName: fake-plugin\nVersion: 0.1\nSummary: A split-inference variant\n"
    )
    (info / "entry_points.txt").write_text("[aiaas_twin.scenarios]\nplugin-split = fake_plugin\n")


def test_entry_point_scenario_is_listed_then_runs(
    user_file: Any, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """An installed entry point is listed without importing it, and imported when run."""
    # Prepare
    _fake_distribution(tmp_path)
    monkeypatch.syspath_prepend(str(tmp_path))
    # Execute
    listed = {entry.name: entry for entry in registry.entries()}
    imported_before_run = "fake_plugin" in sys.modules
    result = CliRunner().invoke(app, ["run", "plugin-split", "--out", str(tmp_path / "runs")])
    # Assert
    assert listed["plugin-split"].kind == "installed"
    assert listed["plugin-split"].summary == "A split-inference variant (installed from fake-plugin)"
    assert "plugin-split" in registry.names()
    assert not imported_before_run
    assert result.exit_code == 0, result.output
    (run_dir,) = (tmp_path / "runs").iterdir()
    assert (run_dir / "results.json").is_file()


def test_twin_list_shows_installed_scenarios_without_importing_them(tmp_path: Path) -> None:
    """``twin list`` in a fresh process shows an installed scenario and imports neither it nor torch."""
    _fake_distribution(tmp_path)
    code = (
        "import sys\nfrom twin.cli import main\nsys.argv = ['twin', 'list']\n"
        "try:\n    main()\nfinally:\n"
        "    print('IMPORTED', [m for m in ('torch', 'fake_plugin') if m in sys.modules])\n"
    )
    out = subprocess.run(
        [sys.executable, "-c", code],
        capture_output=True,
        text=True,
        check=True,
        env={**os.environ, "PYTHONPATH": str(tmp_path), "COLUMNS": "200"},
        cwd=Path(__file__).parents[2],
    ).stdout
    assert "plugin-split" in out
    assert "installed" in out
    assert "IMPORTED []" in out


def test_a_file_that_imports_a_builtin_use_case_runs_in_a_fresh_process(tmp_path: Path) -> None:
    """Importing ``usecases.home_health`` registers home-health as a side effect: that is no name clash."""
    # Prepare
    file = tmp_path / "builds_on_home_health.py"
    file.write_text(SMALL_USECASE.replace("{name}", "homes-on-builtin"))
    # Execute
    done = subprocess.run(
        [sys.executable, "-m", "twin", "check", str(file)], capture_output=True, text=True, timeout=300
    )
    # Assert
    assert done.returncode == 0, done.stdout + done.stderr
    assert "homes-on-builtin" in done.stdout and "taken by a built-in" not in done.stdout + done.stderr
