"""Energy ledger: joules per agent and category, for devices and the network (SPEC §7)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

CATEGORIES = ("compute", "uplink", "downlink", "aggregation")
NETWORK = "network"


@dataclass(slots=True)
class EnergyLedger:
    """Accumulates energy by (agent, category); the network's share is booked under ``network``."""

    _joules: dict[tuple[str, str], float] = field(default_factory=lambda: defaultdict(float))

    def add(self, agent_id: str, category: str, joules: float) -> None:
        """Book ``joules`` (≥ 0) to ``agent_id`` under ``category``."""
        if category not in CATEGORIES:
            raise ValueError(f"energy category must be one of {CATEGORIES}, got {category!r}")
        if joules < 0:
            raise ValueError(f"energy must be >= 0, got {joules}")
        self._joules[(agent_id, category)] += joules

    def total(self, agent_id: str | None = None, category: str | None = None) -> float:
        """Sum over the matching entries (``None`` matches everything)."""
        return sum(
            j
            for (a, c), j in self._joules.items()
            if (agent_id is None or a == agent_id) and (category is None or c == category)
        )

    def by_agent(self) -> dict[str, float]:
        """Total joules per agent, sorted by agent id."""
        out: dict[str, float] = defaultdict(float)
        for (a, _), j in self._joules.items():
            out[a] += j
        return dict(sorted(out.items()))

    def snapshot(self) -> dict[tuple[str, str], float]:
        """A copy of every entry."""
        return dict(self._joules)

    def since(self, mark: dict[tuple[str, str], float]) -> tuple[float, float]:
        """Joules booked since ``mark`` (a :meth:`snapshot`): (all devices, the network)."""
        devices = network = 0.0
        for key, joules in self._joules.items():
            delta = joules - mark.get(key, 0.0)
            if key[0] == NETWORK:
                network += delta
            else:
                devices += delta
        return devices, network
