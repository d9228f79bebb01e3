"""Benchmark: wall-clock of the per-step world update at growing device counts (issue 8).

Run: ``.venv/bin/python benchmarks/bench_world.py [--sizes 60 300 1000 3000] [--scenario home-health]``.
For each size it builds the scenario on the in-process bus, steps until the first federated round has
closed (so the energy ledger holds entries for the devices, as in a running twin), then times:

- ``telemetry``: one :meth:`TwinModel.publish_telemetry` pass (every agent's telemetry on the bus);
- ``links``: one :meth:`TwinModel.update_links` pass (radio snapshot assigned to every device);
- ``step``: one :meth:`TwinModel.step` body without telemetry and without service events (a step with
  telemetry, every ``bus.telemetry_interval_s``, costs this plus the telemetry pass).

Each is the best of ``--repeat`` passes.
"""

from __future__ import annotations

import argparse
import dataclasses
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from twin.model import TwinModel
from twin.runner import RunOptions, RunSession


def _best_of(fn: Callable[[], object], repeat: int) -> float:
    """Smallest wall-clock of ``repeat`` calls of ``fn`` (seconds)."""
    best = float("inf")
    for _ in range(repeat):
        started = time.perf_counter()
        fn()
        best = min(best, time.perf_counter() - started)
    return best


def _world_step(model: TwinModel) -> Callable[[], None]:
    """``TwinModel.step``'s own body (bus, mobility, radio, pump), without telemetry or service events."""
    model.bus_cfg = dataclasses.replace(model.bus_cfg, telemetry_interval_s=1e12)  # never again
    return model._user_step  # Mesa keeps the subclass's step here and wraps it with the event clock


def measure(scenario: str, count: int, repeat: int) -> dict[str, float]:
    """Per-pass wall-clock (seconds) of telemetry, link update and one step with ``count`` devices."""
    with tempfile.TemporaryDirectory() as out:
        session = RunSession(
            RunOptions(
                scenario,
                seed=0,
                broker="local",
                out_dir=Path(out),
                overrides={"devices.count": str(count)},
                rounds=100,
            )
        )
        model = session.open()
        try:
            while not model.kpi_rows and model.running:
                model.step()
            telemetry = _best_of(model.publish_telemetry, repeat)
            links = _best_of(model.update_links, repeat)
            step = _best_of(_world_step(model), repeat)
        finally:
            session.close()
    return {"telemetry": telemetry, "links": links, "step": step}


def main() -> None:
    """Print a Markdown table of the per-pass times at each size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="home-health")
    parser.add_argument("--sizes", type=int, nargs="+", default=[60, 300, 1000, 3000])
    parser.add_argument("--repeat", type=int, default=3, help="passes timed (the best is kept)")
    args = parser.parse_args()
    print("| devices | telemetry pass (s) | update_links (s) | model.step() w/o telemetry (s) |")
    print("|---:|---:|---:|---:|")
    for count in args.sizes:
        r = measure(args.scenario, count, args.repeat)
        print(f"| {count} | {r['telemetry']:.4f} | {r['links']:.4f} | {r['step']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
