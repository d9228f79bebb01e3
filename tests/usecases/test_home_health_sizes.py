"""home-health's configurable model sizes (``task.features``, ``task.classes``)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
import torch

from twin.errors import TwinError
from twin.model import TwinModel
from twin.runner import RunOptions, resolve_config, run_scenario
from usecases import home_health_data as data

IDS = [f"hh-{i:04d}" for i in range(4)]


def _generate(seed: int, **sizes: int) -> tuple[object, np.random.Generator]:
    rng = np.random.default_rng(seed)
    task, _ = data.generate(
        rng,
        IDS,
        samples_min=10,
        samples_max=30,
        dirichlet_alpha=0.5,
        test_households=3,
        test_samples_per_household=20,
        **sizes,
    )
    return task, rng


def test_defaults_are_the_window_as_sensed() -> None:
    """Default sizes: 64 inputs (the flattened window, as before the setting existed), 4 classes."""
    _, config = resolve_config("home-health", {})
    assert (config.task.features, config.task.classes) == (64, 4)
    windows = np.random.default_rng(0).normal(50.0, 20.0, (7, data.WINDOW, data.CHANNELS))
    before = ((windows - data._CENTER) / data._SCALE).reshape(7, -1).astype(np.float32)
    assert torch.equal(data.to_features(windows), torch.from_numpy(before))
    task, _ = _generate(3)
    assert task.in_features == 64 and task.class_names == data.CLASSES  # type: ignore[attr-defined]
    assert task.raw_sample_bits == data.RAW_SAMPLE_BITS  # type: ignore[attr-defined]


def test_sizes_do_not_change_the_random_draws() -> None:
    """Other widths see the same households, labels and generator state: only the features differ."""
    base, rng_base = _generate(5)
    other, rng_other = _generate(5, features=33, classes=10)
    assert other.in_features == 33 and other.n_classes == 10  # type: ignore[attr-defined]
    assert other.class_names[4:] == tuple(f"unused-{i}" for i in range(4, 10))  # type: ignore[attr-defined]
    assert torch.equal(base.test_y, other.test_y)  # type: ignore[attr-defined]
    for agent_id in IDS:
        assert torch.equal(base.local[agent_id].y, other.local[agent_id].y)  # type: ignore[attr-defined]
    assert rng_base.bit_generator.state == rng_other.bit_generator.state


def test_resampling_keeps_the_ends_and_crops() -> None:
    """32 features = 8 time steps × 4 channels, first and last readings kept; 33 = 9 steps cropped."""
    windows = np.random.default_rng(1).normal(50.0, 20.0, (5, data.WINDOW, data.CHANNELS))
    full = data.to_features(windows).reshape(5, data.WINDOW, data.CHANNELS)
    eight = data.to_features(windows, 32).reshape(5, 8, data.CHANNELS)
    torch.testing.assert_close(eight[:, 0], full[:, 0])
    torch.testing.assert_close(eight[:, -1], full[:, -1])
    nine = data.to_features(windows, 36)
    assert torch.equal(data.to_features(windows, 33), nine[:, :33])
    assert data.to_features(windows, 1).shape == (5, 1)
    assert data.to_features(windows, 100).shape == (5, 100)


def test_invalid_sizes_are_refused() -> None:
    """Fewer than four classes or no features: a config error naming the key."""
    with pytest.raises(TwinError, match="task.classes"):
        resolve_config("home-health", {"task.classes": "3"})
    with pytest.raises(TwinError, match="task.features"):
        resolve_config("home-health", {"task.features": "0"})


@pytest.mark.parametrize(
    ("sizes", "shape"), [({}, (64, 4)), ({"task.features": "32", "task.classes": "10"}, (32, 10))]
)
def test_run_trains_a_model_of_that_shape(
    tmp_path: Path, sizes: dict[str, str], shape: tuple[int, int]
) -> None:
    """One round with the sizes: the network's MLP has that first and last layer, and updates arrive."""
    models: list[TwinModel] = []
    overrides = {"devices.count": "6", "devices.test_households": "3", **sizes}
    result = run_scenario(
        RunOptions("home-health", broker="local", out_dir=tmp_path, rounds=1, overrides=overrides),
        on_model=models.append,
    )
    assert result.status == "finished"
    net = models[0].network.net.net
    assert (net[0].in_features, net[-1].out_features) == shape
    assert int(result.kpis["accepted"].iloc[0]) > 0
