"""Large-scale propagation, vectorised over all UE x BS pairs.

* Path loss: 3GPP TR 38.901 Table 7.4.1-1 (UMa, UMi street canyon, RMa, InH office, InF sub-scenarios),
  LOS and NLOS, with the Table's shadow-fading standard deviations.
* LOS probability: TR 38.901 Table 7.4.2-1 (InH: mixed office).
* Aerial UEs: TR 36.777 Annex B (Table B-1 LOS probability, Table B-2 path loss and shadow fading) for UEs
  above the terrestrial height range (UMa/UMi: 22.5 m, RMa: 10 m), when ``RadioConfig.aerial_models``.

Conventions: ``fc`` in GHz inside the formulas, breakpoint distances with ``fc`` in Hz; distances below a
model's minimum (outdoor d2D 10 m, indoor d3D 1 m) and UE heights below 1.5 m outdoors are raised to it;
beyond the maximum the formulas are extrapolated. UMa/UMi use the effective environment height
``h_E = 1 m`` (TR 38.901's value for h_UT < 13 m; for 13-22.5 m the standard draws it at random).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.radio.config import INF_CLUTTER, INF_SCENARIOS, RadioConfig, RadioConfigError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SPEED_OF_LIGHT_M_PER_S = 299_792_458.0
OUTDOOR_MIN_D2D_M = 10.0
INDOOR_MIN_D3D_M = 1.0
OUTDOOR_MIN_UE_HEIGHT_M = 1.5
EFFECTIVE_ENVIRONMENT_HEIGHT_M = 1.0
AERIAL_HEIGHT_M: dict[str, float] = {"UMa": 22.5, "UMi": 22.5, "RMa": 10.0}
"""Above these UE heights TR 36.777's aerial models apply."""

SIGMA_SF_DB: dict[str, tuple[float, float]] = {
    "UMa": (4.0, 6.0),
    "UMi": (4.0, 7.82),
    "RMa": (4.0, 8.0),
    "InH": (3.0, 8.03),
    "InF-SL": (4.3, 5.7),
    "InF-DL": (4.3, 7.2),
    "InF-SH": (4.3, 5.9),
    "InF-DH": (4.3, 4.0),
}
"""(LOS, NLOS) shadow fading std in dB, TR 38.901 Table 7.4.1-1 (RMa LOS after the breakpoint: 6 dB)."""


@dataclass(frozen=True, slots=True, eq=False)
class Geometry:
    """Distances and heights of every UE x BS pair, shape (N, M)."""

    d2d_m: FloatArray
    d3d_m: FloatArray
    ue_height_m: FloatArray
    bs_height_m: FloatArray


def _positions(xyz: npt.ArrayLike, default_height_m: float, name: str) -> FloatArray:
    arr = np.asarray(xyz, dtype=np.float64)
    if arr.ndim != 2 or arr.shape[1] not in (2, 3) or not np.all(np.isfinite(arr)):
        raise RadioConfigError(
            f"{name} must be a finite (n, 2) or (n, 3) array of metres, got shape {arr.shape}"
        )
    if arr.shape[1] == 2:
        arr = np.column_stack([arr, np.full(arr.shape[0], default_height_m)])
    if np.any(arr[:, 2] <= 0):
        raise RadioConfigError(f"{name} heights (z) must be > 0 m, got {arr[arr[:, 2] <= 0, 2][:3].tolist()}")
    return arr


def geometry(ue_xyz: npt.ArrayLike, bs_xyz: npt.ArrayLike, cfg: RadioConfig) -> Geometry:
    """Pairwise 2-D and 3-D distances (TR 38.901 Fig. 7.4.1-1) of ``ue_xyz`` (N, 2|3) and ``bs_xyz`` (M, 2|3).

    With 2 columns the heights default to ``cfg.ue_height_m`` and ``cfg.default_bs_height_m``.
    """
    ue = _positions(ue_xyz, cfg.ue_height_m, "ue_xyz")
    bs = _positions(bs_xyz, cfg.default_bs_height_m, "bs_xyz")
    if bs.shape[0] == 0:
        raise RadioConfigError("bs_xyz must hold at least one base station, got none")
    delta = ue[:, None, :] - bs[None, :, :]
    d2d = np.hypot(delta[..., 0], delta[..., 1])
    shape = d2d.shape
    return Geometry(
        d2d_m=d2d,
        d3d_m=np.sqrt(d2d**2 + delta[..., 2] ** 2),
        ue_height_m=np.broadcast_to(ue[:, 2:3], shape).copy(),
        bs_height_m=np.broadcast_to(bs[None, :, 2], shape).copy(),
    )


def _outdoor(geom: Geometry) -> tuple[FloatArray, FloatArray, FloatArray]:
    """(d2D, d3D, h_UT) with the distance and height floors of the outdoor models applied."""
    h_ut = np.maximum(geom.ue_height_m, OUTDOOR_MIN_UE_HEIGHT_M)
    d2d = np.maximum(geom.d2d_m, OUTDOOR_MIN_D2D_M)
    return d2d, np.sqrt(d2d**2 + (geom.bs_height_m - h_ut) ** 2), h_ut


def _aerial_mask(geom: Geometry, cfg: RadioConfig) -> BoolArray:
    limit = AERIAL_HEIGHT_M.get(cfg.scenario)
    if not cfg.aerial_models or limit is None:
        return np.zeros(geom.d2d_m.shape, dtype=bool)
    return geom.ue_height_m > limit


def _near_far(d: FloatArray, d1: FloatArray | float, p1: FloatArray | float) -> FloatArray:
    """``1`` up to ``d1``, then ``d1/d + exp(-d/p1) (1 - d1/d)`` (shape shared by Tables 7.4.2-1 and B-1)."""
    return np.where(d <= d1, 1.0, d1 / d + np.exp(-d / p1) * (1.0 - d1 / d))


def los_probability(geom: Geometry, cfg: RadioConfig) -> FloatArray:
    """LOS probability per pair: TR 38.901 Table 7.4.2-1, and TR 36.777 Table B-1 for aerial UEs."""
    s = cfg.scenario
    if s == "InH":
        d = geom.d2d_m
        return np.where(
            d <= 1.2, 1.0, np.where(d < 6.5, np.exp(-(d - 1.2) / 4.7), 0.32 * np.exp(-(d - 6.5) / 32.6))
        )
    if s in INF_SCENARIOS:
        density, size = INF_CLUTTER[s]
        k = -size / np.log(1.0 - density)
        if s in ("InF-SH", "InF-DH"):
            below_clutter = geom.ue_height_m < cfg.clutter_height_m
            ratio = (geom.bs_height_m - geom.ue_height_m) / np.where(
                below_clutter, cfg.clutter_height_m - geom.ue_height_m, 1.0
            )
            return np.where(below_clutter, np.exp(-geom.d2d_m / (k * ratio)), 1.0)
        return np.exp(-geom.d2d_m / k)
    d, _, h = _outdoor(geom)
    log_h = np.log10(h)
    if s == "RMa":
        ground = np.where(d <= 10.0, 1.0, np.exp(-(d - 10.0) / 1000.0))
        p1 = np.maximum(15021.0 * log_h - 16053.0, 1000.0)
        d1 = np.maximum(1350.8 * log_h - 1602.0, 18.0)
        air = np.where(h > 40.0, 1.0, _near_far(d, d1, p1))
    elif s == "UMi":
        ground = _near_far(d, 18.0, 36.0)
        air = _near_far(d, np.maximum(294.05 * log_h - 432.94, 18.0), 233.98 * log_h - 0.95)
    else:
        c_prime = np.clip((h - 13.0) / 10.0, 0.0, 1.0) ** 1.5
        ground = _near_far(d, 18.0, 63.0) * (1.0 + c_prime * 1.25 * (d / 100.0) ** 3 * np.exp(-d / 150.0))
        p1 = np.maximum(4300.0 * log_h - 3800.0, 1.0)
        air = np.where(h > 100.0, 1.0, _near_far(d, np.maximum(460.0 * log_h - 700.0, 18.0), p1))
    return np.clip(np.where(_aerial_mask(geom, cfg), air, ground), 0.0, 1.0)


def _log(x: FloatArray) -> FloatArray:
    return np.log10(x)


def _fspl_1m_db(fc_ghz: float) -> float:
    """``20 log10(40 pi fc / 3)``: free-space loss at 1 m (fc in GHz)."""
    return float(20.0 * np.log10(40.0 * np.pi * fc_ghz / 3.0))


def _breakpoint_m(geom: Geometry, h_ut: FloatArray, cfg: RadioConfig, effective: bool) -> FloatArray:
    """Breakpoint ``d'_BP = 4 h'_BS h'_UT fc / c`` (UMa/UMi) or ``d_BP = 2 pi h_BS h_UT fc / c`` (RMa)."""
    if effective:
        return (
            4.0
            * (geom.bs_height_m - EFFECTIVE_ENVIRONMENT_HEIGHT_M)
            * (h_ut - EFFECTIVE_ENVIRONMENT_HEIGHT_M)
            * cfg.carrier_hz
            / SPEED_OF_LIGHT_M_PER_S
        )
    return 2.0 * np.pi * geom.bs_height_m * h_ut * cfg.carrier_hz / SPEED_OF_LIGHT_M_PER_S


def _urban(geom: Geometry, cfg: RadioConfig, los: BoolArray) -> FloatArray:
    """UMa / UMi street canyon, TR 38.901 Table 7.4.1-1."""
    d2d, d3d, h = _outdoor(geom)
    fc = cfg.carrier_ghz
    d_bp = _breakpoint_m(geom, h, cfg, effective=True)
    if cfg.scenario == "UMa":
        pl1 = 28.0 + 22.0 * _log(d3d) + 20.0 * np.log10(fc)
        pl2 = (
            28.0 + 40.0 * _log(d3d) + 20.0 * np.log10(fc) - 9.0 * _log(d_bp**2 + (geom.bs_height_m - h) ** 2)
        )
        nlos = 13.54 + 39.08 * _log(d3d) + 20.0 * np.log10(fc) - 0.6 * (h - 1.5)
    else:
        pl1 = 32.4 + 21.0 * _log(d3d) + 20.0 * np.log10(fc)
        pl2 = (
            32.4 + 40.0 * _log(d3d) + 20.0 * np.log10(fc) - 9.5 * _log(d_bp**2 + (geom.bs_height_m - h) ** 2)
        )
        nlos = 35.3 * _log(d3d) + 22.4 + 21.3 * np.log10(fc) - 0.3 * (h - 1.5)
    los_pl = np.where(d2d <= d_bp, pl1, pl2)
    return np.where(los, los_pl, np.maximum(los_pl, nlos))


def _rural_pl1(d: FloatArray, cfg: RadioConfig) -> FloatArray:
    h = cfg.building_height_m
    return (
        20.0 * _log(40.0 * np.pi * d * cfg.carrier_ghz / 3.0)
        + min(0.03 * h**1.72, 10.0) * _log(d)
        - min(0.044 * h**1.72, 14.77)
        + 0.002 * np.log10(h) * d
    )


def _rural(geom: Geometry, cfg: RadioConfig, los: BoolArray) -> FloatArray:
    """RMa, TR 38.901 Table 7.4.1-1 (h = building height, W = street width)."""
    d2d, d3d, h_ut = _outdoor(geom)
    h_bs, h, w = geom.bs_height_m, cfg.building_height_m, cfg.street_width_m
    d_bp = _breakpoint_m(geom, h_ut, cfg, effective=False)
    los_pl = np.where(d2d <= d_bp, _rural_pl1(d3d, cfg), _rural_pl1(d_bp, cfg) + 40.0 * _log(d3d / d_bp))
    nlos = (
        161.04
        - 7.1 * np.log10(w)
        + 7.5 * np.log10(h)
        - (24.37 - 3.7 * (h / h_bs) ** 2) * _log(h_bs)
        + (43.42 - 3.1 * _log(h_bs)) * (_log(d3d) - 3.0)
        + 20.0 * np.log10(cfg.carrier_ghz)
        - (3.2 * _log(11.75 * h_ut) ** 2 - 4.97)
    )
    return np.where(los, los_pl, np.maximum(los_pl, nlos))


def _indoor(geom: Geometry, cfg: RadioConfig, los: BoolArray) -> FloatArray:
    """InH office and InF, TR 38.901 Table 7.4.1-1."""
    d = np.maximum(geom.d3d_m, INDOOR_MIN_D3D_M)
    log_fc = np.log10(cfg.carrier_ghz)
    if cfg.scenario == "InH":
        los_pl = 32.4 + 17.3 * _log(d) + 20.0 * log_fc
        return np.where(los, los_pl, np.maximum(los_pl, 38.3 * _log(d) + 17.30 + 24.9 * log_fc))
    los_pl = 31.84 + 21.50 * _log(d) + 19.00 * log_fc
    sparse_low = 33.0 + 25.5 * _log(d) + 20.0 * log_fc
    nlos = {
        "InF-SL": sparse_low,
        "InF-DL": np.maximum(18.6 + 35.7 * _log(d) + 20.0 * log_fc, sparse_low),
        "InF-SH": 32.4 + 23.0 * _log(d) + 20.0 * log_fc,
        "InF-DH": 33.63 + 21.9 * _log(d) + 20.0 * log_fc,
    }[cfg.scenario]
    return np.where(los, los_pl, np.maximum(los_pl, nlos))


def _aerial(geom: Geometry, cfg: RadioConfig, los: BoolArray) -> FloatArray:
    """Aerial UEs, TR 36.777 Table B-2 (UMa-AV, UMi-AV, RMa-AV)."""
    _, d3d, h = _outdoor(geom)
    log_d, log_h, fc = _log(d3d), _log(h), cfg.carrier_ghz
    if cfg.scenario == "UMa":
        los_pl = 28.0 + 22.0 * log_d + 20.0 * np.log10(fc)
        nlos = -17.5 + (46.0 - 7.0 * log_h) * log_d + _fspl_1m_db(fc)
        return np.where(los, los_pl, nlos)
    if cfg.scenario == "UMi":
        free_space = 32.45 + 20.0 * np.log10(fc) + 20.0 * log_d
        los_pl = np.maximum(free_space, 30.9 + (22.25 - 0.5 * log_h) * log_d + 20.0 * np.log10(fc))
        nlos = 32.4 + (43.2 - 7.6 * log_h) * log_d + 20.0 * np.log10(fc)
    else:
        los_pl = np.maximum(23.9 - 1.8 * log_h, 20.0) * log_d + _fspl_1m_db(fc)
        nlos = -12.0 + (35.0 - 5.3 * log_h) * log_d + _fspl_1m_db(fc)
    return np.where(los, los_pl, np.maximum(los_pl, nlos))


def path_loss_db(geom: Geometry, los: BoolArray, cfg: RadioConfig) -> FloatArray:
    """Path loss without shadowing per pair, for the given LOS state (True = LOS)."""
    los = np.asarray(los, dtype=bool)
    if cfg.scenario in ("UMa", "UMi"):
        terrestrial = _urban(geom, cfg, los)
    elif cfg.scenario == "RMa":
        terrestrial = _rural(geom, cfg, los)
    else:
        return _indoor(geom, cfg, los)
    aerial = _aerial_mask(geom, cfg)
    return np.where(aerial, _aerial(geom, cfg, los), terrestrial) if aerial.any() else terrestrial


def shadow_fading_std_db(geom: Geometry, los: BoolArray, cfg: RadioConfig) -> FloatArray:
    """Shadow fading std per pair: TR 38.901 Table 7.4.1-1, TR 36.777 Table B-2 for aerial UEs."""
    los_std, nlos_std = SIGMA_SF_DB[cfg.scenario]
    los_sigma = np.full(geom.d2d_m.shape, los_std)
    if cfg.scenario == "RMa":
        d2d, _, h_ut = _outdoor(geom)
        los_sigma = np.where(d2d <= _breakpoint_m(geom, h_ut, cfg, effective=False), 4.0, 6.0)
    sigma = np.where(los, los_sigma, nlos_std)
    aerial = _aerial_mask(geom, cfg)
    if not aerial.any():
        return sigma
    h = geom.ue_height_m
    air_los, air_nlos = {
        "UMa": (4.64 * np.exp(-0.0066 * h), 6.0),
        "UMi": (np.maximum(5.0 * np.exp(-0.01 * h), 2.0), 8.0),
        "RMa": (4.2 * np.exp(-0.0046 * h), 6.0),
    }[cfg.scenario]
    return np.where(aerial, np.where(los, air_los, air_nlos), sigma)
