"""Registry of named scenarios (``twin list``) and the interface a use case implements.

Built-in scenarios are listed from :mod:`usecases.catalog` and imported only when one is asked for
(:func:`get`), so listing them needs neither torch nor Mesa. A user-written use case registers
itself with :func:`register` when its module is imported (``twin check my_module``).
"""

from __future__ import annotations

import importlib
from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from twin.errors import UnknownScenarioError
from twin.qoais import ServiceReport
from usecases import catalog
from usecases.catalog import CatalogEntry

if TYPE_CHECKING:
    from twin.model import TwinModel


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a use case needs to build its world."""

    run_id: str
    seed: int
    bus: Any
    rounds_limit: int | None
    hosting: str = "local"  # "workers": the devices' side will run in worker processes (``--workers``)


@dataclass(frozen=True, slots=True)
class AgentScenario:
    """A scenario that runs Mesa agents over time (federated training, inference …)."""

    name: str
    summary: str
    paper_section: str
    default_config: Callable[[], Any]
    build: Callable[[Any, BuildContext], TwinModel]
    rounds_key: str = "fl.rounds"


@dataclass(frozen=True, slots=True)
class ComparedValue:
    """A computed value next to the paper's (``paper`` is None where the paper has no such value)."""

    row: str
    column: str
    ours: float
    paper: float | None
    diff: float | None
    within_tolerance: bool | None


@dataclass(frozen=True, slots=True)
class CalculationResult:
    """What a calculation scenario computes: a table, the paper comparison, highlights and its QoAIS."""

    title: str
    columns: tuple[str, ...]
    rows: tuple[dict[str, float], ...]
    comparison: tuple[ComparedValue, ...]
    highlights: dict[str, Any]
    qoais: tuple[ServiceReport, ...]
    inputs_match_paper: bool

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form (``twin run … --format json``)."""
        return {
            "title": self.title,
            "columns": list(self.columns),
            "rows": [dict(r) for r in self.rows],
            "comparison": [asdict(c) for c in self.comparison],
            "highlights": self.highlights,
            "inputs_match_paper": self.inputs_match_paper,
            "qoais": [r.to_dict() for r in self.qoais],
        }


@dataclass(frozen=True, slots=True)
class CalculationScenario:
    """A scenario computed from formulas only (the paper's evaluation examples)."""

    name: str
    summary: str
    paper_section: str
    default_config: Callable[[], Any]
    compute: Callable[[Any], CalculationResult]


Scenario = AgentScenario | CalculationScenario
_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (names are unique)."""
    if scenario.name in _REGISTRY:
        raise ValueError(f"scenario {scenario.name!r} registered twice")
    _REGISTRY[scenario.name] = scenario
    return scenario


def unregister(name: str) -> None:
    """Remove a scenario (for tests and interactive sessions)."""
    _REGISTRY.pop(name, None)


def _load_builtin() -> None:
    """Import every built-in scenario module (each registers itself)."""
    for entry in catalog.BUILTIN:
        _import(entry)


def _import(entry: CatalogEntry) -> None:
    if entry.name not in _REGISTRY and entry.module is not None:
        importlib.import_module(entry.module)


def registered() -> list[Scenario]:
    """Scenarios registered so far, sorted by name (built-ins only once their module is imported)."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def names() -> list[str]:
    """Names of the built-in and the registered scenarios, sorted (imports nothing)."""
    return sorted({entry.name for entry in catalog.BUILTIN} | set(_REGISTRY))


def describe(scenario: Scenario) -> CatalogEntry:
    """The catalog entry of a registered scenario (what ``twin list`` shows of it)."""
    kind: catalog.Kind = "calculation" if isinstance(scenario, CalculationScenario) else "agents"
    module = getattr(scenario.default_config, "__module__", None)
    return CatalogEntry(scenario.name, scenario.summary, scenario.paper_section, kind, module)


def entries() -> list[CatalogEntry]:
    """What ``twin list`` shows: every scenario's metadata, sorted by name, importing no use case."""
    found = {name: describe(spec) for name, spec in _REGISTRY.items()}
    for entry in catalog.BUILTIN:
        found.setdefault(entry.name, entry)
    return [found[name] for name in sorted(found)]


def get(name: str) -> Scenario:
    """The scenario called ``name`` (importing its module if it is a built-in not yet imported).

    Raises:
        UnknownScenarioError: no such scenario; the message lists the available ones.
    """
    entry = catalog.builtin(name)
    if entry is not None:
        _import(entry)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownScenarioError(f"unknown scenario {name!r}; available: {', '.join(names())}") from None
