"""Benchmark: wall-clock of a whole scenario run on each bus, same seed, same process.

Run: ``.venv/bin/python benchmarks/bench_run.py [--scenario home-health] [--rounds 20]``. Prints the
wall-clock per bus, its ratio to the in-process bus, and whether the KPI tables are identical.
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

from twin.runner import RunOptions, run_scenario


def main() -> None:
    """Run the scenario on the in-process bus and the embedded broker (and Mosquitto if given)."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--scenario", default="home-health")
    parser.add_argument("--rounds", type=int, default=None)
    parser.add_argument("--mosquitto", default=None, help="e.g. mqtt://127.0.0.1:1883")
    args = parser.parse_args()
    buses = ["local", "embedded"] + ([args.mosquitto] if args.mosquitto else [])
    with tempfile.TemporaryDirectory() as out:
        results = {}
        for bus in buses:
            started = time.perf_counter()
            result = run_scenario(
                RunOptions(args.scenario, seed=0, broker=bus, out_dir=Path(out), rounds=args.rounds)
            )
            results[bus] = (time.perf_counter() - started, result)
    base_s, base = results["local"]
    for bus, (wall_s, result) in results.items():
        same = result.kpis.equals(base.kpis)
        rounds = len(result.kpis)
        print(
            f"{bus:>28}: {wall_s:6.2f} s for {rounds} rounds ({wall_s / max(rounds, 1):.3f} s/round), "
            f"{wall_s / base_s:4.2f}× in-process, KPIs identical: {same}, "
            f"messages {result.summary['bus']['published']}"
        )


if __name__ == "__main__":
    main()
