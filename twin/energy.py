"""Energy ledger: joules per agent, service and category, for devices and the network (SPEC §7)."""

from __future__ import annotations

from collections import defaultdict
from dataclasses import dataclass, field

CATEGORIES = ("compute", "uplink", "downlink", "aggregation", "inference")
NETWORK = "network"
Key = tuple[str, str, str]  # (agent, service, category)


@dataclass(slots=True)
class EnergyLedger:
    """Accumulates energy by (agent, service, category); the network's share is booked under ``network``."""

    _joules: dict[Key, float] = field(default_factory=lambda: defaultdict(float))

    def add(self, agent_id: str, category: str, joules: float, *, service: str) -> None:
        """Book ``joules`` (≥ 0, finite) to ``agent_id`` for ``service`` under ``category``."""
        if category not in CATEGORIES:
            raise ValueError(f"energy category must be one of {CATEGORIES}, got {category!r}")
        if not 0 <= joules < float("inf"):
            raise ValueError(f"energy must be finite and >= 0, got {joules}")
        self._joules[(agent_id, service, category)] += joules

    def total(
        self, agent_id: str | None = None, category: str | None = None, service: str | None = None
    ) -> float:
        """Sum over the matching entries (``None`` matches everything)."""
        return sum(
            j
            for (a, s, c), j in self._joules.items()
            if (agent_id is None or a == agent_id)
            and (service is None or s == service)
            and (category is None or c == category)
        )

    def by_agent(self) -> dict[str, float]:
        """Total joules per agent, sorted by agent id."""
        out: dict[str, float] = defaultdict(float)
        for (a, _, _), j in self._joules.items():
            out[a] += j
        return dict(sorted(out.items()))

    def by_service(self) -> dict[str, float]:
        """Total joules per service."""
        out: dict[str, float] = defaultdict(float)
        for (_, s, _), j in self._joules.items():
            out[s] += j
        return dict(sorted(out.items()))

    def snapshot(self) -> dict[Key, float]:
        """A copy of every entry."""
        return dict(self._joules)

    def since(self, mark: dict[Key, float], *, service: str | None = None) -> tuple[float, float]:
        """Joules booked since ``mark`` (a :meth:`snapshot`), for one service or all: (devices, network)."""
        devices = network = 0.0
        for key, joules in self._joules.items():
            if service is not None and key[1] != service:
                continue
            delta = joules - mark.get(key, 0.0)
            if key[0] == NETWORK:
                network += delta
            else:
                devices += delta
        return devices, network
