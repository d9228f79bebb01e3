"""Energy ledger: joules per agent, service and category, for devices and the network (SPEC §7).

Every entry is keyed by (agent, service, category) and grows by ``+=`` in booking order. Queries are
answered from indexes and cached totals, not by scanning the ledger: a device's telemetry asks for its
own total every telemetry pass, so a scan made one pass over N devices cost O(N²).

Totals are sums of the matching entries in the order the entries were first booked — the same floating
point operations, in the same order, as summing the whole ledger with a filter — so they are bit-identical
to that scan (a single running sum per agent would add the same joules in another order and could differ
in the last bit, which would change KPI tables). :meth:`EnergyLedger.total` uses :func:`sum` (compensated
since Python 3.12), :meth:`~EnergyLedger.by_agent`, :meth:`~EnergyLedger.by_service` and
:meth:`~EnergyLedger.since` plain ``+=``, as they always did.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import numpy.typing as npt

CATEGORIES = ("compute", "uplink", "downlink", "aggregation", "inference")
NETWORK = "network"
Key = tuple[str, str, str]  # (agent, service, category)


def _check_category(category: str) -> None:
    if category not in CATEGORIES:
        raise ValueError(f"energy category must be one of {CATEGORIES}, got {category!r}")


@dataclass(slots=True)
class EnergyLedger:
    """Accumulates energy by (agent, service, category); the network's share is booked under ``network``.

    Indexes list each agent's, service's and category's entries in first-booking order; totals per agent,
    service, category and of everything are cached and dropped when a booking touches them, so asking
    again without a booking in between is O(1) and a recomputation sums only the matching entries.
    """

    _joules: dict[Key, float] = field(default_factory=dict)
    _agent_keys: dict[str, list[Key]] = field(default_factory=dict)
    _service_keys: dict[str, list[Key]] = field(default_factory=dict)
    _category_keys: dict[str, list[Key]] = field(default_factory=dict)
    _agent_total: dict[str, float] = field(default_factory=dict)
    _service_total: dict[str, float] = field(default_factory=dict)
    _category_total: dict[str, float] = field(default_factory=dict)
    _grand_total: float | None = None

    # ---- booking ------------------------------------------------------------------------------
    def add(self, agent_id: str, category: str, joules: float, *, service: str) -> None:
        """Book ``joules`` (≥ 0, finite) to ``agent_id`` for ``service`` under ``category``.

        Raises:
            ValueError: unknown ``category``, or ``joules`` negative, infinite or NaN.

        """
        _check_category(category)
        if not 0 <= joules < float("inf"):
            raise ValueError(f"energy must be finite and >= 0, got {joules}")
        self._book(agent_id, service, category, float(joules))
        self._service_total.pop(service, None)
        self._category_total.pop(category, None)
        self._grand_total = None

    def add_many(
        self,
        agent_ids: Sequence[str],
        category: str,
        joules: npt.ArrayLike,
        *,
        service: str,
    ) -> None:
        """Book ``joules[i]`` to ``agent_ids[i]``, in order, for ``service`` under ``category``.

        The same as calling :meth:`add` for each pair in order, but the values are checked once, as an
        array, and nothing is booked when any of them is invalid.

        Args:
            agent_ids: the agents, one per value (an agent may appear more than once).
            category: one of :data:`CATEGORIES`.
            joules: 1-D array-like of energies (≥ 0, finite), as long as ``agent_ids``.
            service: the service the energy was spent for.

        Raises:
            ValueError: unknown ``category``, a shape mismatch, or any value negative, infinite or NaN.

        """
        _check_category(category)
        values = np.asarray(joules, dtype=np.float64)
        if values.ndim != 1 or values.shape[0] != len(agent_ids):
            raise ValueError(
                f"joules must be a 1-D array with one value per agent ({len(agent_ids)}), "
                f"got shape {values.shape}"
            )
        bad = ~(np.isfinite(values) & (values >= 0))
        if bad.any():
            first = int(np.flatnonzero(bad)[0])
            raise ValueError(
                f"energy must be finite and >= 0: {int(bad.sum())} invalid value(s), "
                f"first {values[first]} for {agent_ids[first]!r}"
            )
        if not len(agent_ids):
            return
        book = self._book
        for agent_id, value in zip(agent_ids, values.tolist(), strict=True):
            book(agent_id, service, category, value)
        self._service_total.pop(service, None)
        self._category_total.pop(category, None)
        self._grand_total = None

    def _book(self, agent_id: str, service: str, category: str, joules: float) -> None:
        """``+=`` one checked value into its entry, indexing a new entry and dropping the agent's total."""
        key = (agent_id, service, category)
        entries = self._joules
        if key in entries:
            entries[key] += joules
        else:
            entries[key] = 0.0 + joules  # what ``defaultdict(float)[key] += joules`` stores
            self._agent_keys.setdefault(agent_id, []).append(key)
            self._service_keys.setdefault(service, []).append(key)
            self._category_keys.setdefault(category, []).append(key)
        self._agent_total.pop(agent_id, None)

    # ---- queries ------------------------------------------------------------------------------
    def total(
        self, agent_id: str | None = None, category: str | None = None, service: str | None = None
    ) -> float:
        """Sum over the matching entries (``None`` matches everything), in first-booking order."""
        if agent_id is not None:
            if category is None and service is None:
                return self._cached(self._agent_total, self._agent_keys, agent_id)
            return self._sum(self._agent_keys.get(agent_id, ()), category=category, service=service)
        if service is not None:
            if category is None:
                return self._cached(self._service_total, self._service_keys, service)
            return self._sum(self._service_keys.get(service, ()), category=category)
        if category is not None:
            return self._cached(self._category_total, self._category_keys, category)
        if self._grand_total is None:
            self._grand_total = sum(self._joules.values())
        return self._grand_total

    def _cached(self, cache: dict[str, float], index: dict[str, list[Key]], name: str) -> float:
        """Total of one indexed name, from ``cache`` or summed over its entries (and then cached)."""
        value = cache.get(name)
        if value is None:
            entries = self._joules
            value = cache[name] = sum(entries[key] for key in index.get(name, ()))
        return value

    def _sum(self, keys: Iterable[Key], *, category: str | None = None, service: str | None = None) -> float:
        """Sum of the entries of ``keys`` that match ``category`` and ``service`` (``None``: any)."""
        entries = self._joules
        return sum(
            entries[key]
            for key in keys
            if (service is None or key[1] == service) and (category is None or key[2] == category)
        )

    def by_agent(self) -> dict[str, float]:
        """Total joules per agent, sorted by agent id (each added up with ``+=`` in first-booking order)."""
        return {a: self._running_sum(self._agent_keys[a]) for a in sorted(self._agent_keys)}

    def by_service(self) -> dict[str, float]:
        """Total joules per service, sorted by service (each added up with ``+=`` in first-booking order)."""
        return {s: self._running_sum(self._service_keys[s]) for s in sorted(self._service_keys)}

    def _running_sum(self, keys: Iterable[Key]) -> float:
        """``+=`` of the entries of ``keys`` from 0.0: not :func:`sum`, which compensates rounding."""
        entries = self._joules
        out = 0.0
        for key in keys:
            out += entries[key]
        return out

    def snapshot(self) -> dict[Key, float]:
        """A copy of every entry."""
        return dict(self._joules)

    def since(self, mark: dict[Key, float], *, service: str | None = None) -> tuple[float, float]:
        """Joules booked since ``mark`` (a :meth:`snapshot`), for one service or all: (devices, network).

        Only the service's entries are visited when ``service`` is given.
        """
        entries = self._joules
        keys: Iterable[Key] = entries if service is None else self._service_keys.get(service, ())
        devices = network = 0.0
        for key in keys:
            delta = entries[key] - mark.get(key, 0.0)
            if key[0] == NETWORK:
                network += delta
            else:
                devices += delta
        return devices, network
