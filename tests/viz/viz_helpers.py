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


class RunThreads:
    """The threads runs own (the embedded broker's and paho's network loops) started since a baseline."""

    def __init__(self) -> None:
        self.baseline = set(threading.enumerate())

    def __call__(self) -> list[str]:
        """Names of the run threads started since the baseline, sorted."""
        return sorted(
            t.name
            for t in threading.enumerate()
            if t not in self.baseline
            and (t.name == "twin-embedded-broker" or t.name.startswith("paho-mqtt-client"))
        )

    def wait_until_gone(self, timeout_s: float = 10.0) -> list[str]:
        """Wait until none is left (threads end shortly after their close); return those still there."""
        deadline = time.monotonic() + timeout_s
        while self() and time.monotonic() < deadline:
            time.sleep(0.05)
        return self()
