import dataclasses
from collections.abc import Iterator
from typing import Any

import pytest

from twin.errors import TwinError
from usecases import home_health, registry
from usecases.check import check_scenario, load
from usecases.registry import AgentScenario, BuildContext


@pytest.fixture
def register_variant() -> Iterator[Any]:
    """Register a variant of home-health under a test name; unregister it afterwards."""
    names: list[str] = []

    def add(name: str, **changes: Any) -> str:
        spec = dataclasses.replace(registry.get("home-health"), name=name, **changes)
        registry.register(spec)  # type: ignore[arg-type]
        names.append(name)
        return name

    yield add
    for name in names:
        registry.unregister(name)


def test_builtin_scenario_passes() -> None:
    """A scenario that honours the contracts has no problem."""
    assert check_scenario("home-health") == []


def test_unfinished_world_is_reported(register_variant: Any) -> None:
    """A build that forgets base stations and finish_setup() is told exactly that."""

    def build(config: Any, ctx: BuildContext) -> Any:
        from usecases.common import new_model

        return new_model("bad", config, ctx)

    problems = check_scenario(register_variant("test-no-world", build=build))
    assert "the world has no base station" in problems
    assert any("no device" in p for p in problems)
    assert any("finish_setup" in p for p in problems)


def test_global_randomness_breaks_determinism(register_variant: Any) -> None:
    """A build that draws from an unseeded generator fails the determinism check."""
    import numpy as np

    def build(config: Any, ctx: BuildContext) -> Any:
        noisy = dataclasses.replace(
            config, fl=dataclasses.replace(config.fl, lr=float(np.random.uniform(0.1, 0.5)))
        )
        return home_health.build(noisy, ctx)

    problems = check_scenario(register_variant("test-global-rng", build=build))
    assert any("same seed" in p for p in problems)


def test_mutable_config_is_reported(register_variant: Any) -> None:
    """A config that is not a frozen dataclass is reported."""

    @dataclasses.dataclass
    class Mutable:
        x: int = 1

    problems = check_scenario(register_variant("test-mutable", default_config=Mutable))
    assert any("frozen" in p for p in problems)


def test_load_unknown_target() -> None:
    """An unknown scenario that is not a module is a TwinError naming the registered scenarios."""
    with pytest.raises(TwinError, match="home-health"):
        load("no.such.module")
    assert load("home-health") == ["home-health"]
    assert isinstance(registry.get("home-health"), AgentScenario)


# ---- user modules that fail: every failure is a ✗ line naming the user's file:line, never a traceback ----

_SMALL = """
import dataclasses
from twin.config import apply_overrides
from usecases import home_health, registry


def small():
    return apply_overrides(home_health.HomeHealthConfig(), {"devices.count": "6", "fl.rounds": "1"})

"""


@pytest.fixture
def user_module(tmp_path: Any) -> Iterator[Any]:
    """Write a use-case file to tmp_path; afterwards forget what importing it registered and added."""
    import sys

    names = {spec.name for spec in registry.registered()}
    modules, path = set(sys.modules), list(sys.path)

    def write(stem: str, source: str) -> str:
        file = tmp_path / f"{stem}.py"
        file.write_text(source)
        return str(file)

    yield write
    for spec in registry.registered():
        if spec.name not in names:
            registry.unregister(spec.name)
    for name in set(sys.modules) - modules:
        if name.startswith("twin_usecase_"):
            del sys.modules[name]
    sys.path[:] = path


def _check(target: str) -> tuple[int, str]:
    from typer.testing import CliRunner

    from twin.cli import app

    result = CliRunner().invoke(app, ["check", target])
    assert result.exception is None or isinstance(result.exception, SystemExit), result.exception
    assert "Traceback" not in result.output
    return result.exit_code, result.output


def _line_of(path: str, text: str) -> int:
    with open(path) as file:
        return next(i for i, line in enumerate(file, 1) if text in line)


def test_syntax_error_is_a_failed_check(user_module: Any) -> None:
    """A file that does not parse is ✗ with its file:line, exit 2."""
    path = user_module("broken_syntax", "x = 1\ndef build(:\n")
    code, out = _check(path)
    assert code == 2
    assert f"✗ {path}" in out
    assert f"{path}:2: SyntaxError" in out


def test_module_level_raise_is_a_failed_check(user_module: Any) -> None:
    """An exception while importing names the module's line that raised."""
    path = user_module("raises_at_import", "import os\nCOUNT = int(os.environ['TWIN_NO_SUCH_VARIABLE'])\n")
    code, out = _check(path)
    assert code == 2
    assert f"{path}:2 in <module>: KeyError: 'TWIN_NO_SUCH_VARIABLE'" in out


def test_build_raising_is_reported_and_other_scenarios_still_checked(user_module: Any) -> None:
    """build() raising is one ✗ problem with the user's frame; the module's other scenarios are checked."""
    source = _SMALL + (
        "def build(config, ctx):\n"
        "    return config.devices.count / 0\n\n"
        "base = registry.get('home-health')\n"
        "registry.register(dataclasses.replace(base, name='t-raising', default_config=small, build=build))\n"
        "registry.register(dataclasses.replace(base, name='t-fine', default_config=small))\n"
    )
    path = user_module("build_raises", source)
    code, out = _check(path)
    assert code == 2
    line = _line_of(path, "count / 0")
    assert "✗ t-raising" in out
    assert f"build() raised: {path}:{line} in build: ZeroDivisionError: division by zero" in out
    assert "✓ t-fine" in out


def test_duplicate_registration_keeps_the_first(user_module: Any) -> None:
    """Registering a name twice fails the import at that line; what was registered first is still checked."""
    source = _SMALL + (
        "base = registry.get('home-health')\n"
        "registry.register(dataclasses.replace(base, name='t-twice', default_config=small))\n"
        "registry.register(dataclasses.replace(base, name='t-twice', default_config=small))  # again\n"
    )
    path = user_module("registers_twice", source)
    code, out = _check(path)
    assert code == 2
    line = _line_of(path, "# again")
    assert f"{path}:{line} in <module>: ValueError: scenario 't-twice' registered twice" in out
    assert "✓ t-twice" in out


def test_build_ignoring_the_config_fails(user_module: Any) -> None:
    """A build that makes its own config (ignoring --set) is caught by the perturbed build."""
    source = _SMALL + (
        "def build(config, ctx):\n"
        "    return home_health.build(small(), ctx)\n\n"
        "registry.register(dataclasses.replace(\n"
        "    registry.get('home-health'), name='t-own-config', default_config=small, build=build))\n"
    )
    code, out = _check(user_module("own_config", source))
    assert code == 2
    assert "✗ t-own-config" in out
    assert "--set devices.count=5 built 6 devices" in out
    assert "--set fl.rounds=2 reached the network agent as 1" in out
    assert "not from default_config()" in out


def test_load_file_and_errors(user_module: Any) -> None:
    """load() imports a .py file; a missing file or module is a one-line TwinError."""
    path = user_module(
        "one_scenario",
        _SMALL + "registry.register(dataclasses.replace(\n"
        "    registry.get('home-health'), name='t-loaded', default_config=small))\n",
    )
    assert load(path) == ["t-loaded"]
    with pytest.raises(TwinError, match="no such file"):
        load(path + ".missing.py")
    empty = user_module("registers_nothing", "X = 1\n")
    with pytest.raises(TwinError, match="registered no scenario"):
        load(empty)
