"""Tests of the radio model against hand-computed 3GPP values (TR 38.901, TR 36.777, TR 36.942)."""

import numpy as np
import pytest

from twin.errors import ConfigError
from twin.radio import (
    RadioConfig,
    RadioConfigError,
    ShadowingField,
    attenuated_shannon_se,
    compute_links,
    geometry,
    link_reliability,
    los_probability,
    path_loss_db,
    shadow_fading_std_db,
    standard_normal_cdf,
    thermal_noise_dbm,
)


def _single_link(cfg: RadioConfig, ue: list[float], bs: list[float], los: bool) -> float:
    geom = geometry(np.array([ue]), np.array([bs]), cfg)
    return float(path_loss_db(geom, np.array([[los]]), cfg)[0, 0])


def test_uma_los_before_and_after_breakpoint() -> None:
    """UMa LOS, 3.5 GHz, h_BS 25 m, h_UT 1.5 m (TR 38.901 Table 7.4.1-1).

    d'_BP = 4 (25-1)(1.5-1) 3.5e9 / c = 560.39 m.
    d2D 100 m: d3D = sqrt(100^2 + 23.5^2) = 102.724 m;
    PL1 = 28 + 22 log10(102.724) + 20 log10(3.5) = 83.138 dB.
    d2D 1000 m: d3D = 1000.276 m; PL2 = 28 + 40 log10(1000.276) + 20 log10(3.5) - 9 log10(560.39^2 + 23.5^2)
    = 109.406 dB.
    """
    # Prepare
    cfg = RadioConfig(scenario="UMa", carrier_ghz=3.5)
    # Execute
    near = _single_link(cfg, [100, 0, 1.5], [0, 0, 25], los=True)
    far = _single_link(cfg, [1000, 0, 1.5], [0, 0, 25], los=True)
    # Assert
    assert near == pytest.approx(83.138, abs=0.001)
    assert far == pytest.approx(109.406, abs=0.001)


def test_uma_nlos_is_max_of_los_and_nlos_formula() -> None:
    """UMa NLOS at d2D 100 m: 13.54 + 39.08 log10(102.724) + 20 log10(3.5) - 0.6 (1.5 - 1.5) = 103.038 dB."""
    # Prepare
    cfg = RadioConfig(scenario="UMa")
    # Execute
    nlos = _single_link(cfg, [100, 0, 1.5], [0, 0, 25], los=False)
    # Assert
    assert nlos == pytest.approx(103.038, abs=0.001)


def test_umi_street_canyon_los_and_nlos() -> None:
    """UMi, h_BS 10 m, d2D 100 m: d3D = sqrt(100^2 + 8.5^2) = 100.361 m (d'_BP = 210.1 m).

    LOS: 32.4 + 21 log10(100.361) + 20 log10(3.5) = 85.314 dB.
    NLOS: 35.3 log10(100.361) + 22.4 + 21.3 log10(3.5) = 104.644 dB.
    """
    # Prepare
    cfg = RadioConfig(scenario="UMi")
    # Execute
    los = _single_link(cfg, [100, 0, 1.5], [0, 0, 10], los=True)
    nlos = _single_link(cfg, [100, 0, 1.5], [0, 0, 10], los=False)
    # Assert
    assert los == pytest.approx(85.314, abs=0.001)
    assert nlos == pytest.approx(104.644, abs=0.001)


def test_inh_office_at_10_m() -> None:
    """InH, d3D 10 m (d2D 8 m, heights 1 m and 7 m), 3.5 GHz.

    LOS: 32.4 + 17.3 log10(10) + 20 log10(3.5) = 60.581 dB.
    NLOS: max(LOS, 38.3 log10(10) + 17.30 + 24.9 log10(3.5)) = 69.147 dB.
    """
    # Prepare
    cfg = RadioConfig(scenario="InH")
    # Execute
    los = _single_link(cfg, [8, 0, 1], [0, 0, 7], los=True)
    nlos = _single_link(cfg, [8, 0, 1], [0, 0, 7], los=False)
    # Assert
    assert los == pytest.approx(60.581, abs=0.001)
    assert nlos == pytest.approx(69.147, abs=0.001)


def test_rma_los_and_nlos_at_500_m() -> None:
    """RMa, h_BS 35 m, h_UT 1.5 m, h 5 m, W 20 m, d2D 500 m: d3D = 501.121 m.

    d_BP = 2 pi 35 1.5 3.5e9 / c = 3851 m, so PL1 applies:
    LOS: 20 log10(40 pi 501.121 3.5 / 3) + min(0.03 5^1.72, 10) log10(501.121) - min(0.044 5^1.72, 14.77)
    + 0.002 log10(5) 501.121 = 98.612 dB.
    NLOS: 161.04 - 7.1 log10(20) + 7.5 log10(5) - (24.37 - 3.7 (5/35)^2) log10(35)
    + (43.42 - 3.1 log10(35)) (log10(501.121) - 3) + 20 log10(3.5) - (3.2 log10(11.75 1.5)^2 - 4.97)
    = 118.823 dB.
    """
    # Prepare
    cfg = RadioConfig(scenario="RMa")
    # Execute
    los = _single_link(cfg, [500, 0, 1.5], [0, 0, 35], los=True)
    nlos = _single_link(cfg, [500, 0, 1.5], [0, 0, 35], los=False)
    # Assert
    assert los == pytest.approx(98.612, abs=0.001)
    assert nlos == pytest.approx(118.823, abs=0.001)


def test_aerial_uma_uses_tr_36_777() -> None:
    """A drone at 50 m in UMa (h_BS 25 m, d2D 300 m, d3D 301.040 m), TR 36.777 Table B-2.

    LOS: 28 + 22 log10(301.040) + 20 log10(3.5) = 93.411 dB, sigma_SF = 4.64 exp(-0.0066 * 50) = 3.336 dB.
    NLOS: -17.5 + (46 - 7 log10(50)) log10(301.040) + 20 log10(40 pi 3.5 / 3) = 110.362 dB.
    """
    # Prepare
    cfg = RadioConfig(scenario="UMa")
    geom = geometry(np.array([[300, 0, 50]]), np.array([[0, 0, 25]]), cfg)
    # Execute
    los = _single_link(cfg, [300, 0, 50], [0, 0, 25], los=True)
    nlos = _single_link(cfg, [300, 0, 50], [0, 0, 25], los=False)
    sigma = shadow_fading_std_db(geom, np.array([[True]]), cfg)
    # Assert
    assert los == pytest.approx(93.411, abs=0.001)
    assert nlos == pytest.approx(110.362, abs=0.001)
    assert sigma[0, 0] == pytest.approx(3.336, abs=0.001)


@pytest.mark.parametrize(
    ("scenario", "ue", "bs", "los", "expected"),
    [
        # InF-DL NLOS, d3D 100 m: max(LOS 31.84 + 21.5*2 + 19 log10(3.5), SL 33 + 25.5*2 + 20 log10(3.5),
        # DL 18.6 + 35.7*2 + 20 log10(3.5)) = max(85.18, 94.88, 100.881) = 100.881 dB
        ("InF-DL", [100, 0, 1.5], [0, 0, 1.5], False, 100.881),
        # UMi-AV LOS, h_UT 100 m, h_BS 10 m, d2D 200 m, d3D 219.317 m:
        # max(FSPL 32.45 + 20 log10(3.5) + 20 log10(219.317) = 90.153,
        #     30.9 + (22.25 - 0.5 log10(100)) log10(219.317) + 20 log10(3.5) = 91.529) = 91.529 dB
        ("UMi", [200, 0, 100], [0, 0, 10], True, 91.529),
        # UMi-AV NLOS: max(LOS, 32.4 + (43.2 - 7.6 log10(100)) log10(219.317) + 20 log10(3.5)) = 108.831 dB
        ("UMi", [200, 0, 100], [0, 0, 10], False, 108.831),
        # RMa-AV, h_UT 120 m, h_BS 35 m, d2D 1000 m, d3D 1003.606 m:
        # LOS max(23.9 - 1.8 log10(120), 20) log10(1003.606) + 20 log10(40 pi 3.5 / 3) = 103.827 dB;
        # the NLOS formula gives 103.302 < LOS, so NLOS = LOS
        ("RMa", [1000, 0, 120], [0, 0, 35], True, 103.827),
        ("RMa", [1000, 0, 120], [0, 0, 35], False, 103.827),
    ],
)
def test_factory_and_aerial_path_loss(
    scenario: str, ue: list[float], bs: list[float], los: bool, expected: float
) -> None:
    """InF and TR 36.777 aerial path loss, including the max() with the LOS value that NLOS takes."""
    # Prepare
    cfg = RadioConfig(scenario=scenario)  # type: ignore[arg-type]
    # Execute
    loss = _single_link(cfg, ue, bs, los=los)
    # Assert
    assert loss == pytest.approx(expected, abs=0.001)


@pytest.mark.parametrize(
    ("scenario", "ue", "bs", "expected"),
    [
        # UMa, d2D 100 m: 18/100 + exp(-100/63) (1 - 18/100) = 0.34767
        ("UMa", [100, 0, 1.5], [0, 0, 25], 0.34767),
        # UMi, d2D 100 m: 18/100 + exp(-100/36) (1 - 18/100) = 0.23098
        ("UMi", [100, 0, 1.5], [0, 0, 10], 0.23098),
        # RMa, d2D 510 m: exp(-(510 - 10)/1000) = 0.60653
        ("RMa", [510, 0, 1.5], [0, 0, 35], 0.60653),
        # InH mixed office, d2D 3 m: exp(-(3 - 1.2)/4.7) = 0.68183
        ("InH", [3, 0, 1], [0, 0, 3], 0.68183),
        # InH mixed office, d2D 20 m: 0.32 exp(-(20 - 6.5)/32.6) = 0.21150
        ("InH", [20, 0, 1], [0, 0, 3], 0.21150),
        # InF-SL, d2D = d_clutter = 10 m: exp(-10 / (-10/ln(1 - 0.2))) = 1 - 0.2 = 0.8
        ("InF-SL", [10, 0, 1.5], [0, 0, 1.5], 0.8),
        # InF-DH, d2D 2 m, h_BS 8, h_UT 1.5, h_c 2: k = -2/ln(0.4) * 6.5/0.5, p = 0.4^(1/13) = 0.93194
        ("InF-DH", [2, 0, 1.5], [0, 0, 8], 0.93194),
        # UMa-AV, h_UT 50 m, d2D 500 m: p1 = 4300 log10(50) - 3800 = 3505.57,
        # d1 = 460 log10(50) - 700 = 81.526, d1/500 + exp(-500/p1) (1 - d1/500) = 0.88875
        ("UMa", [500, 0, 50], [0, 0, 25], 0.88875),
    ],
)
def test_los_probability_table_7_4_2_1(
    scenario: str, ue: list[float], bs: list[float], expected: float
) -> None:
    """LOS probability per TR 38.901 Table 7.4.2-1 and TR 36.777 Table B-1 at chosen distances."""
    # Prepare
    cfg = RadioConfig(scenario=scenario)  # type: ignore[arg-type]
    geom = geometry(np.array([ue]), np.array([bs]), cfg)
    # Execute
    p = los_probability(geom, cfg)
    # Assert
    assert p[0, 0] == pytest.approx(expected, abs=1e-4)


def test_thermal_noise_for_100_mhz_and_nf_9_db() -> None:
    """-174 dBm/Hz + 10 log10(100e6) + 9 dB = -174 + 80 + 9 = -85 dBm."""
    # Prepare / Execute
    noise = thermal_noise_dbm(100e6, 9.0)
    # Assert
    assert noise == pytest.approx(-85.0)


def test_attenuated_shannon_tr_36_942() -> None:
    """SE = 0 below -10 dB, alpha log2(1 + SINR) between, capped at 4.4 bit/s/Hz (alpha = 0.6).

    10 dB: 0.6 log2(11) = 2.07566; -10 dB: 0.6 log2(1.1) = 0.08250; 30 dB: 0.6 log2(1001) = 5.98 -> 4.4.
    """
    # Prepare
    sinr_db = np.array([-11.0, -10.0, 10.0, 30.0])
    # Execute
    se = attenuated_shannon_se(sinr_db, alpha=0.6, sinr_min_db=-10.0, max_se=4.4)
    # Assert
    assert se == pytest.approx([0.0, 0.08250, 2.07566, 4.4], abs=1e-5)


def test_reliability_is_one_minus_bler_to_the_number_of_tries() -> None:
    """At the threshold BLER = 0.5: one try gives 0.5, four 1 - 0.5^4 = 0.9375; more SINR, more reliable."""
    # Prepare
    sinr_db = np.array([-10.0, -10.0, -5.0, 10.0])
    # Execute
    single = link_reliability(sinr_db[:1], threshold_db=-10.0, slope_db=1.0, transmissions=1)
    harq = link_reliability(sinr_db, threshold_db=-10.0, slope_db=1.0, transmissions=4)
    # Assert
    assert single[0] == pytest.approx(0.5)
    assert harq[0] == pytest.approx(0.9375)
    assert np.all(np.diff(harq[1:]) >= 0) and harq[-1] == pytest.approx(1.0)


def test_serving_cell_is_the_strongest_and_interference_lowers_sinr() -> None:
    """The UE is served by the nearer BS; a loaded second cell lowers SINR below the SNR reached at load 0.

    Single link, no interference: SNR = 49 dBm - 83.138 dB - (-85 dBm) = 50.862 dB (UMa LOS, 100 m).
    """
    # Prepare
    ue = np.array([[100.0, 0.0, 1.5]])
    bs = np.array([[0.0, 0.0, 25.0], [400.0, 0.0, 25.0]])
    loaded = RadioConfig(scenario="UMa", load_factor=1.0)
    idle = RadioConfig(scenario="UMa", load_factor=0.0)
    # Execute: a field with los_normal = -10 makes Phi(z) ~ 0 < p_LOS, i.e. every link LOS, and no shadowing
    field = ShadowingField(sf_normal=np.zeros((1, 2)), los_normal=np.full((1, 2), -10.0))
    with_interference = compute_links(ue, bs, loaded, shadowing=field)
    without = compute_links(ue, bs, idle, shadowing=field)
    # Assert
    assert with_interference.serving_cell.tolist() == [0]
    assert with_interference.los.all()
    assert without.sinr_db[0] == pytest.approx(49.0 - 83.138 + 85.0, abs=0.001)
    assert with_interference.sinr_db[0] < without.sinr_db[0]
    assert with_interference.uplink_sinr_db[0] == pytest.approx(without.uplink_sinr_db[0])


def test_uplink_interference_comes_from_ues_of_other_cells() -> None:
    """Uplink SINR at BS 0 drops when a UE served by BS 1 transmits; SNR = 23 - PL - (-174 + 80 + 5)."""
    # Prepare
    bs = np.array([[0.0, 0.0, 25.0], [400.0, 0.0, 25.0]])
    alone = np.array([[100.0, 0.0, 1.5]])
    crowded = np.array([[100.0, 0.0, 1.5], [300.0, 0.0, 1.5]])
    cfg = RadioConfig(scenario="UMa")
    all_los = ShadowingField(sf_normal=np.zeros((2, 2)), los_normal=np.full((2, 2), -10.0))
    # Execute
    single = compute_links(alone, bs, cfg, shadowing=ShadowingField(np.zeros((1, 2)), np.full((1, 2), -10.0)))
    shared = compute_links(crowded, bs, cfg, shadowing=all_los)
    # Assert
    assert single.uplink_sinr_db[0] == pytest.approx(23.0 - 83.138 + 89.0, abs=0.001)
    assert shared.serving_cell.tolist() == [0, 1]
    assert shared.uplink_sinr_db[0] < single.uplink_sinr_db[0]


def test_fixed_rate_mode_gives_every_ue_the_given_rate() -> None:
    """Table 3-10 mode: rate fixed at 1.95 Gb/s up and down, whatever the geometry."""
    # Prepare
    cfg = RadioConfig(scenario="UMa", fixed_rate_bps=1.95e9)
    ue = np.array([[50.0, 0.0], [900.0, 100.0], [2000.0, -300.0]])
    # Execute
    links = compute_links(ue, np.array([[0.0, 0.0]]), cfg)
    # Assert
    assert links.rate_bps.tolist() == [1.95e9] * 3
    assert links.uplink_rate_bps.tolist() == [1.95e9] * 3


def test_shannon_rate_scales_with_bandwidth_and_layers() -> None:
    """Rate = layers x B x SE: two layers double the rate of one."""
    # Prepare
    ue = np.array([[150.0, 20.0]])
    bs = np.array([[0.0, 0.0]])
    # Execute
    one = compute_links(ue, bs, RadioConfig(spatial_layers=1))
    two = compute_links(ue, bs, RadioConfig(spatial_layers=2))
    # Assert
    assert two.rate_bps[0] == pytest.approx(2 * one.rate_bps[0])
    assert one.rate_bps[0] <= 100e6 * 4.4


def test_deterministic_los_rule_and_given_shadowing() -> None:
    """Without rng LOS is p_LOS >= 0.5; a given shadowing array lowers RSRP by its value."""
    # Prepare
    cfg = RadioConfig(scenario="UMa")
    ue = np.array([[15.0, 0.0, 1.5], [300.0, 0.0, 1.5]])
    bs = np.array([[0.0, 0.0, 25.0]])
    # Execute
    plain = compute_links(ue, bs, cfg)
    shadowed = compute_links(ue, bs, cfg, shadowing=np.array([[3.0], [-2.0]]))
    # Assert
    assert plain.los[:, 0].tolist() == [True, False]
    assert (plain.rsrp_dbm - shadowed.rsrp_dbm)[:, 0] == pytest.approx([3.0, -2.0])


def test_correlated_shadowing_follows_gudmundson() -> None:
    """Moving 20 m in UMa NLOS (d_corr 50 m) leaves correlation exp(-20/50) = 0.670; LOS state too (50 m)."""
    # Prepare
    rng = np.random.default_rng(1)
    cfg = RadioConfig(scenario="UMa")
    before = ShadowingField.draw(40_000, 1, rng)
    # Execute
    after = before.moved(np.full(40_000, 20.0), cfg, rng)
    sf_corr = np.corrcoef(before.sf_normal[:, 0], after.sf_normal[:, 0])[0, 1]
    los_corr = np.corrcoef(before.los_normal[:, 0], after.los_normal[:, 0])[0, 1]
    # Assert: standard error of a correlation near 0.67 with 40 000 pairs is about 0.003
    assert sf_corr == pytest.approx(np.exp(-20 / 50), abs=0.015)
    assert los_corr == pytest.approx(np.exp(-20 / 50), abs=0.015)
    assert np.std(after.sf_normal) == pytest.approx(1.0, abs=0.02)


def test_shadowing_field_draws_los_with_the_los_probability() -> None:
    """Phi(z) < p_LOS is LOS with probability p_LOS; Phi is accurate to 1e-7."""
    # Prepare
    rng = np.random.default_rng(2)
    field = ShadowingField.draw(50_000, 1, rng)
    # Execute
    share = field.los(np.full((50_000, 1), 0.3)).mean()
    # Assert
    assert share == pytest.approx(0.3, abs=0.01)
    assert standard_normal_cdf(np.array([0.0, 1.0, -1.96])) == pytest.approx(
        [0.5, 0.841345, 0.024998], abs=1e-6
    )


def test_rng_draws_los_reproducibly() -> None:
    """Same seed, same LOS draws; LOS share close to the mean LOS probability."""
    # Prepare
    cfg = RadioConfig(scenario="UMi")
    ue = np.random.default_rng(3).uniform(-300, 300, size=(2000, 2))
    bs = np.array([[0.0, 0.0]])
    # Execute
    first = compute_links(ue, bs, cfg, rng=np.random.default_rng(9))
    second = compute_links(ue, bs, cfg, rng=np.random.default_rng(9))
    # Assert
    assert np.array_equal(first.los, second.los)
    assert first.los.mean() == pytest.approx(first.los_probability.mean(), abs=0.03)


def test_config_is_validated_on_construction() -> None:
    """Unknown scenario or out-of-range values raise RadioConfigError (a ConfigError and a ValueError)."""
    # Prepare / Execute / Assert
    with pytest.raises(RadioConfigError, match="'Moon'"):
        RadioConfig(scenario="Moon")  # type: ignore[arg-type]
    with pytest.raises(ValueError, match="carrier_ghz"):
        RadioConfig(carrier_ghz=200.0)
    with pytest.raises(ConfigError, match="load_factor"):
        RadioConfig(load_factor=1.5)
    with pytest.raises(ValueError, match="ue_xyz"):
        compute_links(np.zeros((3, 4)), np.zeros((1, 3)) + 10, RadioConfig())
