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
