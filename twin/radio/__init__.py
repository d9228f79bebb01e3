"""Vectorised radio model: TR 38.901 / TR 36.777 propagation, correlated shadowing, SINR, rate, reliability.

Typical use, one step of the world::

    links = compute_links(ue_xyz, bs_xyz, cfg, shadowing=field)
    field = field.moved(displacement_m, cfg, rng, los=links.los)
"""

from twin.radio.config import SCENARIOS, RadioConfig, RadioConfigError, Scenario
from twin.radio.link import (
    LinkState,
    attenuated_shannon_se,
    compute_links,
    db_to_linear,
    downlink_sinr_db,
    equal_share_rate_bps,
    linear_to_db,
    link_reliability,
    thermal_noise_dbm,
    uplink_sinr_db,
)
from twin.radio.pathloss import Geometry, geometry, los_probability, path_loss_db, shadow_fading_std_db
from twin.radio.shadowing import ShadowingField, correlation, standard_normal_cdf

__all__ = [
    "SCENARIOS",
    "Geometry",
    "LinkState",
    "RadioConfig",
    "RadioConfigError",
    "Scenario",
    "ShadowingField",
    "attenuated_shannon_se",
    "compute_links",
    "correlation",
    "db_to_linear",
    "downlink_sinr_db",
    "equal_share_rate_bps",
    "geometry",
    "link_reliability",
    "linear_to_db",
    "los_probability",
    "path_loss_db",
    "shadow_fading_std_db",
    "standard_normal_cdf",
    "thermal_noise_dbm",
    "uplink_sinr_db",
]
