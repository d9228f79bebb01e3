"""Registry of named scenarios (``twin list``) and the interface a use case implements.

Built-in scenarios are listed from :mod:`usecases.catalog` and imported only when one is asked for
(:func:`get`), so listing them needs neither torch nor Mesa. A user-written use case registers
itself with :func:`register` when its module is imported; :func:`resolve` imports it from what the
user typed (``twin run my_usecase.py``, ``twin run my_pkg.my_usecase``, ``twin run file.py:name``).
Installed packages add scenarios through the entry-point group ``aiaas_twin.scenarios`` (name: the
scenario, value: the module that registers it); they are listed from their metadata and imported
only when run.
"""

from __future__ import annotations

import importlib
import importlib.metadata
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from twin.errors import TwinError, UnknownScenarioError
from twin.qoais import ServiceReport
from usecases import catalog
from usecases.catalog import CatalogEntry

if TYPE_CHECKING:
    from twin.model import TwinModel

ENTRY_POINT_GROUP = "aiaas_twin.scenarios"


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
    extras: dict[str, Any] = field(default_factory=dict, compare=False)
    """What a page may draw beyond the table (e.g. example maps); not compared, not in :meth:`to_dict`."""

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
_LOADED: dict[str, list[str]] = {}  # file path or module name → the scenarios importing it registered


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


def registered_spec(name: str) -> Scenario | None:
    """The scenario registered as ``name`` in this process, without importing anything."""
    return _REGISTRY.get(name)


def registered() -> list[Scenario]:
    """Scenarios registered so far, sorted by name (built-ins only once their module is imported)."""
    return [_REGISTRY[name] for name in sorted(_REGISTRY)]


def names() -> list[str]:
    """Names of the built-in, installed (entry points) and registered scenarios, sorted (imports nothing)."""
    return sorted({entry.name for entry in catalog.BUILTIN} | set(_installed()) | set(_REGISTRY))


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
    for name, point in _installed().items():
        found.setdefault(name, _installed_entry(point))
    return [found[name] for name in sorted(found)]


def get(name: str) -> Scenario:
    """The scenario called ``name`` (importing its module if it is a built-in not yet imported).

    Raises:
        UnknownScenarioError: no such scenario; the message lists the available ones.
    """
    entry = catalog.builtin(name)
    if entry is not None:
        _import(entry)
    elif name not in _REGISTRY:
        point = _installed().get(name)
        if point is not None:
            _load_entry_point(point)
    try:
        return _REGISTRY[name]
    except KeyError:
        raise UnknownScenarioError(f"unknown scenario {name!r}; available: {', '.join(names())}") from None


def _installed() -> dict[str, importlib.metadata.EntryPoint]:
    """The entry points of group ``aiaas_twin.scenarios`` of the installed packages, by scenario name."""
    return {point.name: point for point in importlib.metadata.entry_points(group=ENTRY_POINT_GROUP)}


def _installed_entry(point: importlib.metadata.EntryPoint) -> CatalogEntry:
    """What ``twin list`` shows of an installed scenario before its module is imported (its package's)."""
    dist = point.dist
    summary = (dist.metadata.get("Summary") or "") if dist is not None else ""
    origin = f"installed from {dist.name}" if dist is not None else f"installed ({point.value})"
    return CatalogEntry(
        point.name, f"{summary} ({origin})" if summary else origin, "—", "installed", point.module
    )


def _load_entry_point(point: importlib.metadata.EntryPoint) -> None:
    """Import an installed scenario: its module registers it, or the entry point names the scenario object."""
    try:
        loaded = point.load()
    except (ImportError, AttributeError, SyntaxError) as exc:
        raise TwinError(
            f"installed scenario {point.name!r} ({point.value}) cannot be loaded: {exc}"
        ) from None
    if isinstance(loaded, AgentScenario | CalculationScenario) and loaded.name not in _REGISTRY:
        register(loaded)
    if point.name not in _REGISTRY:
        raise UnknownScenarioError(
            f"installed entry point {point.name!r} ({point.value}) registered no scenario of that name"
        )


def resolve(target: str) -> list[str]:
    """Names of the scenarios that ``target`` designates, importing what registers them.

    ``target`` is a scenario name (built-in, installed or registered); a Python file (``my_usecase.py``)
    or an importable module (``my_pkg.my_usecase``) that registers scenarios when imported (loaded by
    :func:`usecases.check.load`, once per process); or one of those followed by ``:name`` to pick one of
    the scenarios it registers.

    Raises:
        UnknownScenarioError: nothing importable by that name, or ``:name`` is not what it registers.
        UseCaseLoadError: the module fails to import or registers nothing (or a taken name).
    """
    if target in names():
        return [target]
    source, sep, wanted = target.rpartition(":")
    if sep and source and wanted and not any(c in wanted for c in "/\\."):
        found = _load(source)
        if wanted not in found:
            raise UnknownScenarioError(
                f"{source!r} registers no scenario {wanted!r}; it registers {', '.join(found)}"
            )
        return [wanted]
    return _load(target)


def resolve_one(target: str) -> str:
    """The one scenario ``target`` designates (see :func:`resolve`).

    Raises:
        UnknownScenarioError: as :func:`resolve`, or the module registers several scenarios (the message
            says how to pick one: ``target:name``).
    """
    found = resolve(target)
    if len(found) > 1:
        raise UnknownScenarioError(
            f"{target!r} registers several scenarios ({', '.join(found)}); pick one: "
            + " or ".join(f"{target}:{name}" for name in found)
        )
    return found[0]


def _load(source: str) -> list[str]:
    """The scenarios a file or module registers, importing it unless this process already did."""
    from usecases.check import load  # the checker owns loading user code (and reporting its errors)

    key = str(Path(source).expanduser().resolve()) if source.endswith(".py") else source
    known = _LOADED.get(key)
    if known and all(name in _REGISTRY for name in known):
        return list(known)
    found = load(source)
    _LOADED[key] = list(found)
    return found
