"""Benchmark: batched cohort training against a loop over devices, same schedule, same process.

Run: ``.venv/bin/python benchmarks/bench_cohort.py [--devices 200] [--repeats 3]``. Prints the median
wall-clock of each and their ratio, and checks both give the same parameters.
"""

from __future__ import annotations

import argparse
import statistics
import time

import numpy as np
import torch

from twin.learning.cohort import LocalData, make_schedule, train_cohort, train_loop
from twin.learning.models import MLP, init_params


def main() -> None:
    """Time both trainers on a synthetic cohort and print the figures."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--devices", type=int, default=200)
    parser.add_argument("--samples", type=int, default=100)
    parser.add_argument("--repeats", type=int, default=3)
    args = parser.parse_args()
    net = MLP(64, 48, 4)
    params = init_params(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    data = [
        LocalData(
            torch.randn(args.samples, 64, generator=g), torch.randint(0, 4, (args.samples,), generator=g)
        )
        for _ in range(args.devices)
    ]
    schedule = make_schedule(
        [args.samples] * args.devices,
        epochs=2,
        batch_size=16,
        rngs=[np.random.default_rng(i) for i in range(args.devices)],
    )
    train_cohort(net, params, data[:2], make_schedule([args.samples] * 2, epochs=1, batch_size=16,
                 rngs=[np.random.default_rng(0), np.random.default_rng(1)]), lr=0.1)  # fmt: skip  # warm-up
    timings: dict[str, list[float]] = {"cohort (batched)": [], "loop": []}
    results = {}
    for _ in range(args.repeats):
        for name, trainer in (("cohort (batched)", train_cohort), ("loop", train_loop)):
            started = time.perf_counter()
            results[name] = trainer(net, params, data, schedule, lr=0.1)
            timings[name].append(time.perf_counter() - started)
    cohort, loop = (statistics.median(timings[k]) for k in ("cohort (batched)", "loop"))
    diff = max(
        float((a[k] - b[k]).abs().max())
        for a, b in zip(results["cohort (batched)"], results["loop"], strict=True)
        for k in a
    )
    print(
        f"{args.devices} devices × {args.samples} samples, 2 epochs, batch 16, torch threads "
        f"{torch.get_num_threads()}"
    )
    print(f"cohort (batched): {cohort:.3f} s   loop: {loop:.3f} s   speed-up: {loop / cohort:.1f}×")
    print(f"largest parameter difference: {diff:.2e}")


if __name__ == "__main__":
    main()
