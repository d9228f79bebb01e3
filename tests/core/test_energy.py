"""Energy ledger: indexed, cached totals equal a full scan bit for bit; array booking; validation."""

from __future__ import annotations

from collections import defaultdict

import numpy as np
import pytest

from twin.energy import CATEGORIES, NETWORK, EnergyLedger, Key

SERVICES = ("fall-detection", "health-alerts")


def _scan(
    entries: dict[Key, float],
    agent_id: str | None = None,
    category: str | None = None,
    service: str | None = None,
) -> float:
    """The ledger's former ``total``: one pass over every entry with a filter."""
    return sum(
        j
        for (a, s, c), j in entries.items()
        if (agent_id is None or a == agent_id)
        and (service is None or s == service)
        and (category is None or c == category)
    )


def _random_bookings(seed: int, n: int) -> list[tuple[str, str, float, str]]:
    """(agent, category, joules, service) bookings with values of very different magnitudes."""
    rng = np.random.default_rng(seed)
    agents = [NETWORK, *(f"hh-{i:04d}" for i in range(12))]
    return [
        (
            agents[rng.integers(len(agents))],
            CATEGORIES[rng.integers(len(CATEGORIES))],
            float(rng.uniform() * 10.0 ** rng.integers(-6, 6)),
            SERVICES[rng.integers(len(SERVICES))],
        )
        for _ in range(n)
    ]


def _booked(bookings: list[tuple[str, str, float, str]]) -> tuple[EnergyLedger, dict[Key, float]]:
    """A ledger with ``bookings`` and the reference entries (``defaultdict(float)``, ``+=`` in order)."""
    ledger = EnergyLedger()
    reference: dict[Key, float] = defaultdict(float)
    for agent, category, joules, service in bookings:
        ledger.add(agent, category, joules, service=service)
        reference[(agent, service, category)] += joules
    return ledger, reference


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_totals_equal_a_full_scan_bit_for_bit(seed: int) -> None:
    """Every filter combination, asked between bookings (cache refresh) and after, equals the scan exactly."""
    # Prepare
    bookings = _random_bookings(seed, 400)
    ledger, reference = _booked(bookings[:200])
    agents = sorted({b[0] for b in bookings})
    # Execute: ask, book more (invalidates the cached totals), ask again
    first = {a: ledger.total(a) for a in agents}
    for agent, category, joules, service in bookings[200:]:
        ledger.add(agent, category, joules, service=service)
    # Assert
    assert first == {a: _scan(dict(_booked(bookings[:200])[1]), a) for a in agents}
    reference = dict(_booked(bookings)[1])
    assert ledger.snapshot() == reference
    for agent in [None, *agents, "nobody"]:
        for category in [None, *CATEGORIES]:
            for service in [None, *SERVICES, "unknown"]:
                got = ledger.total(agent, category=category, service=service)
                assert got == _scan(reference, agent, category, service), (agent, category, service)


def test_by_agent_and_by_service_equal_the_scan_and_are_sorted() -> None:
    """Per-agent and per-service totals, sorted by name, equal the former grouped sums exactly."""
    # Prepare
    ledger, reference = _booked(_random_bookings(3, 300))
    per_agent: dict[str, float] = defaultdict(float)
    per_service: dict[str, float] = defaultdict(float)
    for (a, s, _), j in reference.items():
        per_agent[a] += j
        per_service[s] += j
    # Execute
    by_agent, by_service = ledger.by_agent(), ledger.by_service()
    # Assert
    assert by_agent == dict(sorted(per_agent.items()))
    assert list(by_agent) == sorted(by_agent)
    assert by_service == dict(sorted(per_service.items()))
    assert ledger.total() == _scan(reference)


def test_cached_total_follows_new_bookings() -> None:
    """A total asked twice is served from the cache; a booking in between is seen."""
    # Prepare
    ledger = EnergyLedger()
    ledger.add("hh-0001", "compute", 1.5, service="fl")
    # Execute
    before = (
        ledger.total("hh-0001"),
        ledger.total(),
        ledger.total(service="fl"),
        ledger.total(category="compute"),
    )
    ledger.add("hh-0001", "compute", 2.0, service="fl")
    after = (
        ledger.total("hh-0001"),
        ledger.total(),
        ledger.total(service="fl"),
        ledger.total(category="compute"),
    )
    # Assert
    assert before == (1.5, 1.5, 1.5, 1.5)
    assert after == (3.5, 3.5, 3.5, 3.5)
    assert ledger.total("nobody") == 0


@pytest.mark.parametrize("service", [None, SERVICES[0]])
def test_since_equals_the_former_scan(service: str | None) -> None:
    """Joules since a snapshot, split devices / network, equal the former pass over every entry."""
    # Prepare
    bookings = _random_bookings(4, 300)
    ledger, _ = _booked(bookings[:150])
    mark = ledger.snapshot()
    for agent, category, joules, svc in bookings[150:]:
        ledger.add(agent, category, joules, service=svc)
    devices = network = 0.0
    for key, joules in ledger.snapshot().items():
        if service is not None and key[1] != service:
            continue
        if key[0] == NETWORK:
            network += joules - mark.get(key, 0.0)
        else:
            devices += joules - mark.get(key, 0.0)
    # Execute
    got = ledger.since(mark, service=service)
    # Assert
    assert got == (devices, network)
    assert got[0] > 0 and got[1] > 0


def test_add_many_equals_adding_one_by_one() -> None:
    """Booking a cohort as an array gives the same entries and totals, bit for bit, as one add per value."""
    # Prepare
    rng = np.random.default_rng(5)
    ids = [f"hh-{i:04d}" for i in rng.integers(0, 40, size=200)]  # repeated ids book twice, in order
    joules = rng.uniform(0.0, 3.0, size=200) * 10.0 ** rng.integers(-4, 4, size=200)
    one_by_one = EnergyLedger()
    one_by_one.add("hh-0003", "uplink", 0.25, service="fl")
    for agent, value in zip(ids, joules, strict=True):
        one_by_one.add(agent, "compute", float(value), service="fl")
    arrays = EnergyLedger()
    arrays.add("hh-0003", "uplink", 0.25, service="fl")
    # Execute
    arrays.add_many(ids, "compute", joules, service="fl")
    arrays.add_many([], "compute", np.array([]), service="fl")
    # Assert
    assert arrays.snapshot() == one_by_one.snapshot()
    assert list(arrays.snapshot()) == list(one_by_one.snapshot())
    assert arrays.by_agent() == one_by_one.by_agent()
    assert arrays.total() == one_by_one.total()
    assert arrays.total(category="compute") == one_by_one.total(category="compute")


@pytest.mark.parametrize("bad", [-1.0, float("nan"), float("inf")])
def test_add_many_rejects_the_whole_array_and_books_nothing(bad: float) -> None:
    """One invalid value fails the call with one clear error; the ledger is unchanged."""
    # Prepare
    ledger = EnergyLedger()
    ledger.add("hh-0000", "compute", 1.0, service="fl")
    # Execute / Assert
    with pytest.raises(ValueError, match=r"finite and >= 0: 1 invalid value\(s\), first .* for 'hh-0002'"):
        ledger.add_many(["hh-0001", "hh-0002", "hh-0003"], "compute", np.array([1.0, bad, 2.0]), service="fl")
    assert ledger.snapshot() == {("hh-0000", "fl", "compute"): 1.0}
    assert ledger.total() == 1.0


def test_add_many_rejects_bad_shapes_and_categories() -> None:
    """The array must be 1-D with one value per agent; the category must be known."""
    ledger = EnergyLedger()
    with pytest.raises(ValueError, match="one value per agent"):
        ledger.add_many(["a", "b"], "compute", np.array([1.0]), service="fl")
    with pytest.raises(ValueError, match="one value per agent"):
        ledger.add_many(["a", "b"], "compute", np.ones((2, 1)), service="fl")
    with pytest.raises(ValueError, match="category"):
        ledger.add_many(["a"], "radio", np.array([1.0]), service="fl")
    assert ledger.total() == 0


@pytest.mark.parametrize("bad", [-0.5, float("nan"), float("inf")])
def test_add_rejects_invalid_energy(bad: float) -> None:
    """A single booking must be finite and non-negative, in a known category."""
    ledger = EnergyLedger()
    with pytest.raises(ValueError, match="finite and >= 0"):
        ledger.add("a", "compute", bad, service="fl")
    with pytest.raises(ValueError, match="category"):
        ledger.add("a", "radio", 1.0, service="fl")
    assert ledger.snapshot() == {}
