"""Radio configuration: scenario, carrier, powers, receiver and link-abstraction parameters.

A frozen dataclass validated on construction; every field has a documented default so a scenario only
sets what it changes.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal, get_args

from twin.errors import ConfigError

Scenario = Literal["UMa", "UMi", "RMa", "InH", "InF-SL", "InF-DL", "InF-SH", "InF-DH"]
SCENARIOS: tuple[str, ...] = get_args(Scenario)
INF_SCENARIOS: tuple[str, ...] = ("InF-SL", "InF-DL", "InF-SH", "InF-DH")

DEFAULT_BS_HEIGHT_M: dict[str, float] = {
    "UMa": 25.0,
    "UMi": 10.0,
    "RMa": 35.0,
    "InH": 3.0,
    "InF-SL": 1.5,
    "InF-DL": 1.5,
    "InF-SH": 8.0,
    "InF-DH": 8.0,
}
"""BS heights of TR 38.901 Tables 7.2-1..7.2-4 (InF: low BS for SL/DL, high for SH/DH)."""

INF_CLUTTER: dict[str, tuple[float, float]] = {
    "InF-SL": (0.2, 10.0),
    "InF-DL": (0.6, 2.0),
    "InF-SH": (0.2, 10.0),
    "InF-DH": (0.6, 2.0),
}
"""(clutter density r, clutter size d_clutter in m) of TR 38.901 Table 7.2-4 per InF sub-scenario."""


class RadioConfigError(ConfigError, ValueError):
    """A radio configuration value is out of its valid range."""


@dataclass(frozen=True, slots=True)
class RadioConfig:
    """Radio parameters of one deployment.

    Attributes:
        scenario: TR 38.901 scenario: ``UMa``, ``UMi`` (street canyon), ``RMa``, ``InH`` (mixed office),
            ``InF-SL``/``InF-DL``/``InF-SH``/``InF-DH`` (indoor factory sub-scenarios).
        carrier_ghz: carrier frequency, 0.5-100 GHz (TR 38.901 range).
        bandwidth_hz: system bandwidth.
        subcarrier_spacing_hz: for RSRP (power per resource element).
        tx_power_dbm: BS transmit power over the whole bandwidth (downlink).
        ue_tx_power_dbm: UE transmit power (uplink; no power control).
        antenna_gain_db: transmit plus receive antenna gain, both directions.
        noise_figure_db: UE receiver noise figure (downlink).
        bs_noise_figure_db: BS receiver noise figure (uplink).
        ue_height_m: UE antenna height used when positions are given in 2-D.
        bs_height_m: BS antenna height used when positions are given in 2-D; scenario default when ``None``.
        load_factor: share of resources on which the other cells (or their UEs) transmit, in [0, 1].
        fixed_rate_bps: when set, every UE gets this rate in both directions (the paper's Table 3-10 mode);
            SINR and reliability are still computed from the geometry.
        shannon_alpha: attenuation of the Shannon bound, downlink (TR 36.942 Annex A: 0.6).
        sinr_min_db: SINR below which the rate is 0 (TR 36.942 Annex A: -10 dB).
        max_spectral_efficiency: downlink ceiling in bit/s/Hz (TR 36.942: 4.4).
        uplink_shannon_alpha: uplink attenuation (TR 36.942 Annex A: 0.4).
        uplink_max_spectral_efficiency: uplink ceiling in bit/s/Hz (TR 36.942: 2.0).
        spatial_layers: MIMO layers, each assumed to see the same SINR (rate multiplier).
        reliability_threshold_db: SINR at which one transmission fails half the time.
        reliability_slope_db: width of the logistic BLER curve in dB.
        harq_transmissions: transmissions allowed within the delay budget (1 = no retransmission).
        building_height_m: RMa average building height h.
        street_width_m: RMa average street width W.
        clutter_height_m: InF effective clutter height h_c.
        aerial_models: use the TR 36.777 aerial-UE models for UEs above the terrestrial height range
            (22.5 m for UMa/UMi, 10 m for RMa).

    """

    scenario: Scenario = "UMa"
    carrier_ghz: float = 3.5
    bandwidth_hz: float = 100e6
    subcarrier_spacing_hz: float = 30e3
    tx_power_dbm: float = 49.0
    ue_tx_power_dbm: float = 23.0
    antenna_gain_db: float = 0.0
    noise_figure_db: float = 9.0
    bs_noise_figure_db: float = 5.0
    ue_height_m: float = 1.5
    bs_height_m: float | None = None
    load_factor: float = 1.0
    fixed_rate_bps: float | None = None
    shannon_alpha: float = 0.6
    sinr_min_db: float = -10.0
    max_spectral_efficiency: float = 4.4
    uplink_shannon_alpha: float = 0.4
    uplink_max_spectral_efficiency: float = 2.0
    spatial_layers: int = 1
    reliability_threshold_db: float = -10.0
    reliability_slope_db: float = 1.0
    harq_transmissions: int = 4
    building_height_m: float = 5.0
    street_width_m: float = 20.0
    clutter_height_m: float = 2.0
    aerial_models: bool = True

    def __post_init__(self) -> None:
        if self.scenario not in SCENARIOS:
            raise RadioConfigError(
                f"radio scenario must be one of {', '.join(SCENARIOS)}, got {self.scenario!r}"
            )
        if not 0.5 <= self.carrier_ghz <= 100:
            raise RadioConfigError(f"carrier_ghz must be in [0.5, 100] (TR 38.901), got {self.carrier_ghz}")
        positive = {
            "bandwidth_hz": self.bandwidth_hz,
            "subcarrier_spacing_hz": self.subcarrier_spacing_hz,
            "ue_height_m": self.ue_height_m,
            "shannon_alpha": self.shannon_alpha,
            "max_spectral_efficiency": self.max_spectral_efficiency,
            "uplink_shannon_alpha": self.uplink_shannon_alpha,
            "uplink_max_spectral_efficiency": self.uplink_max_spectral_efficiency,
            "reliability_slope_db": self.reliability_slope_db,
            "building_height_m": self.building_height_m,
            "street_width_m": self.street_width_m,
            "clutter_height_m": self.clutter_height_m,
        }
        for name, value in positive.items():
            if not (math.isfinite(value) and value > 0):
                raise RadioConfigError(f"{name} must be > 0, got {value}")
        if self.bs_height_m is not None and not self.bs_height_m > 0:
            raise RadioConfigError(f"bs_height_m must be > 0 or None, got {self.bs_height_m}")
        if not 0 <= self.load_factor <= 1:
            raise RadioConfigError(f"load_factor must be in [0, 1], got {self.load_factor}")
        if self.fixed_rate_bps is not None and not self.fixed_rate_bps >= 0:
            raise RadioConfigError(f"fixed_rate_bps must be >= 0 or None, got {self.fixed_rate_bps}")
        if self.spatial_layers < 1 or self.harq_transmissions < 1:
            raise RadioConfigError(
                "spatial_layers and harq_transmissions must be >= 1, got "
                f"{self.spatial_layers} and {self.harq_transmissions}"
            )
        if self.subcarrier_spacing_hz > self.bandwidth_hz:
            raise RadioConfigError(
                f"subcarrier_spacing_hz {self.subcarrier_spacing_hz} exceeds bandwidth_hz {self.bandwidth_hz}"
            )

    @property
    def carrier_hz(self) -> float:
        """Carrier frequency in Hz."""
        return self.carrier_ghz * 1e9

    @property
    def default_bs_height_m(self) -> float:
        """BS height for 2-D positions: ``bs_height_m`` or the scenario's default."""
        return DEFAULT_BS_HEIGHT_M[self.scenario] if self.bs_height_m is None else self.bs_height_m

    @property
    def subcarriers(self) -> float:
        """Number of subcarriers in the bandwidth (for RSRP)."""
        return self.bandwidth_hz / self.subcarrier_spacing_hz
