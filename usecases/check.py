"""Checker for user-written use cases (like Gymnasium's ``check_env``): does it honour the contracts?

``twin check <scenario | python.module | file.py>`` imports the module (which registers its scenario),
builds the scenario on the in-process bus, runs one federated round and verifies what the engine relies
on: a frozen, overridable config; base stations and uniquely named devices with links; a network agent;
a KPI row with the required columns; the determinism contract (same seed, same KPIs); and that ``--set``
reaches the world (a build from a nudged ``devices.count`` and round count has them). Whatever the use
case's code raises is reported as a failed check naming the user's ``file:line``, never a traceback.
"""

from __future__ import annotations

import dataclasses
import importlib
import importlib.util
import inspect
import math
import sys
import traceback
from collections.abc import Callable
from functools import partial
from pathlib import Path
from typing import Any

from broker.bus import LocalBus
from broker.topics import check_segment
from twin.config import apply_overrides, flatten
from twin.errors import TwinError, UnknownScenarioError
from twin.resources import check_resources
from usecases import catalog, registry
from usecases.registry import AgentScenario, BuildContext, CalculationResult, CalculationScenario

REQUIRED_KPIS = (
    "round",
    "sim_time_s",
    "round_latency_s",
    "accuracy",
    "service_accuracy",
    "energy_round_j",
    "energy_total_j",
    "co2_total_g",
    "stragglers",
    "selected",
)
MAX_SIM_S = 3600.0


MESSAGE_CHARS = 300


class UseCaseLoadError(TwinError):
    """Importing a use case failed, or it registered no scenario.

    The message is one line naming the user's ``file:line``; ``scenarios`` lists the scenarios the module
    registered before it failed (they can still be checked or run).
    """

    exit_code = 2

    def __init__(self, message: str, scenarios: list[str] | None = None) -> None:
        super().__init__(message)
        self.scenarios = list(scenarios or [])


def load(target: str) -> list[str]:
    """Scenario names named by ``target``: a registered name, a module, or a ``.py`` file registering some.

    A file (``path/to/my_usecase.py``) is imported as a module of its own, named after it, with its folder
    appended to ``sys.path`` so that it can import its neighbours; a module by its dotted name. Whatever
    importing raises (a syntax error, an exception at module level, a duplicate registration) becomes a
    :class:`UseCaseLoadError`, never a traceback.

    Args:
        target: A scenario name, a dotted module name, or the path of a Python file.

    Returns:
        The names of the scenarios ``target`` names or registered, sorted.

    Raises:
        UnknownScenarioError: ``target`` is neither a scenario, nor an importable module, nor a file.
        UseCaseLoadError: importing ``target`` raised or registered no scenario (its ``scenarios`` are
            those registered before the failure).
    """
    if target in registry.names():
        return [target]
    before = {spec.name for spec in registry.registered()}
    path = _file_target(target)
    user_files: set[str] = set()
    try:
        if path is not None:
            user_files.add(str(path))
            _import_file(path)
        else:
            user_files |= _module_files(target)
            importlib.import_module(target)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is reported, not raised
        missing = exc.name if isinstance(exc, ModuleNotFoundError) else None
        if path is None and missing is not None and (target + ".").startswith(missing + "."):
            known = ", ".join(registry.names())
            raise UnknownScenarioError(
                f"{target!r} is neither a scenario ({known}) nor an importable module or .py file"
            ) from None
        raise UseCaseLoadError(
            f"importing {target} failed: {describe_exception(exc, user_files)}", _added(before)[0]
        ) from None
    added, clash = _added(before)
    if clash is not None:
        raise UseCaseLoadError(clash, added)
    if not added:
        raise UseCaseLoadError(f"{target} registered no scenario (call usecases.registry.register(...))")
    return added


def _added(before: set[str]) -> tuple[list[str], str | None]:
    """Scenarios registered since ``before``, and why one was refused (a built-in's name; unregistered)."""
    new = sorted({spec.name for spec in registry.registered()} - before)
    # a built-in use case the user's code imports registers itself: not one of the user's scenarios
    added = [name for name in new if catalog.builtin(name) is None or _takes_builtin_name(name)]
    clashing = [name for name in added if _takes_builtin_name(name)]
    for name in clashing:
        registry.unregister(name)
    if not clashing:
        return added, None
    kept = [name for name in added if name not in clashing]
    return kept, f"scenario name {clashing[0]!r} is taken by a built-in scenario; choose another name"


def _takes_builtin_name(name: str) -> bool:
    """Whether scenario ``name`` was registered by user code under a built-in's name.

    A user module that imports a built-in use case (``from usecases import home_health``) registers that
    built-in as a side effect; that is no clash, since the scenario comes from the built-in's own module.
    """
    entry = catalog.builtin(name)
    if entry is None:
        return False
    spec = registry.registered_spec(name)
    made_by = getattr(getattr(spec, "build", None) or getattr(spec, "compute", None), "__module__", None)
    return made_by != entry.module


def _file_target(target: str) -> Path | None:
    """``target`` as a Python file, or ``None`` if it names a module or scenario."""
    if not target.endswith(".py") and "/" not in target and "\\" not in target:
        return None
    path = Path(target).expanduser().resolve()
    if not path.is_file():
        raise UnknownScenarioError(f"{target}: no such file")
    if path.suffix != ".py":
        raise UnknownScenarioError(f"{target}: not a Python file (.py)")
    return path


def _import_file(path: Path) -> None:
    """Import the file at ``path`` as a module named after it (``twin_usecase_<stem>``)."""
    name = f"twin_usecase_{''.join(c if c.isalnum() else '_' for c in path.stem)}"
    spec = importlib.util.spec_from_file_location(name, path)
    if spec is None or spec.loader is None:
        raise UnknownScenarioError(f"{path}: cannot be imported as a Python module")
    module = importlib.util.module_from_spec(spec)
    folder = str(path.parent)
    if folder not in sys.path:
        sys.path.append(folder)
    sys.modules[name] = module  # dataclasses and pickling look their module up here
    try:
        spec.loader.exec_module(module)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _module_files(target: str) -> set[str]:
    """The file of module ``target`` if it can be found without running it (for locating errors)."""
    try:
        spec = importlib.util.find_spec(target)
    except (Exception, SystemExit):  # noqa: BLE001 - a parent package that fails is reported by the import
        return set()
    return {str(Path(spec.origin).resolve())} if spec is not None and spec.origin else set()


def describe_exception(exc: BaseException, user_files: set[str] | None = None) -> str:
    """One line: where ``exc`` was raised, preferring the user's files, and what it says.

    ``file.py:12 in build: ZeroDivisionError: division by zero`` — the frame is the traceback's last one
    in ``user_files`` (else its last one outside Python's and the installed packages' files, else its
    last one); a syntax error names the offending line of the file it is in.
    """
    message = " ".join(str(exc).split())
    if isinstance(exc, SyntaxError) and exc.filename:
        message = " ".join((exc.msg or "").split())
        where = f"{_display(exc.filename)}:{exc.lineno}"
    else:
        frame = _user_frame(traceback.extract_tb(exc.__traceback__), user_files or set())
        where = f"{_display(frame.filename)}:{frame.lineno} in {frame.name}" if frame else "?"
    if len(message) > MESSAGE_CHARS:
        message = message[: MESSAGE_CHARS - 1] + "…"
    what = type(exc).__name__
    return f"{where}: {what}: {message}" if message else f"{where}: {what}"


def _user_frame(frames: traceback.StackSummary, user_files: set[str]) -> traceback.FrameSummary | None:
    if not frames:
        return None
    resolved = {str(Path(f).resolve()) for f in user_files}
    for frame in reversed(frames):
        if frame.filename and str(Path(frame.filename).resolve()) in resolved:
            return frame
    library = {str(Path(p).resolve()) for p in (sys.prefix, sys.base_prefix, sys.exec_prefix)}
    for frame in reversed(frames):
        name = frame.filename
        if name.startswith("<") or name == __file__:
            continue
        if not any(str(Path(name).resolve()).startswith(root + "/") for root in library):
            return frame
    return frames[-1]


def _display(filename: str) -> str:
    """``filename`` relative to the working directory when it lies under it."""
    try:
        return str(Path(filename).resolve().relative_to(Path.cwd()))
    except ValueError:
        return filename


def _code_files(*functions: Any) -> set[str]:
    """The source files of ``functions`` (unwrapping partials and decorators), skipping what has none."""
    files = set()
    for function in functions:
        target = inspect.unwrap(function) if callable(function) else function
        while isinstance(target, partial):
            target = target.func
        try:
            files.add(str(Path(inspect.getsourcefile(target) or "").resolve()))
        except TypeError:
            continue
    return {f for f in files if f and Path(f).is_file()}


def check_scenario(name: str) -> list[str]:
    """Problems found with scenario ``name`` (an empty list means it passes).

    Never raises: an exception of the use case's code becomes a problem naming what raised and where
    (``build() raised: my_usecase.py:12 in build: ZeroDivisionError: division by zero``).
    """
    problems: list[str] = []
    stage = _Stage("loading the scenario")
    user_files: set[str] = set()
    try:
        spec = registry.get(name)
        functions = [getattr(spec, f, None) for f in ("default_config", "build", "compute")]
        user_files = _code_files(*(f for f in functions if f is not None))
        _check_spec(spec, problems, stage)
    except (Exception, SystemExit) as exc:  # noqa: BLE001 - any failure of user code is a problem
        problems.append(f"{stage.now} raised: {describe_exception(exc, user_files)}")
    return problems


@dataclasses.dataclass
class _Stage:
    """What the checker is doing now (to say what raised)."""

    now: str


def _check_spec(spec: registry.Scenario, problems: list[str], stage: _Stage) -> None:
    _expect(problems, lambda: check_segment(spec.name, "scenario name"), "name")
    if not spec.summary.strip():
        problems.append("summary is empty")
    stage.now = "default_config()"
    config = spec.default_config()
    stage.now = "checking the config"
    problems += _check_config(config, agent=isinstance(spec, AgentScenario))
    if isinstance(spec, CalculationScenario):
        stage.now = "compute()"
        result = spec.compute(config)
        if not isinstance(result, CalculationResult) or not result.rows:
            problems.append("compute() must return a CalculationResult with at least one row")
        return
    if problems:
        return
    stage.now = "estimating the world's size"
    try:
        check_resources(config)
    except TwinError as exc:
        problems.append(f"default config: {exc}")
        return
    problems += _check_agents(spec, config, stage)
    if not problems:
        problems += _check_overrides(spec, config, stage)


def _check_config(config: Any, *, agent: bool) -> list[str]:
    if not dataclasses.is_dataclass(config):
        return ["default_config() must return a dataclass instance"]
    problems = []
    params = getattr(type(config), "__dataclass_params__", None)
    if params is not None and not params.frozen:
        problems.append(f"config {type(config).__name__} must be a frozen dataclass")
    values = flatten(config)
    try:
        same = apply_overrides(config, {k: _as_text(v) for k, v in values.items() if v is not None})
        if flatten(same) != values:
            problems.append("config values do not survive a --set round trip (check field types)")
    except TwinError as exc:
        problems.append(f"config cannot be overridden from the CLI: {exc}")
    sections = {k.split(".")[0] for k in values}
    for section in ("bus", "fl", "qoais", "carbon", "area", "radio", "link") if agent else ():
        if section not in sections:
            problems.append(f"an agent scenario's config needs a {section!r} section")
    return problems


def _as_text(value: Any) -> str:
    if isinstance(value, tuple):
        return ",".join(str(v) for v in value)
    return repr(value) if isinstance(value, float) else str(value)


def _check_agents(spec: AgentScenario, config: Any, stage: _Stage) -> list[str]:
    problems: list[str] = []
    rows = []
    for attempt in range(2):
        stage.now = "build()"
        model = spec.build(config, BuildContext(f"check-{attempt}", 0, LocalBus(), 1))
        if attempt == 0:
            stage.now = "checking the world"
            problems += _check_world(model)
            if problems:
                return problems
        stage.now = "running one round"
        while model.running and model.time < MAX_SIM_S:
            model.step()
        if not model.kpi_rows:
            return problems + [f"no federated round completed within {MAX_SIM_S:.0f} simulated seconds"]
        rows.append(model.kpi_rows[0])
    missing = [k for k in REQUIRED_KPIS if k not in rows[0]]
    if missing:
        problems.append(f"KPI rows lack {', '.join(missing)}")
    if rows[0] != rows[1]:
        problems.append("two builds with the same seed gave different KPIs (use model.seeds, no global RNG)")
    return problems


def _check_overrides(spec: AgentScenario, config: Any, stage: _Stage) -> list[str]:
    """``--set`` reaches the world: a build from a perturbed config has its device count and rounds."""
    values = flatten(config)
    sets: dict[str, str] = {}
    count = values.get("devices.count")
    if isinstance(count, int) and not isinstance(count, bool):
        sets["devices.count"] = str(count - 1 if count > 2 else count + 1)
    rounds = values.get(spec.rounds_key)
    if isinstance(rounds, int) and not isinstance(rounds, bool):
        sets[spec.rounds_key] = str(rounds + 1)
    if not sets:
        return []
    try:
        perturbed = apply_overrides(config, sets)
    except TwinError:  # the config's own validation refuses the nudged values: nothing to compare
        return []
    stage.now = "build() with --set " + " ".join(f"{k}={v}" for k, v in sets.items())
    model = spec.build(perturbed, BuildContext("check-set", 0, LocalBus(), 1))
    stage.now = "checking the --set build"
    problems = []
    hint = "build() must build from the config it is given, not from default_config() or its own"
    if hasattr(model, "config") and model.config != perturbed:
        problems.append("model.config is not the config build() was given")
    if "devices.count" in sets and len(model.devices) != int(sets["devices.count"]):
        problems.append(f"--set devices.count={sets['devices.count']} built {len(model.devices)} devices")
    section, _, key = spec.rounds_key.partition(".")
    built = getattr(getattr(model.network, section, None), key, None)
    if spec.rounds_key in sets and built is not None and built != int(sets[spec.rounds_key]):
        problems.append(
            f"--set {spec.rounds_key}={sets[spec.rounds_key]} reached the network agent as {built}"
        )
    return [f"{problem}; {hint}" for problem in problems[:1]] + problems[1:]


def _check_world(model: Any) -> list[str]:
    problems = []
    if not model.base_stations:
        problems.append("the world has no base station")
    devices = model.devices
    if not devices:
        problems.append("the world has no device (model.add_device)")
    if model.network is None and not model.networks:
        problems.append("no network agent (model.network): nothing aggregates or records KPIs")
    if model.links is None:
        problems.append("model.finish_setup() was not called: devices have no links")
    elif any(not math.isfinite(d.downlink_bps) for d in devices):
        problems.append("some device has a non-finite downlink rate")
    for agent_id in (d.agent_id for d in devices):
        _expect(problems, partial(check_segment, agent_id, "device id"), f"device {agent_id!r}")
    return problems


def _expect(problems: list[str], check: Callable[[], object], what: str) -> None:
    try:
        check()
    except ValueError as exc:
        problems.append(f"{what}: {exc}")
