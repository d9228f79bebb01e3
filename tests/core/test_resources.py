"""The resource estimate refuses worlds that cannot fit, names the keys and the limit, and keeps defaults."""

import pytest

from broker.codec import encode_model
from twin.config import apply_overrides
from twin.errors import ConfigError
from twin.learning.models import MLP, init_params, param_count
from twin.resources import MEMORY_SHARE, check_resources, estimate, physical_memory_bytes
from twin.rng import SeedStreams
from usecases import registry

GB = 10**9
AGENT_SCENARIOS = ("home-health", "robotaxi", "grid-inspection")


def _config(scenario: str = "home-health", **overrides: str) -> object:
    return apply_overrides(registry.get(scenario).default_config(), overrides)


@pytest.mark.parametrize("scenario", AGENT_SCENARIOS)
def test_default_scenarios_fit_a_small_machine(scenario: str) -> None:
    """Every built-in agent scenario's defaults pass on a 4 GB machine and need well under 1 GB."""
    found = check_resources(_config(scenario), memory_bytes=4 * GB)
    assert 0 < found.memory_bytes < 1 * GB
    assert found.wall_s < 3600


def test_machine_memory_is_known() -> None:
    """The machine's memory is read without psutil (sysconf, /proc/meminfo or the cgroup limit)."""
    memory = physical_memory_bytes()
    assert memory is not None and memory > 100 * 10**6


@pytest.mark.parametrize(
    ("overrides", "keys"),
    [
        ({"devices.count": "10000000"}, "devices.count × devices.samples_max"),
        ({"devices.samples_max": "10000000"}, "devices.count × devices.samples_max"),
        ({"area.width_m": "1000000", "area.height_m": "1000000", "area.grid_m": "1"}, "area.grid_m²"),
        ({"fl.hidden": "100000"}, "fl.hidden"),
    ],
)
def test_a_world_too_big_names_its_keys_and_the_limit(overrides: dict[str, str], keys: str) -> None:
    """A world over half the machine's memory is one ConfigError naming the keys, the need and the limit."""
    with pytest.raises(ConfigError) as refused:
        check_resources(_config(**overrides), memory_bytes=16 * GB)
    message = str(refused.value)
    assert keys in message
    assert "16 GB" in message and f"{MEMORY_SHARE:.0%} of RAM" in message
    assert "\n" not in message


def test_the_limit_is_a_share_of_the_memory() -> None:
    """The same world passes with enough memory and is refused with too little."""
    config = _config(**{"devices.count": "20000"})
    need = estimate(config).memory_bytes
    check_resources(config, memory_bytes=int(need / MEMORY_SHARE) + 1)
    with pytest.raises(ConfigError, match="devices.count"):
        check_resources(config, memory_bytes=int(need / MEMORY_SHARE) - 1)


@pytest.mark.parametrize("wire_dtype", ["fp32", "fp16", "int8"])
def test_max_payload_is_checked_against_the_real_model_size(wire_dtype: str) -> None:
    """The model size the check uses is at least the real encoded model's, and the check names the key."""
    # Prepare
    config = _config(**{"fl.wire_dtype": wire_dtype, "fl.hidden": "64"})
    net = MLP(64, 64, 4)
    encoded = encode_model(
        init_params(net, SeedStreams(0).torch("init")),
        {"round": 123456, "service": "fall-detection", "agent_id": "hh-0001", "n_samples": 200},
        wire_dtype,  # type: ignore[arg-type]
        sign=lambda digest: "x" * 128,
    )
    found = estimate(config)
    # Assert
    assert found.model_params == param_count(net)
    assert found.model_payload_bytes is not None and len(encoded) <= found.model_payload_bytes
    assert found.model_payload_bytes < len(encoded) + 4096
    with pytest.raises(ConfigError, match=r"bus\.max_payload_bytes = 2048 .*at least"):
        check_resources(apply_overrides(config, {"bus.max_payload_bytes": "2048"}), memory_bytes=16 * GB)


def test_stepping_time_is_bounded_and_until_shortens_it() -> None:
    """Rounds × interval of years is refused naming the keys; --until makes the same config fine."""
    config = _config(**{"fl.round_interval_s": "1e9"})
    with pytest.raises(ConfigError, match=r"fl\.rounds × fl\.round_interval_s.*--until"):
        check_resources(config, memory_bytes=16 * GB)
    assert check_resources(config, until_s=600.0, memory_bytes=16 * GB).steps == 600.0


def test_a_config_without_the_usual_sections_is_not_refused() -> None:
    """A calculation scenario (no devices, no area) has nothing to refuse."""
    found = check_resources(registry.get("seed-split-inference").default_config(), memory_bytes=1)
    assert found.memory == ()
