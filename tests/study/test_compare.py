"""``twin compare``: final KPIs, QoAIS verdicts and config differences of run directories, KPI curves."""

from __future__ import annotations

import json
import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
from typer.testing import CliRunner

from twin.cli import app
from twin.compare import comparison, config_diff, load_runs, plot_curves
from twin.errors import ConfigError


def test_comparison_reads_back_each_run(two_runs: list[Path]) -> None:
    records = load_runs(two_runs)
    document = comparison(records)
    assert [r["label"] for r in document["runs"]] == ["fedavg-s0", "fedprox-s1"]
    assert [r["seed"] for r in document["runs"]] == [0, 1]
    for k, run_dir in enumerate(two_runs):
        kpis = pd.read_parquet(run_dir / "kpi.parquet")
        summary = json.loads((run_dir / "summary.json").read_text())
        assert document["final"]["accuracy"][k] == pytest.approx(kpis["accuracy"].iloc[-1])
        assert document["final"]["energy_total_j"][k] == pytest.approx(summary["final"]["energy_total_j"])
        assert document["final"]["round_latency_s"][k] == pytest.approx(kpis["round_latency_s"].mean())
        assert document["final"]["rounds"][k] == 2
        for service, verdict in document["qoais"].items():
            assert verdict[k] == summary["qoais"][service]["verdict"]
    assert document["config_diff"] == {"fl.strategy": ["fedavg", "fedprox"]}


def test_config_diff_names_keys_missing_from_a_run(two_runs: list[Path], tmp_path: Path) -> None:
    copy = tmp_path / "edited"
    shutil.copytree(two_runs[0], copy)
    toml = (copy / "config.toml").read_text()
    (copy / "config.toml").write_text(toml.replace("[fl]\n", "[fl]\nextra = 3\n", 1))
    diff = config_diff(load_runs([two_runs[0], copy]))
    assert diff == {"fl.extra": [None, 3]}


def test_compare_cli_json_and_plot(two_runs: list[Path], tmp_path: Path) -> None:
    plot = tmp_path / "curves.png"
    result = CliRunner().invoke(
        app, ["compare", *map(str, two_runs), "--format", "json", "--plot", str(plot)]
    )
    assert result.exit_code == 0, result.output
    document = json.loads(result.stdout)
    assert document["config_diff"] == {"fl.strategy": ["fedavg", "fedprox"]}
    assert document["plot"] == str(plot)
    assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


def test_compare_cli_table_shows_runs_side_by_side(two_runs: list[Path]) -> None:
    result = CliRunner().invoke(app, ["compare", *map(str, two_runs)], env={"COLUMNS": "200"})
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    header = next(line for line in lines if line.split()[:2] == ["final", "KPI"])
    assert header.split()[2:] == ["fedavg-s0", "fedprox-s1"]
    assert next(line for line in lines if line.strip().startswith("seed")).split() == ["seed", "0", "1"]
    strategy = next(line for line in lines if line.strip().startswith("fl.strategy"))
    assert strategy.split()[1:] == ["fedavg", "fedprox"]
    assert any(line.strip().startswith("fall-detection") for line in lines)


def test_plot_overlays_one_line_per_run(two_runs: list[Path], tmp_path: Path) -> None:
    from matplotlib.figure import Figure

    saved: list[Figure] = []
    original = Figure.savefig

    def spy(self: Figure, *args: Any, **kwargs: Any) -> None:
        saved.append(self)
        original(self, *args, **kwargs)

    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(Figure, "savefig", spy)
        plot_curves(load_runs(two_runs), tmp_path / "c.png")
    axes = [ax for ax in saved[0].axes if ax.get_visible()]
    assert [ax.get_ylabel() for ax in axes][:3] == [
        "accuracy",
        "energy, devices + network (J)",
        "round latency (s)",
    ]
    for ax in axes:
        assert [line.get_label() for line in ax.get_lines()] == ["fedavg-s0", "fedprox-s1"]
        assert np.asarray(ax.get_lines()[0].get_xdata(), dtype=float).tolist() == [1.0, 2.0]


def test_not_run_directories_are_refused(two_runs: list[Path], tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="at least two"):
        load_runs([two_runs[0]])
    with pytest.raises(ConfigError, match="no such run directory"):
        load_runs([two_runs[0], tmp_path / "nope"])
    with pytest.raises(ConfigError, match="summary.json"):
        load_runs([two_runs[0], tmp_path])
