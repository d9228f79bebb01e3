import numpy as np
import pytest

from twin.coverage import coverage_map
from twin.links import LinkModel
from twin.radio import RadioConfig
from twin.settings import LinkConfig


def _grid():  # type: ignore[no-untyped-def]
    links = LinkModel(
        RadioConfig(scenario="UMa", carrier_ghz=2.1, bandwidth_hz=20e6),
        LinkConfig(),
        np.array([[500.0, 500.0, 25.0]]),
        ["gnb-00"],
        np.random.default_rng(0),
    )
    return links.coverage_grid(100.0, 1000.0, 1000.0)


def test_grid_rate_falls_with_distance() -> None:
    """The cell next to the base station has a higher uplink rate than a corner cell."""
    grid = _grid()
    assert grid.uplink_bps.shape == (10, 10)
    assert grid.uplink_bps[5, 5] > grid.uplink_bps[0, 0]


def test_coverage_needs_rate_and_accuracy() -> None:
    """A cell is covered only where both the rate and the service accuracy meet their targets."""
    grid = _grid()
    common = {"device_xy": np.empty((0, 2)), "device_accuracy": np.empty(0), "device_samples": np.empty(0)}
    all_good = coverage_map(grid, **common, regional_accuracy=1.0, min_rate_bps=0.0, min_accuracy=0.5)
    no_acc = coverage_map(grid, **common, regional_accuracy=0.4, min_rate_bps=0.0, min_accuracy=0.5)
    rate_only = coverage_map(
        grid,
        **common,
        regional_accuracy=1.0,
        min_rate_bps=float(np.median(grid.uplink_bps)),
        min_accuracy=0.0,
    )
    assert no_acc.share == 0.0
    assert all_good.share == pytest.approx(float((grid.reliability >= 0.5).mean()))
    assert 0.4 <= rate_only.share <= 0.6


def test_cell_accuracy_comes_from_the_devices_in_it() -> None:
    """A device's (sample-weighted) accuracy overrides the regional accuracy in its own grid cell only."""
    grid = _grid()
    cmap = coverage_map(
        grid,
        device_xy=np.array([[550.0, 550.0], [560.0, 560.0]]),
        device_accuracy=np.array([0.2, 0.8]),
        device_samples=np.array([1.0, 3.0]),
        regional_accuracy=0.9,
        min_rate_bps=0.0,
        min_accuracy=0.5,
    )
    assert cmap.model_accuracy[5, 5] == pytest.approx(0.65)
    assert cmap.model_accuracy[0, 0] == pytest.approx(0.9)
    assert cmap.service_accuracy[5, 5] == pytest.approx(0.65 * grid.reliability[5, 5])
