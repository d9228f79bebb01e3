"""Spatially consistent shadow fading and LOS state for moving UEs (Gudmundson exponential correlation).

Each UE x BS pair carries two standard-normal variables: one scales the shadow-fading std, the other
decides LOS by comparing its uniform transform ``Phi(z)`` with the LOS probability (the spatially
consistent LOS procedure of TR 38.901 §7.6.3.3). When a UE moves by ``dd`` metres, each variable becomes

    z' = rho z + sqrt(1 - rho^2) w,   rho = exp(-dd / d_corr),   w ~ N(0, 1),

so the correlation between the two positions is ``exp(-dd / d_corr)`` (Gudmundson, 1991). Decorrelation
distances: shadow fading from TR 38.901 Table 7.5-6 (LOS/NLOS, the link's current state), LOS state from
Table 7.6.3.1-2 (InF: d_clutter / 2). Aerial UEs use their scenario's values.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.radio.config import INF_CLUTTER, RadioConfig, RadioConfigError

FloatArray = npt.NDArray[np.float64]
BoolArray = npt.NDArray[np.bool_]

SF_DECORRELATION_M: dict[str, tuple[float, float]] = {
    "UMa": (37.0, 50.0),
    "UMi": (10.0, 13.0),
    "RMa": (37.0, 120.0),
    "InH": (10.0, 6.0),
    "InF-SL": (10.0, 10.0),
    "InF-DL": (10.0, 10.0),
    "InF-SH": (10.0, 10.0),
    "InF-DH": (10.0, 10.0),
}
"""(LOS, NLOS) shadow-fading decorrelation distance in m, TR 38.901 Table 7.5-6."""

LOS_DECORRELATION_M: dict[str, float] = {
    "UMa": 50.0,
    "UMi": 50.0,
    "RMa": 60.0,
    "InH": 10.0,
    **{name: size / 2.0 for name, (_, size) in INF_CLUTTER.items()},
}
"""LOS-state decorrelation distance in m, TR 38.901 Table 7.6.3.1-2."""


def standard_normal_cdf(z: npt.ArrayLike) -> FloatArray:
    """``Phi(z)`` via the Abramowitz & Stegun 7.1.26 erf approximation (absolute error < 1.5e-7)."""
    x = np.asarray(z, dtype=np.float64) / np.sqrt(2.0)
    t = 1.0 / (1.0 + 0.3275911 * np.abs(x))
    poly = t * (0.254829592 + t * (-0.284496736 + t * (1.421413741 + t * (-1.453152027 + t * 1.061405429))))
    erf = 1.0 - poly * np.exp(-(x**2))
    return 0.5 * (1.0 + np.sign(x) * erf)


def correlation(displacement_m: npt.ArrayLike, decorrelation_m: npt.ArrayLike) -> FloatArray:
    """Gudmundson autocorrelation ``exp(-dd / d_corr)``."""
    return np.exp(-np.abs(np.asarray(displacement_m, dtype=np.float64)) / np.asarray(decorrelation_m))


@dataclass(frozen=True, slots=True, eq=False)
class ShadowingField:
    """Standard-normal shadowing and LOS variables of every UE x BS pair, shape (N, M).

    Immutable: :meth:`moved` returns the field after the UEs moved.
    """

    sf_normal: FloatArray
    los_normal: FloatArray

    def __post_init__(self) -> None:
        if self.sf_normal.shape != self.los_normal.shape or self.sf_normal.ndim != 2:
            shapes = f"{self.sf_normal.shape} and {self.los_normal.shape}"
            raise RadioConfigError(f"sf_normal and los_normal must have one (N, M) shape, got {shapes}")

    @classmethod
    def draw(cls, n_ue: int, n_bs: int, rng: np.random.Generator) -> ShadowingField:
        """Independent start values for ``n_ue`` UEs and ``n_bs`` base stations."""
        return cls(rng.standard_normal((n_ue, n_bs)), rng.standard_normal((n_ue, n_bs)))

    @property
    def shape(self) -> tuple[int, int]:
        """(N, M)."""
        n, m = self.sf_normal.shape
        return n, m

    def los(self, los_probability: npt.ArrayLike) -> BoolArray:
        """LOS where ``Phi(los_normal) < p_LOS``: LOS with probability ``p_LOS``, consistent in space."""
        return standard_normal_cdf(self.los_normal) < np.asarray(los_probability)

    def shadowing_db(self, sigma_db: npt.ArrayLike) -> FloatArray:
        """Shadow fading in dB (to add to the path loss) for the per-pair std ``sigma_db``."""
        return self.sf_normal * np.asarray(sigma_db, dtype=np.float64)

    def moved(
        self,
        displacement_m: npt.ArrayLike,
        cfg: RadioConfig,
        rng: np.random.Generator,
        los: npt.ArrayLike | None = None,
    ) -> ShadowingField:
        """Return the field after each UE moved ``displacement_m`` (N,) metres.

        Args:
            displacement_m: distance each UE travelled since the last update, (N,) or scalar.
            cfg: gives the scenario's decorrelation distances.
            rng: source of the innovations.
            los: current LOS state (N, M): picks the LOS or NLOS shadow-fading distance; NLOS when ``None``.

        """
        step = np.broadcast_to(np.asarray(displacement_m, dtype=np.float64), (self.shape[0],))
        if np.any(step < 0) or not np.all(np.isfinite(step)):
            bad = step[(step < 0) | ~np.isfinite(step)][:3].tolist()
            raise RadioConfigError(f"displacement_m must be finite and >= 0, got {bad}")
        los_d, nlos_d = SF_DECORRELATION_M[cfg.scenario]
        sf_dcorr = nlos_d if los is None else np.where(np.asarray(los, dtype=bool), los_d, nlos_d)
        rho_sf = correlation(step[:, None], sf_dcorr)
        rho_los = correlation(step[:, None], LOS_DECORRELATION_M[cfg.scenario])
        return ShadowingField(
            rho_sf * self.sf_normal + np.sqrt(1.0 - rho_sf**2) * rng.standard_normal(self.shape),
            rho_los * self.los_normal + np.sqrt(1.0 - rho_los**2) * rng.standard_normal(self.shape),
        )
