"""The Python API (``twin.run``, ``twin.load_run``, ``twin.scenarios``); repeating a run from its config."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pandas as pd
from typer.testing import CliRunner

import twin
from twin.cli import app


def test_import_twin_stays_light() -> None:
    """``import twin`` loads neither torch nor pandas; the API names are there and listed in __all__."""
    code = (
        "import sys, twin; print(sorted(twin.__all__)); "
        "print([m for m in ('torch', 'pandas') if m in sys.modules])"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.splitlines() == ["['Run', 'config_keys', 'load_run', 'run', 'scenarios']", "[]"]


def test_scenarios_lists_the_builtins() -> None:
    """``twin.scenarios()`` is what ``twin list`` shows."""
    by_name = {entry.name: entry for entry in twin.scenarios()}
    assert by_name["home-health"].paper_section == "2.3.4"
    assert by_name["seed-split-inference"].kind == "calculation"


def test_run_load_and_repeat_from_config(tmp_path: Path) -> None:
    """``twin.run`` returns the run's tables; ``load_run`` reads the same back; its config.toml repeats it."""
    # Prepare
    out = tmp_path / "runs"
    # Execute
    result = twin.run(
        "home-health", seed=3, rounds=2, overrides={"devices.count": 8}, broker="local", out=out
    )
    loaded = twin.load_run(result.run_dir)
    repeat = CliRunner().invoke(
        app,
        ["run", "--config", str(result.run_dir / "config.toml"), "--broker", "local", "--out", str(out)],
    )
    # Assert
    assert result.status == "finished" and result.scenario == "home-health"
    assert list(result.kpis["round"]) == [1, 2]
    assert {"service", "latency_s"} <= set(result.requests.columns)
    assert len(result.events) > 0
    assert {r.service for r in result.qoais} == {"fall-detection", "health-alerts"}
    assert result.summary["seed"] == 3 and result.config["devices.count"] == 8
    pd.testing.assert_frame_equal(loaded.kpis, result.kpis)
    assert [r.to_dict() for r in loaded.qoais] == [r.to_dict() for r in result.qoais]
    assert repeat.exit_code == 0, repeat.output
    (other,) = [d for d in out.iterdir() if d != result.run_dir]
    assert other.name.startswith("home-health-s3-")  # scenario and seed from summary.json beside the file
    pd.testing.assert_frame_equal(pd.read_parquet(other / "kpi.parquet"), result.kpis)


def test_run_a_calculation(tmp_path: Path) -> None:
    """A calculation scenario's run has its table as ``kpis`` and its QoAIS reports; load_run agrees."""
    result = twin.run("seed-split-inference", overrides={"link.rate_bps": 1e8}, out=tmp_path)
    loaded = twin.load_run(result.run_dir)
    assert len(result.kpis) > 1 and "response_latency_ms" in result.kpis.columns
    assert loaded.scenario == "seed-split-inference" and result.config["link.rate_bps"] == 1e8
    assert [r.verdict for r in loaded.qoais] == [r.verdict for r in result.qoais]
