"""``twin sweep``: grid and seed parsing, up-front validation, statistics, Ray vs sequential, failures."""

from __future__ import annotations

import math
import subprocess
import sys
from pathlib import Path

import pandas as pd
import pytest
from study_helpers import TINY
from typer.testing import CliRunner

from twin import sweep
from twin.cli import app
from twin.errors import ConfigError
from twin.sweep import (
    VOLATILE_COLUMNS,
    SweepRun,
    aggregate_table,
    parse_grid,
    parse_seeds,
    plan_sweep,
    run_sweep,
    t_interval,
)

BASE = {k: v for k, v in TINY.items() if k != "devices.count"}  # devices.count is swept
GRID = {"fl.strategy": ["fedavg", "fedprox"], "devices.count": ["4", "5"]}


def test_parse_grid_and_seeds() -> None:
    assert parse_grid(["fl.strategy=fedavg, fedprox", "devices.count=60,200,60"]) == {
        "fl.strategy": ["fedavg", "fedprox"],
        "devices.count": ["60", "200"],
    }
    assert parse_seeds("0-4") == [0, 1, 2, 3, 4]
    assert parse_seeds("7,0,2-3") == [0, 2, 3, 7]
    for bad in (["fl.strategy"], ["=1,2"], ["fl.strategy="], ["a=1", "a=2"]):
        with pytest.raises(ConfigError, match="--grid"):
            parse_grid(bad)
    for text in ("4-0", "x", "-1", ""):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(text)


def test_plan_is_the_cartesian_product_with_typed_values() -> None:
    plan = plan_sweep("home-health", GRID, [0, 1], BASE, rounds=1)
    assert len(plan.runs) == 8
    assert [(r.point, r.seed) for r in plan.runs[:3]] == [(0, 0), (0, 1), (1, 0)]
    assert plan.runs[-1].params == {"fl.strategy": "fedprox", "devices.count": 5}  # int, as in the config
    assert plan.runs[-1].run_id("home-health") == "home-health-p03-s1"


@pytest.mark.parametrize(
    ("grid", "sets", "message"),
    [
        ({"devices.cnt": ["1"]}, {}, "--grid devices.cnt: unknown key"),
        ({"devices.count": ["4", "x"]}, {}, "--grid devices.count: expected int"),
        ({"fl.strategy": ["fedavg", "nope"]}, {}, "--grid fl.strategy: expected one of"),
        ({"fl.strategy": ["fedavg"]}, {"fl.strategy": "fedprox"}, "also given with --set"),
        ({}, {"fl.rounds": "many"}, "--set fl.rounds: expected int"),
    ],
)
def test_bad_grid_is_refused_before_anything_runs(
    grid: dict[str, list[str]], sets: dict[str, str], message: str
) -> None:
    with pytest.raises(ConfigError, match=message):
        plan_sweep("home-health", grid, [0], sets)


def test_calculation_scenarios_are_refused() -> None:
    from usecases import registry
    from usecases.registry import CalculationScenario

    calc = next(e.name for e in registry.entries() if isinstance(registry.get(e.name), CalculationScenario))
    with pytest.raises(ConfigError, match="calculation"):
        plan_sweep(calc, {}, [0])


def test_t_interval_matches_student_t() -> None:
    mean, low, high = t_interval([1.0, 2.0, 3.0])
    half = 4.302652729911275 / math.sqrt(3)  # t(0.975, 2 df) × sd 1 / sqrt(3)
    assert mean == pytest.approx(2.0)
    assert (low, high) == (pytest.approx(2.0 - half), pytest.approx(2.0 + half))
    assert math.isnan(t_interval([5.0])[1]) and t_interval([5.0])[0] == 5.0
    assert all(math.isnan(v) for v in t_interval([]))


def test_aggregate_uses_only_finished_runs() -> None:
    runs = pd.DataFrame(
        {
            "k": ["a", "a", "a", "b"],
            "seed": [0, 1, 2, 0],
            "status": ["finished", "finished", "error", "finished"],
            "qoais_passed": [True, False, False, True],
            **{c: [1.0, 3.0, 100.0, 7.0] for c in sweep.KPI_COLUMNS},
        }
    )
    agg = aggregate_table(runs, ["k"])
    a, b = agg.to_dict("records")
    assert (a["runs"], a["finished"], a["qoais_pass_rate"]) == (3, 2, 0.5)
    assert a["accuracy_mean"] == 2.0  # the errored run's 100 is left out
    assert a["accuracy_ci95_high"] - 2.0 == pytest.approx(12.706204736174698 * math.sqrt(2) / math.sqrt(2))
    assert b["accuracy_mean"] == 7.0 and math.isnan(b["accuracy_ci95_low"])


def _stable(sweep_dir: Path, table: str) -> pd.DataFrame:
    frame = pd.read_parquet(sweep_dir / f"{table}.parquet")
    return frame.drop(columns=[c for c in VOLATILE_COLUMNS if c in frame])


@pytest.mark.slow
def test_ray_and_sequential_sweeps_give_the_same_tables(tmp_path: Path) -> None:
    """A 2×2 grid with 2 seeds on a local Ray cluster and sequentially: same runs and aggregate tables."""
    pytest.importorskip("ray")
    plan = plan_sweep("home-health", GRID, [0, 1], BASE, rounds=1)
    done: list[str] = []
    on_ray = run_sweep(
        plan, out_dir=tmp_path, num_cpus=2, sweep_id="ray", on_done=lambda r: done.append(r["run_id"])
    )
    in_turn = run_sweep(plan, out_dir=tmp_path, sequential=True, sweep_id="seq")
    assert on_ray.executor == "local Ray cluster, 2 CPUs" and in_turn.executor == "sequential"
    assert sorted(done) == sorted(r.run_id("home-health") for r in plan.runs)
    for table in ("runs", "aggregate"):
        pd.testing.assert_frame_equal(_stable(on_ray.sweep_dir, table), _stable(in_turn.sweep_dir, table))
    runs = _stable(on_ray.sweep_dir, "runs")
    assert len(runs) == 8 and set(runs["status"]) == {"finished"}
    assert runs["accuracy"].between(0, 1).all() and (runs["energy_total_j"] > 0).all()
    assert set(runs["qoais.fall-detection"]) <= {"PASS", "FAIL"}
    assert (runs["devices.count"].to_list(), runs["seed"].to_list()) == ([4, 4, 5, 5] * 2, [0, 1] * 4)
    csv = pd.read_csv(on_ray.sweep_dir / "runs.csv")
    assert csv["run_id"].to_list() == runs["run_id"].to_list()
    agg = _stable(on_ray.sweep_dir, "aggregate")
    assert len(agg) == 4 and (agg["finished"] == 2).all()
    first = runs[(runs["fl.strategy"] == "fedavg") & (runs["devices.count"] == 4)]
    assert agg.loc[0, "accuracy_mean"] == pytest.approx(first["accuracy"].mean())
    assert (agg["accuracy_ci95_low"] <= agg["accuracy_mean"]).all()
    for run in plan.runs:  # every run has its own directory in the sweep directory
        assert (on_ray.sweep_dir / run.run_id("home-health") / "kpi.parquet").is_file()
    assert [p.name for p in on_ray.plots] == ["accuracy.png", "energy_total_j.png", "round_latency_s.png"]
    for plot in on_ray.plots:
        assert plot.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n" and plot.stat().st_size > 10_000


@pytest.mark.slow
def test_a_failed_run_is_a_row_and_the_others_finish(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from twin import runner

    real = runner.run_scenario

    def flaky(options: runner.RunOptions, **kwargs: object) -> runner.RunResult:
        if options.seed == 1 and options.overrides["fl.strategy"] == "fedprox":
            raise RuntimeError("boom")
        return real(options)

    monkeypatch.setattr(runner, "run_scenario", flaky)
    plan = plan_sweep("home-health", {"fl.strategy": ["fedavg", "fedprox"]}, [0, 1], TINY, rounds=1)
    result = run_sweep(plan, out_dir=tmp_path, sequential=True)
    runs = result.runs.set_index("run_id")
    assert runs.loc["home-health-p01-s1", "status"] == "error"
    assert runs.loc["home-health-p01-s1", "error"] == "RuntimeError: boom"
    assert math.isnan(runs.loc["home-health-p01-s1", "accuracy"])
    assert (runs.drop(index="home-health-p01-s1")["status"] == "finished").all()
    assert list(result.failed["run_id"]) == ["home-health-p01-s1"]
    agg = result.aggregate.set_index("fl.strategy")
    assert agg.loc["fedprox", "finished"] == 1 and agg.loc["fedprox", "runs"] == 2
    assert agg.loc["fedprox", "accuracy_mean"] == runs.loc["home-health-p01-s0", "accuracy"]


def test_without_ray_the_sweep_runs_sequentially_and_says_so(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray → ImportError
    calls: list[SweepRun] = []

    def run_one(scenario: str, run: SweepRun, **kw: object) -> dict[str, object]:
        calls.append(run)
        return {"run_id": run.run_id(scenario), "seed": run.seed, **run.params, "status": "finished"}

    monkeypatch.setattr(sweep, "run_one", run_one)
    result = CliRunner().invoke(
        app, ["sweep", "home-health", "--grid", "fl.strategy=fedavg,fedprox", "--out", str(tmp_path)]
    )
    assert result.exit_code == 0, result.output
    notices = [line for line in result.stderr.splitlines() if "Ray" in line]
    assert notices == ["Ray is not installed (pip install 'aiaas-twin[ray]'): running the sweep sequentially"]
    assert len(calls) == 2
    assert "2 runs on sequential (Ray is not installed)" in result.stdout
    with pytest.raises(ConfigError, match="--ray-address needs Ray"):
        run_sweep(plan_sweep("home-health", {}, [0]), out_dir=tmp_path, ray_address="ray://x:10001")


def test_cli_exits_4_when_a_run_failed(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    def run_one(scenario: str, run: SweepRun, **kw: object) -> dict[str, object]:
        status = "aborted" if run.seed else "finished"
        return {"run_id": run.run_id(scenario), "seed": run.seed, **run.params, "status": status,
                "error": "broker lost" if run.seed else None}  # fmt: skip

    monkeypatch.setattr(sweep, "run_one", run_one)
    result = CliRunner().invoke(
        app, ["sweep", "home-health", "--seeds", "0-1", "--sequential", "--out", str(tmp_path)]
    )
    assert result.exit_code == 4
    assert "home-health-p00-s1 aborted: broker lost" in result.stdout
    assert "1 of 2 runs did not finish" in result.stderr


@pytest.mark.slow
def test_bad_grid_key_is_one_line_and_exit_2() -> None:
    proc = subprocess.run(
        [sys.executable, "-m", "twin", "sweep", "home-health", "--grid", "devices.cnt=1,2"],
        capture_output=True,
        text=True,
        timeout=120,
    )
    lines = [line for line in proc.stderr.splitlines() if line.strip()]
    assert proc.returncode == 2
    assert len(lines) == 1 and lines[0].startswith("error: --grid devices.cnt: unknown key"), proc.stderr
