"""Helpers of the visualisation tests: small scenario settings and the threads a run owns."""

from __future__ import annotations

import threading
import time

from twin.config import flatten
from usecases import registry
from usecases.registry import AgentScenario

# Keep the worlds small so that a step (and a federated round) is quick.
SMALL = {
    "devices.count": "8",
    "fl.rounds": "3",
    "devices.test_households": "10",
    "devices.test_samples": "200",
}


def small_overrides(scenario: str) -> dict[str, str]:
    """The :data:`SMALL` settings that ``scenario``'s config has (none for an unknown scenario)."""
    if scenario not in registry.names():
        return {}
    keys = flatten(registry.get(scenario).default_config())
    return {k: v for k, v in SMALL.items() if k in keys}


def agent_scenarios() -> list[str]:
    """Every registered agent (Mesa) scenario."""
    return [n for n in registry.names() if isinstance(registry.get(n), AgentScenario)]


def _broker_processes() -> set[int]:
    """Pids of this process's live embedded-broker children (the broker runs in its own process)."""
    import psutil

    pids: set[int] = set()
    for child in psutil.Process().children(recursive=False):
        try:
            if child.status() != psutil.STATUS_ZOMBIE and "broker.embedded_server" in " ".join(
                child.cmdline()
            ):
                pids.add(child.pid)
        except psutil.Error:
            continue
    return pids


class RunThreads:
    """What runs own, started since a baseline: paho's network threads and embedded-broker processes.

    A broker process is listed as ``twin-embedded-broker``.
    """

    def __init__(self) -> None:
        self.baseline = set(threading.enumerate())
        self.baseline_brokers = _broker_processes()

    def __call__(self) -> list[str]:
        """Names of the run threads (and ``twin-embedded-broker`` per broker process) since the baseline."""
        threads = [
            t.name
            for t in threading.enumerate()
            if t not in self.baseline and t.name.startswith("paho-mqtt-client")
        ]
        brokers = ["twin-embedded-broker"] * len(_broker_processes() - self.baseline_brokers)
        return sorted(threads + brokers)

    def wait_until_gone(self, timeout_s: float = 10.0) -> list[str]:
        """Wait until none is left (threads end shortly after their close); return those still there."""
        deadline = time.monotonic() + timeout_s
        while self() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self()
