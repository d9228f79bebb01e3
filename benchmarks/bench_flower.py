"""Benchmark: Flower's simulation against this project, same federated workload, per-round wall-clock.

Workload: ``--clients`` (200) clients, MLP 32-64-64-10 (Linear 32→64, ReLU, Linear 64→64, ReLU,
Linear 64→10), ``--samples`` (128) samples each, batch 32, one local epoch of plain SGD, every client
every round (FedAvg), ``--rounds`` (6) rounds.

- **Flower** (``flwr[simulation]``, Ray backend): a ``NumPyClient`` trains the torch MLP on its own
  random samples; ``FedAvg(fraction_fit=1.0)`` over all clients, no evaluation. It runs in a child
  process (``--flower-python``, default this interpreter), so that Ray's processes are gone before the
  next measurement, and in an interpreter of its own if Flower's pins clash with this project's
  environment (flwr 1.42 pins ``ray==2.55.1``, ``typer<0.21``, ``protobuf<7``).
- **aiaas-twin**: ``home-health`` through :func:`twin.runner.run_scenario` with ``--set`` overrides
  that make it that workload (200 devices of 128 samples, 32 features, 10 classes, hidden 64, …, a
  deadline no update misses), on the in-process bus (``local``) and the embedded broker (``embedded``).
  ``twin-*``: the same workload as Flower's, federated training only (radio, energy and the world's
  steps still run; the two-stage inference service and telemetry are off, as Flower has neither).
  ``whole-*``: the whole twin, inference ticks (2 a round) and telemetry (1 pass a round) as well.
- **Floor**: the local training every round needs, without any exchange: all clients trained once on
  that workload in this process, on one thread and in shards on every core (as the run's device host
  trains them, :mod:`twin.parallel`).

Per-round time = wall-clock between the ends of consecutive rounds (Flower: ``aggregate_fit``
returning; the twin: the round's KPI row), so round 1 (start-up, warm-up) is never counted; a run of
``--rounds`` R gives R − 1 round times. Runs are interleaved (flower, twin-local, twin-embedded)
``--repeats`` times; the figure of each is the median over all its round times.

Run: ``.venv/bin/python benchmarks/bench_flower.py [--repeats 3] [--flower-python PATH]``
(``pip install -e '.[bench]'`` or a separate environment with ``flwr[simulation]`` and torch).
``--profile FILE`` writes a cProfile of one extra twin-local run.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import torch

IN_FEATURES, HIDDEN, CLASSES = 32, 64, 10
FLOWER_TAG = "FLOWER_ROUND_ENDS "


def twin_overrides(args: argparse.Namespace, *, whole: bool = False) -> dict[str, str]:
    """``--set`` overrides that make ``home-health`` the benchmark's workload.

    ``whole``: keep the rest of the twin running as well (two-stage inference ticks, telemetry).
    """
    overrides = {
        "devices.count": str(args.clients),
        "devices.samples_min": str(args.samples),
        "devices.samples_max": str(args.samples),
        "task.features": str(IN_FEATURES),
        "task.classes": str(CLASSES),
        "fl.hidden": str(HIDDEN),
        "fl.batch_size": str(args.batch),
        "fl.local_epochs": "1",
        "fl.lr": str(args.lr),
        "fl.strategy": "fedavg",
        "fl.clients_per_round": "1",
        "fl.dropout_prob": "0",
        # Every update on time: a fixed per-device rate before the cell's sharing (without it, a few homes
        # at a cell's edge get no uplink at all: their updates never arrive and the round lasts until
        # the deadline, in simulated seconds stepped one by one) and a deadline no update comes near.
        "radio.fixed_rate_bps": "1e8",
        "fl.deadline_s": "60",
        "bus.resend_after_s": "60",  # wall-clock re-send requests would only add messages
    }
    if not whole:  # Flower's workload is federated training only: no inference service, no telemetry
        overrides |= {"inference.enabled": "false", "bus.telemetry_interval_s": "0"}
    for item in args.set:
        key, _, value = item.partition("=")
        overrides[key] = value
    return overrides


def run_twin(
    args: argparse.Namespace, broker: str, out: Path, *, whole: bool = False
) -> tuple[list[float], dict[str, Any]]:
    """One twin run; per-round wall-clock times (rounds 2…R) and the last KPI row."""
    from twin.model import TwinModel
    from twin.runner import RunOptions, run_scenario

    ends: list[float] = []

    def on_model(model: TwinModel) -> None:
        model.kpi_listeners.append(lambda row: ends.append(time.perf_counter()))

    result = run_scenario(
        RunOptions(
            "home-health",
            seed=0,
            broker=broker,
            out_dir=out,
            rounds=args.rounds,
            overrides=twin_overrides(args, whole=whole),
        ),
        on_model=on_model,
    )
    if result.status != "finished":
        raise RuntimeError(f"twin run on {broker} ended {result.status}: {result.error}")
    kpis = result.kpis
    if (kpis["accepted"] != kpis["selected"]).any():
        raise RuntimeError(
            f"twin run on {broker}: not every update was accepted:\n{kpis[['accepted', 'selected']]}"
        )
    last = kpis.iloc[-1].to_dict()
    return [b - a for a, b in zip(ends, ends[1:], strict=False)], last


def local_floor(args: argparse.Namespace) -> tuple[float, float]:
    """Wall-clock of training every client on the workload once, in this process.

    Two figures: on one thread, and in shards on every core as the run's device host trains
    (:mod:`twin.parallel`).
    """
    from twin import parallel
    from twin.learning.cohort import LocalData, StackedData, keyed_schedule, train_cohort_stacked
    from twin.learning.models import MLP, init_params

    net = MLP(IN_FEATURES, HIDDEN, CLASSES)
    params = init_params(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    data = [
        LocalData(
            torch.randn(args.samples, IN_FEATURES, generator=g),
            torch.randint(0, CLASSES, (args.samples,), generator=g),
        )
        for _ in range(args.clients)
    ]
    schedule = keyed_schedule(
        [args.samples] * args.clients, epochs=1, batch_size=args.batch, keys=list(range(args.clients))
    )
    stacked = StackedData.of(data)

    def train(a: int, b: int) -> object:
        return train_cohort_stacked(net, params, stacked.rows(a, b), schedule.rows(a, b), lr=args.lr)

    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # as a device host trains (and as a run computes)
    try:
        started = time.perf_counter()
        train(0, args.clients)
        one = time.perf_counter() - started
        started = time.perf_counter()
        parallel.map_shards(train, parallel.shard_bounds(args.clients, min_shard=32))
        return one, time.perf_counter() - started
    finally:
        torch.set_num_threads(threads)


# --- Flower (runs in a child process: ``--flower-worker``) -------------------------------------------


def flower_worker(args: argparse.Namespace) -> None:
    """Run Flower's simulation once and print the wall-clock end of every round as one JSON line."""
    import warnings

    warnings.filterwarnings("ignore")
    from flwr.client import ClientApp, NumPyClient
    from flwr.common import Context, ndarrays_to_parameters
    from flwr.server import ServerApp, ServerAppComponents, ServerConfig
    from flwr.server.strategy import FedAvg
    from flwr.simulation import run_simulation
    from torch import nn

    def make_net() -> nn.Module:
        return nn.Sequential(
            nn.Linear(IN_FEATURES, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, HIDDEN),
            nn.ReLU(),
            nn.Linear(HIDDEN, CLASSES),
        )

    def get_weights(net: nn.Module) -> list[np.ndarray]:
        return [v.detach().cpu().numpy() for v in net.state_dict().values()]

    def set_weights(net: nn.Module, weights: list[np.ndarray]) -> None:
        keys = list(net.state_dict().keys())
        net.load_state_dict({k: torch.from_numpy(np.asarray(w)) for k, w in zip(keys, weights, strict=True)})

    class Client(NumPyClient):  # type: ignore[misc]
        def __init__(self, cid: int) -> None:
            g = torch.Generator().manual_seed(cid)
            self.x = torch.randn(args.samples, IN_FEATURES, generator=g)
            self.y = torch.randint(0, CLASSES, (args.samples,), generator=g)
            self.g = g
            self.net = make_net()

        def fit(
            self, parameters: list[np.ndarray], config: dict[str, Any]
        ) -> tuple[Any, int, dict[str, Any]]:
            set_weights(self.net, parameters)
            opt = torch.optim.SGD(self.net.parameters(), lr=args.lr)
            loss_fn = nn.CrossEntropyLoss()
            order = torch.randperm(args.samples, generator=self.g)
            for i in range(0, args.samples, args.batch):
                idx = order[i : i + args.batch]
                opt.zero_grad()
                loss_fn(self.net(self.x[idx]), self.y[idx]).backward()
                opt.step()
            return get_weights(self.net), args.samples, {}

    def client_fn(context: Context) -> Any:
        return Client(int(context.node_config["partition-id"])).to_client()

    ends: list[float] = []

    class TimedFedAvg(FedAvg):  # type: ignore[misc]
        def aggregate_fit(self, server_round: int, results: Any, failures: Any) -> Any:
            out = super().aggregate_fit(server_round, results, failures)
            if failures:
                raise RuntimeError(f"Flower round {server_round}: {len(failures)} clients failed")
            ends.append(time.perf_counter())
            return out

    def server_fn(context: Context) -> Any:
        torch.manual_seed(0)
        strategy = TimedFedAvg(
            fraction_fit=1.0,
            fraction_evaluate=0.0,
            min_fit_clients=args.clients,
            min_evaluate_clients=0,
            min_available_clients=args.clients,
            initial_parameters=ndarrays_to_parameters(get_weights(make_net())),
        )
        return ServerAppComponents(strategy=strategy, config=ServerConfig(num_rounds=args.rounds))

    run_simulation(
        server_app=ServerApp(server_fn=server_fn),
        client_app=ClientApp(client_fn=client_fn),
        num_supernodes=args.clients,
        backend_config={"client_resources": {"num_cpus": 1, "num_gpus": 0.0}},
    )
    print(FLOWER_TAG + json.dumps(ends), flush=True)


def flower_available(python: str) -> str | None:
    """Flower's version in ``python``, or ``None`` when it cannot import ``flwr.simulation`` and torch."""
    probe = "import flwr, flwr.simulation, torch; print(flwr.__version__)"
    done = subprocess.run([python, "-c", probe], capture_output=True, text=True, check=False)
    return done.stdout.strip() if done.returncode == 0 else None


def run_flower(args: argparse.Namespace) -> list[float]:
    """One Flower simulation in a child process; per-round wall-clock times (rounds 2…R)."""
    command = [args.flower_python, __file__, "--flower-worker"]
    command += ["--clients", str(args.clients), "--rounds", str(args.rounds), "--samples", str(args.samples)]
    command += ["--batch", str(args.batch), "--lr", str(args.lr)]
    env = {**os.environ, "RAY_DEDUP_LOGS": "0", "PYTHONWARNINGS": "ignore"}
    done = subprocess.run(command, capture_output=True, text=True, env=env, check=False)
    lines = [ln for ln in done.stdout.splitlines() if ln.startswith(FLOWER_TAG)]
    if done.returncode != 0 or not lines:
        tail = (done.stderr or done.stdout).strip().splitlines()[-5:]
        raise RuntimeError("Flower run failed:\n" + "\n".join(tail))
    ends = json.loads(lines[-1][len(FLOWER_TAG) :])
    return [b - a for a, b in zip(ends, ends[1:], strict=False)]


# --- main ----------------------------------------------------------------------------------------------


def main() -> None:
    """Interleave Flower, twin-local and twin-embedded runs and print per-round medians and ratios."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--clients", type=int, default=200)
    parser.add_argument("--rounds", type=int, default=6, help="rounds per run (round 1 is not counted)")
    parser.add_argument("--samples", type=int, default=128)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--lr", type=float, default=0.1)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--flower-python", default=sys.executable, help="interpreter that has flwr[simulation]"
    )
    parser.add_argument("--skip-flower", action="store_true")
    parser.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="extra twin override")
    parser.add_argument("--profile", type=Path, default=None, help="cProfile of one extra twin-local run")
    parser.add_argument("--flower-worker", action="store_true", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rounds < 2:
        parser.error("--rounds must be >= 2 (round 1 is warm-up)")
    if args.flower_worker:
        flower_worker(args)
        return

    version = None if args.skip_flower else flower_available(args.flower_python)
    if version is None and not args.skip_flower:
        print(
            f"Flower not available in {args.flower_python} (pip install -e '.[bench]', or pass "
            "--flower-python): running the aiaas-twin part only"
        )
    print(
        f"workload: {args.clients} clients × {args.samples} samples, MLP {IN_FEATURES}-{HIDDEN}-{HIDDEN}-"
        f"{CLASSES}, batch {args.batch}, 1 epoch SGD, FedAvg over all, {args.rounds} rounds/run "
        f"(round 1 not counted), {args.repeats} interleaved repeats; "
        f"torch threads {torch.get_num_threads()}, "
        f"{os.cpu_count()} CPUs, load {' '.join(f'{x:.2f}' for x in os.getloadavg())}"
        + (f"; flwr {version}" if version else "")
    )
    runners: dict[str, Callable[[Path], list[float]]] = {}
    if version is not None:
        runners["flower"] = lambda out: run_flower(args)
    last_rows: dict[str, dict[str, Any]] = {}

    def twin(broker: str, name: str, *, whole: bool = False) -> Callable[[Path], list[float]]:
        def go(out: Path) -> list[float]:
            times, last_rows[name] = run_twin(args, broker, out, whole=whole)
            return times

        return go

    runners["twin-local"] = twin("local", "twin-local")
    runners["twin-embedded"] = twin("embedded", "twin-embedded")
    runners["whole-local"] = twin("local", "whole-local", whole=True)
    runners["whole-embedded"] = twin("embedded", "whole-embedded", whole=True)
    rounds: dict[str, list[float]] = {name: [] for name in runners}
    floors: list[tuple[float, float]] = []
    with tempfile.TemporaryDirectory() as tmp:
        local_floor(args)  # warm-up (vmap tracing, allocator)
        for repeat in range(args.repeats):
            for name, run in runners.items():
                times = run(Path(tmp))
                rounds[name] += times
                print(
                    f"  repeat {repeat + 1} {name:>13}: " + " ".join(f"{t:.3f}" for t in times) + " s/round"
                )
            floors.append(local_floor(args))
        if args.profile is not None:
            import cProfile

            profiler = cProfile.Profile()
            profiler.runcall(run_twin, args, "local", Path(tmp))
            profiler.dump_stats(args.profile)
            print(f"profile of one twin-local run: {args.profile}")
    for name, row in last_rows.items():
        print(
            f"{name} last round: accepted {int(row['accepted'])}/{int(row['selected'])}, "
            f"simulated round latency {row['round_latency_s']:.2f} s, accuracy {row['accuracy']:.3f}"
        )
    median = {name: statistics.median(times) for name, times in rounds.items()}
    from twin import parallel

    floor = statistics.median(f[0] for f in floors)
    sharded = statistics.median(f[1] for f in floors)
    for name, value in median.items():
        print(f"{name:>14}: {value:8.3f} s/round (median of {len(rounds[name])} rounds)")
    print(
        f"{'floor':>14}: {floor:8.3f} s one thread, {sharded:.3f} s in shards on {parallel.threads()} "
        f"threads (training {args.clients} clients once, median of {len(floors)})"
    )
    if "flower" in median:
        for name in ("twin-local", "twin-embedded", "whole-local", "whole-embedded"):
            print(f"flower / {name}: {median['flower'] / median[name]:6.1f}×")


if __name__ == "__main__":
    main()
