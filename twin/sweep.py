"""``twin sweep``: the cartesian product of ``--grid`` values × seeds, run in parallel on Ray.

Every run gets its own run directory under one sweep directory (``runs/sweep-<id>/<run_id>/``). The
sweep directory then holds:

* ``runs.parquet`` / ``runs.csv``: one row per run: its grid values, seed, status and error, final KPIs
  and QoAIS verdicts (``qoais.<service>``);
* ``aggregate.parquet`` / ``aggregate.csv``: one row per grid point: mean and 95 % interval over the
  seeds (Student's t, ``n - 1`` degrees of freedom) of each KPI, over the runs that finished;
* ``plots/<kpi>.png``: the main KPIs against each swept parameter (error bars: the 95 % interval);
* ``sweep.json``: what was asked for and how it ran.

Runs are Ray tasks (a local cluster started with ``ray.init(num_cpus=...)``, or the cluster at
``--ray-address``); without Ray, or with ``--sequential``, they run one after the other in this process.
A run that raises or ends ``aborted`` is a row with its error; the others still run.

On a multi-node cluster (``--ray-address``) every node needs aiaas-twin installed, and the run
directories are written on the node that ran them: give ``--out`` a folder every node shares.
"""

from __future__ import annotations

import itertools
import json
import logging
import math
import os
import time
import uuid
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import pandas as pd

from twin.config import flatten
from twin.errors import ConfigError

log = logging.getLogger(__name__)

RUNS_TABLE = "runs"
AGGREGATE_TABLE = "aggregate"
SWEEP_JSON = "sweep.json"
PLOTS_DIR = "plots"

KPI_COLUMNS = (
    "accuracy",
    "service_accuracy",
    "round_latency_s",
    "coverage",
    "energy_total_j",
    "co2_total_g",
)
"""Final KPIs of a run in the tables (``round_latency_s``: the mean over its rounds; others: last round)."""

PLOTTED_KPIS = {
    "accuracy": "accuracy (last round)",
    "energy_total_j": "energy, devices + network (J)",
    "round_latency_s": "mean round latency (s)",
}

VOLATILE_COLUMNS = ("wall_s", "run_dir")
"""Columns of the runs table that differ between two sweeps of the same grid (timing, location)."""


def parse_grid(items: Iterable[str]) -> dict[str, list[str]]:
    """``key=v1,v2`` strings from ``--grid`` as key → values (in the order given, duplicates dropped).

    Raises:
        ConfigError: not ``key=values``, no value, or the same key twice.
    """
    grid: dict[str, list[str]] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        key = key.strip()
        values = list(dict.fromkeys(v.strip() for v in raw.split(",") if v.strip()))
        if not sep or not key or not values:
            raise ConfigError(f"--grid {item!r}: expected key=value1,value2,…")
        if key in grid:
            raise ConfigError(f"--grid {key}: given twice; list all its values in one --grid")
        grid[key] = values
    return grid


def parse_seeds(text: str) -> list[int]:
    """``--seeds``: ``0-4`` (inclusive), ``0,3,7`` or ``2``; sorted, without duplicates.

    Raises:
        ConfigError: not of that form, a negative seed, or a range that ends before it starts.
    """
    seeds: set[int] = set()
    for part in (p.strip() for p in text.split(",")):
        low, dash, high = part.partition("-")
        try:
            first = int(low)
            last = int(high) if dash else first
        except ValueError:
            raise ConfigError(f"--seeds {text!r}: expected a range like 0-4 or a list like 0,3,7") from None
        if first < 0 or last < first:
            raise ConfigError(f"--seeds {text!r}: seeds are >= 0 and a range a-b needs a <= b")
        seeds.update(range(first, last + 1))
    return sorted(seeds)


@dataclass(frozen=True, slots=True)
class SweepRun:
    """One run of the sweep: a grid point (its index and values) and a seed."""

    point: int
    seed: int
    params: dict[str, Any]
    overrides: dict[str, str]

    def run_id(self, scenario: str) -> str:
        """Topic-safe, the same in every sweep of the same grid: ``{scenario}-p{point}-s{seed}``."""
        return f"{scenario}-p{self.point:02d}-s{self.seed}"


@dataclass(slots=True)
class SweepPlan:
    """A validated sweep: scenario, fixed overrides, grid, seeds and the runs they make."""

    scenario: str
    grid: dict[str, list[str]]
    seeds: list[int]
    sets: dict[str, str] = field(default_factory=dict)
    rounds: int | None = None
    runs: list[SweepRun] = field(default_factory=list)

    @property
    def keys(self) -> list[str]:
        """The swept config keys, in ``--grid`` order."""
        return list(self.grid)


def plan_sweep(
    scenario: str,
    grid: Mapping[str, Sequence[str]],
    seeds: Sequence[int],
    sets: Mapping[str, str] | None = None,
    rounds: int | None = None,
) -> SweepPlan:
    """Check every grid point's config up front (as ``twin run --set`` would) and list the runs.

    Raises:
        ConfigError: unknown scenario or key, a bad value, a key both in ``--grid`` and ``--set``, a
            calculation scenario, or no seed.
    """
    from twin.runner import resolve_config
    from usecases import registry
    from usecases.registry import AgentScenario

    if not isinstance(registry.get(scenario), AgentScenario):
        raise ConfigError(f"scenario {scenario!r} is a calculation; twin sweep runs agent simulations")
    sets = dict(sets or {})
    if not seeds:
        raise ConfigError("--seeds: no seed")
    both = sorted(set(grid) & set(sets))
    if both:
        raise ConfigError(f"--grid {both[0]}: also given with --set; give it in one of them")
    plan = SweepPlan(scenario, {k: list(v) for k, v in grid.items()}, list(seeds), sets, rounds)
    resolve_config(scenario, sets, rounds)  # --set and --rounds alone: their errors name them
    for point, values in enumerate(itertools.product(*plan.grid.values())):
        overrides = dict(zip(plan.keys, values, strict=True))
        try:
            _, config = resolve_config(scenario, {**sets, **overrides}, rounds)
        except ConfigError as exc:
            message = str(exc).removeprefix("--set ")
            raise ConfigError(
                f"--grid {message}" + ("" if len(overrides) < 2 else f" (at {overrides})")
            ) from None
        resolved = flatten(config)
        params = {k: _plain(resolved[k]) for k in plan.keys}
        plan.runs.extend(SweepRun(point, seed, params, overrides) for seed in plan.seeds)
    return plan


def _plain(value: Any) -> Any:
    """A config value as a table cell: tuples as ``a,b`` (as ``--set`` writes them)."""
    return ",".join(map(str, value)) if isinstance(value, tuple) else value


def run_one(
    scenario: str,
    run: SweepRun,
    *,
    sets: Mapping[str, str],
    rounds: int | None,
    broker: str,
    out_dir: str,
) -> dict[str, Any]:
    """Run one point of the sweep and return its row; never raises (an exception is the row's error)."""
    from twin.runner import RunOptions, run_scenario

    run_id = run.run_id(scenario)
    row: dict[str, Any] = {"run_id": run_id, "seed": run.seed, **run.params}
    started = time.monotonic()
    try:
        result = run_scenario(
            RunOptions(
                scenario=scenario,
                seed=run.seed,
                overrides={**sets, **run.overrides},
                broker=broker,
                out_dir=Path(out_dir),
                rounds=rounds,
                run_id=run_id,
            )
        )
    except Exception as exc:  # noqa: BLE001 - a failed run is a row with its error, the others go on
        row.update(status="error", error=f"{type(exc).__name__}: {exc}")
        row.update(dict.fromkeys(("rounds_completed", *KPI_COLUMNS), math.nan))
        row.update(qoais_passed=False, wall_s=time.monotonic() - started, run_dir=str(Path(out_dir) / run_id))
        return row
    kpis = result.kpis
    last = kpis.iloc[-1] if len(kpis) else pd.Series(dtype=float)
    row.update(status=result.status, error=result.error, rounds_completed=len(kpis))
    for column in KPI_COLUMNS:
        if column == "round_latency_s":
            value = kpis[column].mean() if column in kpis else math.nan
        else:
            value = last.get(column, math.nan)
        row[column] = math.nan if value is None else float(value)
    row["qoais_passed"] = bool(result.qoais) and all(r.passed for r in result.qoais)
    for report in result.qoais:
        row[f"qoais.{report.service}"] = report.verdict
    row.update(wall_s=time.monotonic() - started, run_dir=str(result.run_dir))
    return row


@dataclass(slots=True)
class SweepResult:
    """Where a sweep was written and its tables."""

    sweep_dir: Path
    runs: pd.DataFrame
    aggregate: pd.DataFrame
    plots: list[Path]
    executor: str

    @property
    def failed(self) -> pd.DataFrame:
        """The rows of runs that did not finish (error, aborted, stopped)."""
        return self.runs[self.runs["status"] != "finished"]


Progress = Callable[[dict[str, Any]], None]


def ray_available() -> bool:
    """Whether Ray can be imported."""
    try:
        import ray  # noqa: F401
    except ImportError:
        return False
    return True


def run_sweep(
    plan: SweepPlan,
    *,
    out_dir: Path = Path("runs"),
    broker: str = "local",
    sequential: bool = False,
    ray_address: str | None = None,
    num_cpus: int | None = None,
    sweep_id: str | None = None,
    on_start: Callable[[int, str], None] | None = None,
    on_done: Progress | None = None,
) -> SweepResult:
    """Run every run of ``plan`` and write the sweep directory (see the module docstring).

    Args:
        plan: from :func:`plan_sweep`.
        out_dir: parent folder of the sweep directory.
        broker: bus of every run (``local``: in-process, nothing to share between parallel runs).
        sequential: run one after the other in this process, without Ray.
        ray_address: a Ray cluster to use (default: start a local one).
        num_cpus: CPUs of the local Ray cluster, one run each (default: all).
        sweep_id: name of the sweep directory (default ``sweep-<8 hex>``).
        on_start: told (number of runs, executor description) before the first run.
        on_done: told each run's row when it ends.

    Raises:
        ConfigError: ``--ray-address`` without Ray, or an ``--out`` that cannot be written.
    """
    from twin.runner import check_out_dir

    if ray_address and sequential:
        raise ConfigError("--ray-address and --sequential: choose one")
    if ray_address and not ray_available():
        raise ConfigError("--ray-address needs Ray: pip install 'aiaas-twin[ray]'")
    if num_cpus is not None and num_cpus < 1:
        raise ConfigError(f"--jobs must be >= 1, got {num_cpus}")
    sweep_dir = (out_dir / (sweep_id or f"sweep-{uuid.uuid4().hex[:8]}")).resolve()
    check_out_dir(sweep_dir)
    use_ray = not sequential and ray_available()
    args: dict[str, Any] = {
        "sets": plan.sets,
        "rounds": plan.rounds,
        "broker": broker,
        "out_dir": str(sweep_dir),
    }
    if use_ray:
        rows, executor = _run_on_ray(plan, args, ray_address, num_cpus, on_start, on_done)
    else:
        executor = "sequential" if sequential else "sequential (Ray is not installed)"
        if on_start is not None:
            on_start(len(plan.runs), executor)
        rows = []
        for run in plan.runs:
            rows.append(run_one(plan.scenario, run, **args))
            if on_done is not None:
                on_done(rows[-1])
    runs = runs_table(rows, plan.keys)
    aggregate = aggregate_table(runs, plan.keys)
    _write_table(runs, sweep_dir / RUNS_TABLE)
    _write_table(aggregate, sweep_dir / AGGREGATE_TABLE)
    plots = plot_sweep(aggregate, plan.keys, sweep_dir / PLOTS_DIR)
    meta = {
        "scenario": plan.scenario,
        "grid": plan.grid,
        "seeds": plan.seeds,
        "set": plan.sets,
        "rounds": plan.rounds,
        "broker": broker,
        "executor": executor,
        "runs": [asdict(r) | {"run_id": r.run_id(plan.scenario)} for r in plan.runs],
    }
    (sweep_dir / SWEEP_JSON).write_text(json.dumps(meta, indent=2, default=str) + "\n")
    return SweepResult(sweep_dir, runs, aggregate, plots, executor)


def _run_on_ray(
    plan: SweepPlan,
    args: dict[str, Any],
    ray_address: str | None,
    num_cpus: int | None,
    on_start: Callable[[int, str], None] | None,
    on_done: Progress | None,
) -> tuple[list[dict[str, Any]], str]:
    """Each run a Ray task (one CPU); rows in plan order. A task that dies is a row with its error."""
    import ray

    started_here = not ray.is_initialized()
    if started_here:
        ray.init(
            address=ray_address,
            num_cpus=None if ray_address else (num_cpus or os.cpu_count() or 1),
            include_dashboard=False,
            log_to_driver=False,
            logging_level=logging.ERROR,
            configure_logging=False,
        )
    try:
        cpus = int(ray.cluster_resources().get("CPU", 0))
        where = f"Ray cluster at {ray_address}" if ray_address else "local Ray cluster"
        executor = f"{where}, {cpus} CPUs"
        if on_start is not None:
            on_start(len(plan.runs), executor)
        task: Any = ray.remote(num_cpus=1, max_retries=0)(run_one)  # type: ignore[arg-type]
        refs = {task.remote(plan.scenario, run, **args): k for k, run in enumerate(plan.runs)}
        rows: list[dict[str, Any] | None] = [None] * len(plan.runs)
        pending = list(refs)
        while pending:
            ready, pending = ray.wait(pending, num_returns=1)
            for ref in ready:
                k = refs[ref]
                try:
                    row = ray.get(ref)
                except Exception as exc:  # noqa: BLE001 - the worker died: the run is a row with its error
                    run = plan.runs[k]
                    run_id = run.run_id(plan.scenario)
                    row = {"run_id": run_id, "seed": run.seed, **run.params, "status": "error",
                           "error": f"{type(exc).__name__}: {exc}".splitlines()[0], "qoais_passed": False,
                           "run_dir": str(Path(args["out_dir"]) / run_id)}  # fmt: skip
                rows[k] = row
                if on_done is not None:
                    on_done(row)
    finally:
        if started_here:
            ray.shutdown()
    return [r for r in rows if r is not None], executor


def runs_table(rows: Sequence[Mapping[str, Any]], keys: Sequence[str]) -> pd.DataFrame:
    """The per-run table, rows in the order given, columns in a stable order (every KPI column present)."""
    frame = pd.DataFrame(list(rows))
    base = ["run_id", "seed", *keys, "status", "error", "rounds_completed", *KPI_COLUMNS, "qoais_passed"]
    for column in base:
        if column not in frame:
            frame[column] = math.nan if column in (*KPI_COLUMNS, "rounds_completed") else None
    qoais = sorted(c for c in frame.columns if c.startswith("qoais.") and c not in base)
    rest = [c for c in frame.columns if c not in base and c not in qoais and c not in VOLATILE_COLUMNS]
    tail = [c for c in VOLATILE_COLUMNS if c in frame]
    frame = frame[[*base, *qoais, *rest, *tail]]
    for column in KPI_COLUMNS:
        frame[column] = pd.to_numeric(frame[column], errors="coerce").astype(float)
    frame["rounds_completed"] = pd.to_numeric(frame["rounds_completed"], errors="coerce").astype("Int64")
    frame["error"] = frame["error"].astype(object).where(frame["error"].notna(), None)
    return frame.reset_index(drop=True)


def t_interval(values: Sequence[float]) -> tuple[float, float, float]:
    """Mean and 95 % interval of the mean (Student's t, ``n - 1`` degrees of freedom); NaNs ignored.

    One value: its mean, and no interval (NaN bounds). No value: all NaN.
    """
    from scipy import stats

    data = [float(v) for v in values if v is not None and not math.isnan(float(v))]
    n = len(data)
    if n == 0:
        return math.nan, math.nan, math.nan
    mean = math.fsum(data) / n
    if n == 1:
        return mean, math.nan, math.nan
    sd = math.sqrt(math.fsum((v - mean) ** 2 for v in data) / (n - 1))
    half = float(stats.t.ppf(0.975, n - 1)) * sd / math.sqrt(n)
    return mean, mean - half, mean + half


def aggregate_table(runs: pd.DataFrame, keys: Sequence[str]) -> pd.DataFrame:
    """Per grid point: runs, finished runs, QoAIS pass rate, and each KPI's mean and 95 % interval.

    The statistics are over the seeds whose run finished.
    """
    rows: list[dict[str, Any]] = []
    groups = runs.groupby(list(keys), sort=False, dropna=False) if keys else [((), runs)]
    for values, group in groups:
        values = values if isinstance(values, tuple) else (values,)
        finished = group[group["status"] == "finished"]
        row: dict[str, Any] = dict(zip(keys, values, strict=True))
        row.update(
            runs=len(group),
            finished=len(finished),
            qoais_pass_rate=float(finished["qoais_passed"].astype(bool).mean())
            if len(finished)
            else math.nan,
        )
        for column in KPI_COLUMNS:
            mean, low, high = t_interval(finished[column].tolist())
            row.update({f"{column}_mean": mean, f"{column}_ci95_low": low, f"{column}_ci95_high": high})
        rows.append(row)
    return pd.DataFrame(rows)


def _write_table(frame: pd.DataFrame, stem: Path) -> None:
    """``stem.parquet`` and ``stem.csv``."""
    frame.to_parquet(stem.with_suffix(".parquet"), index=False)
    frame.to_csv(stem.with_suffix(".csv"), index=False)


def plot_sweep(aggregate: pd.DataFrame, keys: Sequence[str], plots_dir: Path) -> list[Path]:
    """One PNG per main KPI: one panel per swept key, a line per combination of the other keys.

    Error bars are the 95 % intervals. Nothing is drawn without a swept key.
    """
    from matplotlib.figure import Figure

    if not keys or aggregate.empty:
        return []
    plots_dir.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    for kpi, label in PLOTTED_KPIS.items():
        fig = Figure(figsize=(4.8 * len(keys), 3.8), layout="constrained")
        axes = fig.subplots(1, len(keys), squeeze=False)[0]
        for ax, key in zip(axes, keys, strict=True):
            levels = list(dict.fromkeys(aggregate[key].tolist()))
            numeric = all(isinstance(v, int | float) and not isinstance(v, bool) for v in levels)
            levels = sorted(levels) if numeric else levels
            others = [k for k in keys if k != key]
            groups = aggregate.groupby(others, sort=False, dropna=False) if others else [((), aggregate)]
            for values, group in groups:
                values = values if isinstance(values, tuple) else (values,)
                group = group.set_index(key).reindex(levels)
                xs = levels if numeric else list(range(len(levels)))
                mean = group[f"{kpi}_mean"].to_numpy(dtype=float)
                low = group[f"{kpi}_ci95_low"].to_numpy(dtype=float)
                high = group[f"{kpi}_ci95_high"].to_numpy(dtype=float)
                errors = [(mean - low), (high - mean)]
                name = ", ".join(f"{k}={v}" for k, v in zip(others, values, strict=True)) or None
                ax.errorbar(xs, mean, yerr=errors, marker="o", capsize=3, label=name)
            if not numeric:
                ax.set_xticks(range(len(levels)), [str(v) for v in levels])
                ax.set_xlim(-0.5, len(levels) - 0.5)
            elif len(levels) <= 12:
                ax.set_xticks(levels)
            ax.set_xlabel(key)
            ax.set_ylabel(label)
            ax.grid(alpha=0.3)
            if others:
                ax.legend(fontsize="small")
        fig.suptitle(f"{label}: mean and 95 % interval over seeds")
        path = plots_dir / f"{kpi}.png"
        fig.savefig(path, dpi=100)
        written.append(path)
    return written
