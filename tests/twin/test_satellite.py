"""Satellite access (TR 38.821 geometry, passes, footprint, shared beam) and the satellite-aware model."""

from __future__ import annotations

import numpy as np
import pytest

from twin.radio.satellite import (
    SatelliteConfig,
    in_footprint,
    round_trip_s,
    satellite_links,
    slant_range_m,
    visible,
)


def test_slant_range_and_round_trip_match_tr_38_821() -> None:
    """At 10° elevation: LEO-600 1932 km / 25.77 ms, GEO 40 581 km / 541.46 ms (TR 38.821 Table 4.2-2)."""
    # Execute / Assert
    assert slant_range_m(600e3, 10.0) == pytest.approx(1932.24e3, rel=5e-4)  # TR: 1932.24 km
    assert slant_range_m(35_786e3, 10.0) == pytest.approx(40_581e3, rel=5e-4)
    assert round_trip_s(600e3, 10.0) == pytest.approx(25.77e-3, abs=0.01e-3)
    assert round_trip_s(35_786e3, 10.0) == pytest.approx(541.46e-3, abs=0.05e-3)
    assert round_trip_s(600e3, 10.0, transparent=False) == pytest.approx(25.77e-3 / 2, abs=0.01e-3)


def test_passes_open_and_close_on_schedule() -> None:
    """A satellite serves only inside its passes; GEO-like (duration ≥ period) always after the first."""
    # Prepare
    leo = SatelliteConfig(first_pass_s=60.0, pass_period_s=300.0, pass_duration_s=120.0)
    always = SatelliteConfig(first_pass_s=0.0, pass_period_s=100.0, pass_duration_s=100.0)
    # Assert
    assert [visible(leo, t) for t in (0.0, 59.9, 60.0, 179.9, 180.0, 360.0, 479.0)] == [
        False,
        False,
        True,
        True,
        False,
        True,
        True,
    ]
    assert all(visible(always, t) for t in (0.0, 1e5))
    assert not visible(SatelliteConfig(enabled=False), 100.0)


def test_beam_capacity_is_shared_inside_the_footprint_only() -> None:
    """Devices outside the footprint or with a terrestrial link get nothing; the others share the beam."""
    # Prepare
    cfg = SatelliteConfig(
        footprint_x_m=0.0,
        footprint_y_m=0.0,
        beam_diameter_m=2000.0,
        first_pass_s=0.0,
        pass_duration_s=1e9,
        uplink_bps=1e6,
        beam_uplink_bps=1.5e6,
    )
    xy = np.array([[0.0, 0.0], [500.0, 0.0], [5000.0, 0.0], [100.0, 100.0]])
    wants = np.array([True, True, True, False])
    # Execute
    links = satellite_links(cfg, xy, wants, time_s=10.0)
    # Assert
    assert in_footprint(cfg, xy).tolist() == [True, True, False, True]
    assert links.served.tolist() == [True, True, False, False]
    assert links.uplink_bps.tolist() == [0.75e6, 0.75e6, 0.0, 0.0]


def test_bad_satellite_settings_are_refused() -> None:
    """An unknown orbit or a negative rate is refused at construction, naming the field."""
    with pytest.raises(ValueError, match="orbit"):
        SatelliteConfig(orbit="MEO")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="uplink_bps"):
        SatelliteConfig(uplink_bps=-1.0)
