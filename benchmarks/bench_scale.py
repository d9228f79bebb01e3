"""Benchmark: home-health at scale — devices as MQTT endpoints in one in-process device host.

Run: ``.venv/bin/python benchmarks/bench_scale.py --devices 1000 10000 --rounds 10 --bus embedded``.
Cells scale with the devices (one base station per ``--per-cell`` devices, the area grown to keep the
density of the default scenario), so that the radio can carry every upload within the deadline. Each
size runs in a fresh subprocess, so the peak memory printed (max RSS) is that run's own. Prints
wall-clock, seconds per round, peak RSS, messages and the last round's accuracy.
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path


def scaled_overrides(devices: int, per_cell: int) -> dict[str, str]:
    """``--set`` keys for ``devices`` homes, cells and area scaled from the default (60 homes, 4 cells)."""
    cells = max(4, math.ceil(devices / per_cell))
    side = 1200.0 * math.sqrt(devices / 60.0)
    return {
        "devices.count": str(devices),
        "devices.neighbourhoods": str(max(5, devices // 12)),
        "area.width_m": f"{side:.0f}",
        "area.height_m": f"{side:.0f}",
        "area.base_stations": str(cells),
        "area.grid_m": f"{max(25.0, side / 150):.0f}",
    }


def one(devices: int, rounds: int, bus: str, per_cell: int, workers: int = 0) -> dict[str, object]:
    """Run one size in this process and return its figures."""
    from twin.runner import RunOptions, run_scenario

    with tempfile.TemporaryDirectory() as out:
        started = time.perf_counter()
        result = run_scenario(
            RunOptions(
                "home-health",
                seed=0,
                overrides=scaled_overrides(devices, per_cell),
                broker=bus,
                out_dir=Path(out),
                rounds=rounds,
                workers=workers,
            )
        )
        wall = time.perf_counter() - started
    kpis = result.kpis
    return {
        "devices": devices,
        "bus": bus,
        "workers": workers,
        "status": result.status,
        "error": result.error,
        "rounds": len(kpis),
        "wall_s": round(wall, 2),
        "s_per_round": round(wall / max(1, len(kpis)), 3),
        "peak_rss_mb": round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1),
        "messages": result.summary["bus"]["published"],
        "accuracy": round(float(kpis.accuracy.iloc[-1]), 4) if len(kpis) else None,
        "accepted_last_round": int(kpis.accepted.iloc[-1]) if len(kpis) else 0,
    }


def main() -> None:
    """Each size in its own subprocess; one JSON line and one readable line per size."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, nargs="+", default=[1000])
    parser.add_argument("--rounds", type=int, default=10)
    parser.add_argument("--bus", default="embedded", help="embedded | local | mqtt://host:port")
    parser.add_argument("--per-cell", type=int, default=50, help="devices per base station")
    parser.add_argument("--workers", type=int, nargs="+", default=[0], help="device-host workers (Ray)")
    parser.add_argument("--one", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(json.dumps(one(args.devices[0], args.rounds, args.bus, args.per_cell, args.workers[0])))
        return
    for n in args.devices:
        for workers in args.workers:
            cmd = [sys.executable, __file__, "--one", "--devices", str(n), "--rounds", str(args.rounds)]
            cmd += ["--bus", args.bus, "--per-cell", str(args.per_cell), "--workers", str(workers)]
            out = subprocess.run(cmd, capture_output=True, text=True, check=False)
            if out.returncode != 0:
                print(f"{n} devices, {workers} workers: failed\n{out.stderr[-2000:]}")
                continue
            f = json.loads(out.stdout.strip().splitlines()[-1])
            print(
                f"{n:>6} devices × {f['rounds']} rounds on {args.bus}, {workers} workers: "
                f"{f['wall_s']:7.1f} s wall, "
                f"{f['s_per_round']:.2f} s/round, peak RSS {f['peak_rss_mb']:.0f} MB (run process), "
                f"{f['messages']} messages, accuracy {f['accuracy']}, status {f['status']}"
                + (f" ({f['error']})" if f["error"] else "")
            )
            print(json.dumps(f))


if __name__ == "__main__":
    main()
