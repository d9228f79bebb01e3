"""Satellite (NTN) access for devices out of terrestrial coverage: long round trip, low rate, passes.

Pure numpy, no Mesa. A device is served by the satellite when it is inside the beam's footprint on
the ground and a satellite is overhead (a visibility window of a sparse LEO constellation); its rate
is the beam's capacity shared by the devices using it, capped per device.

Stated assumptions (3GPP TR 38.821 v16.2, *Solutions for NR to support non-terrestrial networks*):

- **Geometry and delay** — slant range at elevation ε from the orbit altitude ``h`` (Earth radius
  6371 km): ``d = √(R² sin²ε + h² + 2Rh) − R sin ε``; with a transparent payload the signal goes
  device → satellite → gateway, so the round trip is ``2·(d_device + d_gateway)/c``. At the minimum
  elevation of 10° this gives TR 38.821 Table 4.2-2's figures: 1932 km and 25.77 ms for LEO-600,
  40 581 km and 541.46 ms for GEO (checked in ``tests/twin/test_satellite.py``).
- **Footprint** — a beam of 50 km diameter (TR 38.821 Table 6.1.1.1-1, LEO-600, Set 1), drawn as a
  circle on the ground; the scenario says where its centre lies relative to the simulated area.
- **Rates** — low: 100 kbit/s uplink and 1 Mbit/s downlink per device, 1 Mbit/s and 10 Mbit/s per
  beam. These are assumptions of the order of TR 38.821 §6.1's link budgets for handheld and IoT
  terminals at S band (a few hundred kHz of uplink per terminal at a few dB of SNR), not numbers
  the report prints for this case.
- **Visibility** — a sparse constellation serves the area in passes: ``pass_duration_s`` of
  service every ``pass_period_s``. Real LEO passes last minutes and sparse IoT constellations
  revisit every tens of minutes to hours; the defaults *compress* this (2 min every 5 min) so a run
  of a few simulated minutes sees several passes and gaps.
- **Energy** — the network side of a satellite transfer is charged ``beam_power_w`` per beam
  capacity (J/bit = W ÷ bit/s, SPEC §7's EE_comm), an assumption for the payload's RF power per beam.

Not modelled: Doppler, handover between satellites or beams, the feeder link's capacity, rain fade.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

from twin.config import check_positive, check_range

EARTH_RADIUS_M = 6_371_000.0
"""Mean Earth radius (TR 38.821 uses 6371 km)."""
SPEED_OF_LIGHT_MPS = 299_792_458.0
ORBIT_ALTITUDE_M: dict[str, float] = {"LEO-600": 600e3, "LEO-1200": 1200e3, "GEO": 35_786e3}
"""Orbit altitudes of TR 38.821's reference cases (Table 4.2-2)."""

Orbit = Literal["LEO-600", "LEO-1200", "GEO"]


def slant_range_m(altitude_m: float, elevation_deg: float) -> float:
    """Distance ground → satellite at ``elevation_deg`` above the horizon (spherical Earth)."""
    if altitude_m <= 0:
        raise ValueError(f"orbit altitude must be > 0 m, got {altitude_m}")
    if not 0.0 <= elevation_deg <= 90.0:
        raise ValueError(f"elevation must be within 0…90°, got {elevation_deg}")
    r = EARTH_RADIUS_M
    s = r * math.sin(math.radians(elevation_deg))
    return math.sqrt(s * s + altitude_m * altitude_m + 2.0 * r * altitude_m) - s


def round_trip_s(altitude_m: float, elevation_deg: float, *, transparent: bool = True) -> float:
    """Worst-case round trip at ``elevation_deg`` (device and gateway both at that elevation).

    Transparent payload: device → satellite → gateway and back (four slant ranges); regenerative: the
    satellite is the base station (two slant ranges).
    """
    legs = 4.0 if transparent else 2.0
    return legs * slant_range_m(altitude_m, elevation_deg) / SPEED_OF_LIGHT_MPS


@dataclass(frozen=True, slots=True)
class SatelliteConfig:
    """The satellite access of a scenario (``--set satellite.field=value``); see the module docstring."""

    enabled: bool = True
    """Whether devices out of terrestrial coverage may use the satellite."""
    orbit: Orbit = "LEO-600"
    """Reference orbit of TR 38.821: ``LEO-600``, ``LEO-1200`` or ``GEO``."""
    min_elevation_deg: float = 10.0
    """Lowest elevation served (TR 38.821: 10° for the delay figures)."""
    transparent: bool = True
    """Transparent payload (bent pipe to a gateway) rather than a base station on board."""
    beam_diameter_m: float = 50_000.0
    """Diameter of the beam's footprint (TR 38.821 Table 6.1.1.1-1, LEO-600 Set 1: 50 km)."""
    footprint_x_m: float = 31_000.0
    """East coordinate of the footprint's centre, in the area's frame (may lie outside the area)."""
    footprint_y_m: float = 3_000.0
    """North coordinate of the footprint's centre, in the area's frame."""
    uplink_bps: float = 100e3
    """Largest uplink rate of one device (assumption, see the module docstring)."""
    downlink_bps: float = 1e6
    """Largest downlink rate of one device."""
    beam_uplink_bps: float = 1e6
    """Uplink capacity of the beam, shared by the devices using it."""
    beam_downlink_bps: float = 10e6
    """Downlink capacity of the beam, shared by the devices using it."""
    reliability: float = 0.99
    """Link reliability of a device served by the satellite."""
    pass_period_s: float = 300.0
    """Time between the starts of two passes (compressed, see the module docstring)."""
    pass_duration_s: float = 120.0
    """Time a pass serves the area (``pass_period_s`` or more: always visible, e.g. GEO)."""
    first_pass_s: float = 60.0
    """Start of the first pass."""
    beam_power_w: float = 200.0
    """RF power of the beam, charged per bit at the beam's capacity (assumption)."""

    def __post_init__(self) -> None:
        check_positive(
            "satellite",
            beam_diameter_m=self.beam_diameter_m,
            uplink_bps=self.uplink_bps,
            downlink_bps=self.downlink_bps,
            beam_uplink_bps=self.beam_uplink_bps,
            beam_downlink_bps=self.beam_downlink_bps,
            pass_period_s=self.pass_period_s,
            pass_duration_s=self.pass_duration_s,
            beam_power_w=self.beam_power_w,
        )
        if self.orbit not in ORBIT_ALTITUDE_M:
            raise ValueError(
                f"satellite.orbit must be one of {', '.join(ORBIT_ALTITUDE_M)}, got {self.orbit!r}"
            )
        check_range("satellite", "min_elevation_deg", self.min_elevation_deg, 0.0, 90.0)
        check_range("satellite", "reliability", self.reliability, 0.0, 1.0)
        check_range("satellite", "first_pass_s", self.first_pass_s, 0.0, 1e9)

    @property
    def altitude_m(self) -> float:
        """Orbit altitude of :attr:`orbit`."""
        return ORBIT_ALTITUDE_M[self.orbit]

    @property
    def round_trip_s(self) -> float:
        """Worst-case round trip (at the minimum elevation)."""
        return round_trip_s(self.altitude_m, self.min_elevation_deg, transparent=self.transparent)

    @property
    def one_way_s(self) -> float:
        """Worst-case one-way delay device → network (half the round trip)."""
        return self.round_trip_s / 2.0

    @property
    def joules_per_bit(self) -> float:
        """Network energy of one bit through the beam: beam power ÷ beam capacity (downlink)."""
        return self.beam_power_w / self.beam_downlink_bps


def visible(config: SatelliteConfig, time_s: float) -> bool:
    """Whether a satellite serves the area at ``time_s`` (inside a pass)."""
    if not config.enabled:
        return False
    if config.pass_duration_s >= config.pass_period_s:
        return time_s >= config.first_pass_s
    if time_s < config.first_pass_s:
        return False
    return (time_s - config.first_pass_s) % config.pass_period_s < config.pass_duration_s


def in_footprint(config: SatelliteConfig, xy: npt.ArrayLike) -> npt.NDArray[np.bool_]:
    """Which ground points ``xy`` (N, 2) lie inside the beam's footprint."""
    points = np.asarray(xy, dtype=float).reshape(-1, 2)
    centre = np.array([config.footprint_x_m, config.footprint_y_m])
    return np.asarray(np.linalg.norm(points - centre, axis=1) <= config.beam_diameter_m / 2.0)


@dataclass(frozen=True, slots=True, eq=False)
class SatelliteLinks:
    """Satellite rates of N devices (0 where a device does not use the satellite)."""

    served: npt.NDArray[np.bool_]
    uplink_bps: npt.NDArray[np.float64]
    downlink_bps: npt.NDArray[np.float64]


def satellite_links(
    config: SatelliteConfig, xy: npt.ArrayLike, wants: npt.ArrayLike, time_s: float
) -> SatelliteLinks:
    """Rates of the devices at ``xy`` that ``wants`` the satellite (no terrestrial link), at ``time_s``.

    The beam's capacity is shared equally by the devices it serves, each capped at its own maximum.
    """
    points = np.asarray(xy, dtype=float).reshape(-1, 2)
    served = np.asarray(wants, dtype=bool) & in_footprint(config, points) & visible(config, time_s)
    n = int(served.sum())
    up = min(config.uplink_bps, config.beam_uplink_bps / n) if n else 0.0
    down = min(config.downlink_bps, config.beam_downlink_bps / n) if n else 0.0
    return SatelliteLinks(served, np.where(served, up, 0.0), np.where(served, down, 0.0))


def footprint_outline(config: SatelliteConfig, points: int = 181) -> npt.NDArray[np.float64]:
    """The footprint's edge as a closed polygon ``(points, 2)`` (for maps)."""
    angles = np.linspace(0.0, 2.0 * np.pi, points)
    radius = config.beam_diameter_m / 2.0
    return np.column_stack(
        [config.footprint_x_m + radius * np.cos(angles), config.footprint_y_m + radius * np.sin(angles)]
    )
