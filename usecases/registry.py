"""Registry of named scenarios (``twin list``) and the interface a use case implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict, dataclass
from typing import TYPE_CHECKING, Any

from twin.errors import UnknownScenarioError
from twin.qoais import ServiceReport

if TYPE_CHECKING:
    from twin.model import TwinModel


@dataclass(frozen=True, slots=True)
class BuildContext:
    """What a use case needs to build its world."""

    run_id: str
    seed: int
    bus: Any
    rounds_limit: int | None


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
    import usecases.grid_inspection  # noqa: F401  (each module registers itself)
    import usecases.home_health  # noqa: F401
    import usecases.robotaxi  # noqa: F401
    import usecases.seed_federated_training  # noqa: F401
    import usecases.seed_split_inference  # noqa: F401


def names() -> list[str]:
    """Registered scenario names, sorted."""
    _load_builtin()
    return sorted(_REGISTRY)


def get(name: str) -> Scenario:
    """The scenario called ``name``, or :class:`UnknownScenarioError` listing the available ones."""
    _load_builtin()
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownScenarioError(
            f"unknown scenario {name!r}; available: {', '.join(sorted(_REGISTRY))}"
        ) from None
