"""The tutorial's example (examples/my_usecase.py) runs, passes the checker and documents its keys."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest
from typer.testing import CliRunner

from twin.cli import app
from usecases import registry

EXAMPLE = Path(__file__).parents[2] / "examples" / "my_usecase.py"


@pytest.fixture(scope="module", autouse=True)
def forget_the_example() -> object:
    """Unregister smart-farm after these tests (its module stays imported: it registers only once)."""
    yield None
    registry.unregister("smart-farm")


def test_example_runs_to_a_run_directory(tmp_path: Path) -> None:
    """``twin run examples/my_usecase.py --rounds 1`` trains one round and writes its run directory."""
    result = CliRunner().invoke(
        app,
        ["run", str(EXAMPLE), "--rounds", "1", "--set", "devices.count=6", "--broker", "local"]
        + ["--out", str(tmp_path)],
    )
    assert result.exit_code == 0, result.output
    (run_dir,) = tmp_path.glob("smart-farm-s0-*")
    kpis = pd.read_parquet(run_dir / "kpi.parquet")
    assert list(kpis["round"]) == [1] and 0.0 < kpis["accuracy"].iloc[0] <= 1.0


def test_example_passes_the_checker() -> None:
    """``twin check examples/my_usecase.py`` finds no problem (after a run in the same process, too)."""
    result = CliRunner().invoke(app, ["check", str(EXAMPLE)])
    assert result.exit_code == 0, result.output
    assert "✓ smart-farm" in result.output


def test_example_keys_are_documented() -> None:
    """``twin config examples/my_usecase.py`` gives the example's own keys their meanings."""
    result = CliRunner().invoke(app, ["config", str(EXAMPLE)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    row = next(line for line in result.output.splitlines() if line.split()[:1] == ["devices.count"])
    assert "Soil probes, one per plot" in row
    assert "(undocumented)" not in result.output
