"""Link budget, interference, rate and reliability of every UE, vectorised over UE x BS pairs.

* Noise: ``N = -174 dBm/Hz + 10 log10(B) + NF``.
* Serving cell: the BS with the highest RSRP (path loss and shadowing included).
* Downlink SINR: serving power over noise plus ``load_factor`` times the power of every other BS.
* Uplink SINR: at the serving BS, UE power over noise plus ``load_factor`` times, for every other cell,
  the mean power received from that cell's UEs (one UE per cell is scheduled on a resource at a time,
  each equally likely). UEs transmit at full power (no power control).
* Rate: TR 36.942 Annex A attenuated Shannon bound,
  ``SE = 0 if SINR < SINR_min, else min(alpha log2(1 + SINR), SE_max)``, times bandwidth and layers;
  or the fixed rate of ``RadioConfig.fixed_rate_bps`` (the paper's Table 3-10 mode).
* Reliability (probability a transport block gets through within the delay budget): each transmission
  fails with a logistic BLER of the SINR margin, ``BLER = 1 / (1 + exp((SINR - SINR_th) / s))``, and
  ``harq_transmissions`` independent tries are allowed, so ``r = 1 - BLER ** n``. The curve is a stand-in
  for link-level BLER tables: 50 % BLER at ``SINR_th`` (default -10 dB, where the rate reaches 0) and
  ``s`` dB per e-fold.
* LOS: from a :class:`ShadowingField` (spatially consistent), else drawn from ``rng`` with the LOS
  probability, else (no ``rng``) deterministic: LOS where ``p_LOS >= 0.5``.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.radio.config import RadioConfig, RadioConfigError
from twin.radio.pathloss import geometry, los_probability, path_loss_db, shadow_fading_std_db
from twin.radio.shadowing import ShadowingField

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]
IntArray = npt.NDArray[np.int64]

THERMAL_NOISE_DBM_PER_HZ = -174.0


def db_to_linear(db: npt.ArrayLike) -> FloatArray:
    """``10^(dB/10)``."""
    return np.power(10.0, np.asarray(db, dtype=np.float64) / 10.0)


def linear_to_db(linear: npt.ArrayLike) -> FloatArray:
    """``10 log10(x)``; ``-inf`` for 0."""
    with np.errstate(divide="ignore"):
        return 10.0 * np.log10(np.asarray(linear, dtype=np.float64))


def thermal_noise_dbm(bandwidth_hz: float, noise_figure_db: float) -> float:
    """Receiver noise power ``-174 dBm/Hz + 10 log10(B) + NF`` in dBm."""
    if not bandwidth_hz > 0:
        raise RadioConfigError(f"bandwidth_hz must be > 0, got {bandwidth_hz}")
    return THERMAL_NOISE_DBM_PER_HZ + 10.0 * float(np.log10(bandwidth_hz)) + noise_figure_db


def attenuated_shannon_se(
    sinr_db: npt.ArrayLike, *, alpha: float = 0.6, sinr_min_db: float = -10.0, max_se: float = 4.4
) -> FloatArray:
    """Spectral efficiency (bit/s/Hz) by TR 36.942 A.1: 0 below ``SINR_min``, else ``min(alpha S, max)``."""
    sinr = np.asarray(sinr_db, dtype=np.float64)
    se = np.minimum(alpha * np.log2(1.0 + db_to_linear(sinr)), max_se)
    return np.where(sinr < sinr_min_db, 0.0, se)


def link_reliability(
    sinr_db: npt.ArrayLike, *, threshold_db: float = -10.0, slope_db: float = 1.0, transmissions: int = 4
) -> FloatArray:
    """Probability that a block gets through in ``transmissions`` tries, ``1 - BLER^n`` (see module doc)."""
    margin = (np.asarray(sinr_db, dtype=np.float64) - threshold_db) / slope_db
    bler = np.exp(-np.logaddexp(0.0, margin))
    return 1.0 - bler**transmissions


def downlink_sinr_db(
    rx_power_dbm: FloatArray, serving_cell: IntArray, noise_dbm: float, load_factor: float
) -> FloatArray:
    """Downlink SINR (N,): serving power over noise plus the load-weighted power of all other BSs."""
    rx = db_to_linear(rx_power_dbm)
    rows = np.arange(rx.shape[0])
    signal = rx[rows, serving_cell]
    interference = load_factor * (rx.sum(axis=1) - signal)
    return linear_to_db(signal / (interference + db_to_linear(noise_dbm)))


def uplink_sinr_db(
    ul_rx_power_dbm: FloatArray, serving_cell: IntArray, noise_dbm: float, load_factor: float
) -> FloatArray:
    """Uplink SINR (N,) at the serving BS; interference is the mean power of each other cell's UEs."""
    rx = db_to_linear(ul_rx_power_dbm)
    n_ue, n_bs = rx.shape
    membership = np.zeros((n_ue, n_bs))
    membership[np.arange(n_ue), serving_cell] = 1.0
    ues_per_cell = membership.sum(axis=0)
    mean_from_cell = (membership.T @ rx) / np.maximum(ues_per_cell, 1.0)[:, None]
    np.fill_diagonal(mean_from_cell, 0.0)
    interference_at_bs = load_factor * mean_from_cell.sum(axis=0)
    signal = rx[np.arange(n_ue), serving_cell]
    return linear_to_db(signal / (interference_at_bs[serving_cell] + db_to_linear(noise_dbm)))


def equal_share_rate_bps(rate_bps: npt.ArrayLike, serving_cell: npt.ArrayLike) -> FloatArray:
    """Per-UE rate when each cell's resources are shared equally among the UEs it serves."""
    cells = np.asarray(serving_cell, dtype=np.int64)
    counts = np.bincount(cells)
    return np.asarray(rate_bps, dtype=np.float64) / counts[cells]


def _reliability(sinr_db: FloatArray, cfg: RadioConfig) -> FloatArray:
    return link_reliability(
        sinr_db,
        threshold_db=cfg.reliability_threshold_db,
        slope_db=cfg.reliability_slope_db,
        transmissions=cfg.harq_transmissions,
    )


@dataclass(frozen=True, slots=True, eq=False)
class LinkState:
    """Radio state of N UEs and M base stations after one :func:`compute_links`.

    Pair arrays are (N, M), per-UE arrays (N,). Rates are full-bandwidth rates of one UE; use
    :func:`equal_share_rate_bps` when the UEs of a cell share its resources.
    """

    d2d_m: FloatArray
    d3d_m: FloatArray
    los: BoolArray
    los_probability: FloatArray
    path_loss_db: FloatArray
    shadowing_db: FloatArray
    rsrp_dbm: FloatArray
    serving_cell: IntArray
    sinr_db: FloatArray
    rate_bps: FloatArray
    reliability: FloatArray
    uplink_sinr_db: FloatArray
    uplink_rate_bps: FloatArray
    uplink_reliability: FloatArray
    noise_dbm: float
    uplink_noise_dbm: float

    @property
    def coupling_loss_db(self) -> FloatArray:
        """Path loss plus shadowing to the serving cell (N,): compare with the maximum coupling loss."""
        rows = np.arange(self.serving_cell.shape[0])
        return self.path_loss_db[rows, self.serving_cell] + self.shadowing_db[rows, self.serving_cell]


def compute_links(
    ue_xyz: npt.ArrayLike,
    bs_xyz: npt.ArrayLike,
    cfg: RadioConfig,
    *,
    shadowing: npt.ArrayLike | ShadowingField | None = None,
    rng: np.random.Generator | None = None,
) -> LinkState:
    """Path loss, serving cell, SINR, rate and reliability of every UE, up- and downlink.

    Args:
        ue_xyz: UE positions (N, 3) in metres, z = antenna height; (N, 2) uses ``cfg.ue_height_m``.
        bs_xyz: BS positions (M, 3) or (M, 2) likewise.
        cfg: the radio configuration.
        shadowing: a :class:`ShadowingField` (shadowing and LOS consistent as UEs move), a fixed
            (N, M) shadow fading in dB (LOS then drawn as below), or ``None`` for none.
        rng: draws LOS when ``shadowing`` is not a field; without it LOS is ``p_LOS >= 0.5``.

    Returns:
        The :class:`LinkState`.

    """
    geom = geometry(ue_xyz, bs_xyz, cfg)
    p_los = los_probability(geom, cfg)
    if isinstance(shadowing, ShadowingField):
        if shadowing.shape != p_los.shape:
            raise RadioConfigError(
                f"shadowing field is {shadowing.shape}, but there are {p_los.shape} UE x BS pairs"
            )
        los = shadowing.los(p_los)
        shadow = shadowing.shadowing_db(shadow_fading_std_db(geom, los, cfg))
    else:
        los = rng.random(p_los.shape) < p_los if rng is not None else p_los >= 0.5
        shadow = np.zeros(p_los.shape) if shadowing is None else np.asarray(shadowing, dtype=np.float64)
        if shadow.shape != p_los.shape:
            raise RadioConfigError(f"shadowing is {shadow.shape}, but there are {p_los.shape} UE x BS pairs")
    pl = path_loss_db(geom, los, cfg)
    coupling_gain = cfg.antenna_gain_db - pl - shadow
    rx_dbm = cfg.tx_power_dbm + coupling_gain
    rsrp = rx_dbm - 10.0 * np.log10(cfg.subcarriers)
    serving = np.argmax(rsrp, axis=1).astype(np.int64)
    noise = thermal_noise_dbm(cfg.bandwidth_hz, cfg.noise_figure_db)
    ul_noise = thermal_noise_dbm(cfg.bandwidth_hz, cfg.bs_noise_figure_db)
    sinr = downlink_sinr_db(rx_dbm, serving, noise, cfg.load_factor)
    ul_sinr = uplink_sinr_db(cfg.ue_tx_power_dbm + coupling_gain, serving, ul_noise, cfg.load_factor)
    if cfg.fixed_rate_bps is None:
        scale = cfg.bandwidth_hz * cfg.spatial_layers
        rate = scale * attenuated_shannon_se(
            sinr, alpha=cfg.shannon_alpha, sinr_min_db=cfg.sinr_min_db, max_se=cfg.max_spectral_efficiency
        )
        ul_rate = scale * attenuated_shannon_se(
            ul_sinr,
            alpha=cfg.uplink_shannon_alpha,
            sinr_min_db=cfg.sinr_min_db,
            max_se=cfg.uplink_max_spectral_efficiency,
        )
    else:
        rate = np.full(sinr.shape, cfg.fixed_rate_bps)
        ul_rate = rate.copy()
    return LinkState(
        d2d_m=geom.d2d_m,
        d3d_m=geom.d3d_m,
        los=los,
        los_probability=p_los,
        path_loss_db=pl,
        shadowing_db=shadow,
        rsrp_dbm=rsrp,
        serving_cell=serving,
        sinr_db=sinr,
        rate_bps=rate,
        reliability=_reliability(sinr, cfg),
        uplink_sinr_db=ul_sinr,
        uplink_rate_bps=ul_rate,
        uplink_reliability=_reliability(ul_sinr, cfg),
        noise_dbm=noise,
        uplink_noise_dbm=ul_noise,
    )
