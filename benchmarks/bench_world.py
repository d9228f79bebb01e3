"""Benchmark: wall-clock of the per-step world update at growing device counts (issue 8).

Run: ``.venv/bin/python benchmarks/bench_world.py [--sizes 60 300 1000 3000] [--scenario home-health]``.
For each size it builds the scenario on the in-process bus, steps until the first federated round has
closed (so the energy ledger holds entries for the devices, as in a running twin), then times:

- ``telemetry``: one :meth:`TwinModel.publish_telemetry` pass (every agent's telemetry on the bus);
- ``links``: one :meth:`TwinModel.update_links` pass (radio snapshot assigned to every device);
- ``step``: one :meth:`TwinModel.step` body without telemetry and without service events (a step with
  telemetry, every ``bus.telemetry_interval_s``, costs this plus the telemetry pass).

Each is the best of ``--repeat`` passes.

``--moving`` measures instead a world step of **moving** devices (drones of ``grid-inspection``, taxis of
``robotaxi``) at each size, the old per-agent loop against the vectorised mobility layer
(``twin/mobility.py``): two identical worlds are built, and each repeat times one step of each in turn
(interleaved, so load changes hit both): mobility (``for d in devices: d.move(1.0)``, the loop
``TwinModel.step`` ran before, against ``model.mobility.move``), then ``update_links`` and one telemetry
pass, the same code in both. Medians of ``--repeat`` repeats after two warm-up steps, and the ratios of
mobility alone, of a step (mobility + links) and of an average simulated second (a step plus a tenth
of a telemetry pass: telemetry every ``bus.telemetry_interval_s`` = 10 s by default).
"""

from __future__ import annotations

import argparse
import dataclasses
import os
import statistics
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

from broker.bus import LocalBus
from twin.model import TwinModel
from twin.runner import RunOptions, RunSession, resolve_config
from usecases.registry import BuildContext


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


MOVING = {"grid-inspection": "drones", "robotaxi": "taxis"}
TELEMETRY_EVERY_S = 10.0  # BusConfig.telemetry_interval_s


def _moving_world(scenario: str, count: int) -> TwinModel:
    spec, config = resolve_config(scenario, {"devices.count": str(count)})
    return spec.build(config, BuildContext(f"bench-{scenario}", 0, LocalBus(), 2))


def _timed(fn: Callable[[], object]) -> float:
    started = time.perf_counter()
    fn()
    return time.perf_counter() - started


def measure_moving(scenario: str, count: int, repeat: int) -> dict[str, dict[str, float]]:
    """Median seconds of mobility, links and telemetry per step: old per-agent loop and vectorised."""
    worlds = {"loop": _moving_world(scenario, count), "vectorised": _moving_world(scenario, count)}
    devices = {mode: world._device_list() for mode, world in worlds.items()}

    def loop() -> None:
        for d in devices["loop"]:
            d.move(1.0)

    def vectorised() -> None:
        worlds["vectorised"].mobility.move(devices["vectorised"], 1.0)

    mobility = {"loop": loop, "vectorised": vectorised}
    times: dict[str, dict[str, list[float]]] = {
        mode: {"mobility": [], "links": [], "telemetry": []} for mode in worlds
    }
    for i in range(repeat + 2):
        for mode, world in worlds.items():
            parts = {
                "mobility": _timed(mobility[mode]),
                "links": _timed(world.update_links),
                "telemetry": _timed(world.publish_telemetry),
            }
            if i >= 2:  # warm-up: the first vectorised step also groups the devices into fleets
                for part, seconds in parts.items():
                    times[mode][part].append(seconds)
    result = {
        mode: {part: statistics.median(v) for part, v in parts.items()} for mode, parts in times.items()
    }
    for r in result.values():
        r["step"] = r["mobility"] + r["links"]
        r["second"] = r["step"] + r["telemetry"] / TELEMETRY_EVERY_S
    return result


def main_moving(sizes: list[int], repeat: int) -> None:
    """Print a Markdown table: per-step seconds of the old loop and the vectorised layer, and ratios."""
    print(f"load average at start: {os.getloadavg()[0]:.2f}", flush=True)
    print(
        "| devices | kind | mobility: loop (s) | vectorised (s) | × | mobility + links: loop (s)"
        " | vectorised (s) | × | simulated second with telemetry: loop (s) | vectorised (s) | × |"
        " telemetry pass (s) |"
    )
    print("|---:|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|")
    for count in sizes:
        for scenario, kind in MOVING.items():
            r = measure_moving(scenario, count, repeat)
            old, new = r["loop"], r["vectorised"]
            cells = [str(count), kind]
            for part in ("mobility", "step", "second"):
                cells += [f"{old[part]:.5f}", f"{new[part]:.5f}", f"{old[part] / new[part]:.1f}"]
            cells.append(f"{new['telemetry']:.4f}")
            print("| " + " | ".join(cells) + " |", flush=True)
    print(f"load average at end: {os.getloadavg()[0]:.2f}")


def main() -> None:
    """Print a Markdown table of the per-pass times at each size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="home-health")
    parser.add_argument("--sizes", type=int, nargs="+", default=None)
    parser.add_argument(
        "--repeat", type=int, default=3, help="passes timed (the best, or with --moving the median)"
    )
    parser.add_argument(
        "--moving", action="store_true", help="drones and taxis: old per-agent loop vs vectorised"
    )
    args = parser.parse_args()
    if args.moving:
        main_moving(args.sizes or [1000, 10000], args.repeat)
        return
    args.sizes = args.sizes or [60, 300, 1000, 3000]
    print("| devices | telemetry pass (s) | update_links (s) | model.step() w/o telemetry (s) |")
    print("|---:|---:|---:|---:|")
    for count in args.sizes:
        r = measure(args.scenario, count, args.repeat)
        print(f"| {count} | {r['telemetry']:.4f} | {r['links']:.4f} | {r['step']:.4f} |", flush=True)


if __name__ == "__main__":
    main()
