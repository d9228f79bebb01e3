"""Registry of named scenarios (``twin list``) and the interface a use case implements."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from twin.errors import UnknownScenarioError

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
class CalculationScenario:
    """A scenario computed from formulas only (the paper's evaluation examples)."""

    name: str
    summary: str
    paper_section: str
    default_config: Callable[[], Any]
    compute: Callable[[Any], Any]


Scenario = AgentScenario | CalculationScenario
_REGISTRY: dict[str, Scenario] = {}


def register(scenario: Scenario) -> Scenario:
    """Add a scenario to the registry (names are unique)."""
    if scenario.name in _REGISTRY:
        raise ValueError(f"scenario {scenario.name!r} registered twice")
    _REGISTRY[scenario.name] = scenario
    return scenario


def _load_builtin() -> None:
    if _REGISTRY:
        return
    import usecases.home_health  # noqa: F401  (registers itself)


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
