"""Tests of the SPEC §7 KPI formulas (paper 3.2.3)."""

from collections.abc import Callable

import numpy as np
import pytest

from twin.errors import TwinError
from twin.kpi import (
    ComputeProfile,
    KpiInputError,
    LinkProfile,
    SplitPoint,
    SplitProfile,
    area_compute_capacity_bps_per_km2,
    area_traffic_capacity_bps_per_km2,
    centralized_training_cost,
    choose_split,
    co2_kg,
    comm_efficiency_bits_per_j,
    compute_efficiency_flops_per_j,
    coverage_share,
    data_completeness,
    federated_training_cost,
    lossless_mask,
    mutual_information_redundancy_bits,
    near_duplicate_share,
    service_accuracy,
    service_coverage,
    service_density_bps_per_km2,
    split_inference_cost,
    split_objective,
    transmission_latency_s,
)

UE = ComputeProfile(flops_per_s=1.4e12, power_w=30.0)
NET = ComputeProfile(flops_per_s=19.5e12, power_w=400.0)
LINK = LinkProfile(rate_bps=1.95e9, power_w=636.0)


def test_efficiencies_are_speed_over_power() -> None:
    """EE_comp = F / P and EE_comm = R / P (Table 3-10: 3.07 Mb/J, Table 3-11: 48.75 and 46.67 GFLOP/J)."""
    # Prepare
    rates = np.array([1.95e9, 3.9e9])
    # Execute
    comm = comm_efficiency_bits_per_j(rates, 636.0)
    # Assert
    assert comm == pytest.approx([1.95e9 / 636, 3.9e9 / 636])
    assert comm[0] / 1e6 == pytest.approx(3.07, abs=0.005)
    assert NET.efficiency_flops_per_j / 1e9 == pytest.approx(48.75)
    assert UE.efficiency_flops_per_j / 1e9 == pytest.approx(46.67, abs=0.005)
    assert compute_efficiency_flops_per_j(1.4e12, 30.0) == pytest.approx(1.4e12 / 30)


@pytest.mark.parametrize(
    ("call", "named"),
    [
        (lambda: ComputeProfile(flops_per_s=0.0, power_w=30.0), "flops_per_s"),
        (lambda: LinkProfile(rate_bps=-1.0, power_w=636.0), "rate_bps"),
        (lambda: transmission_latency_s(1e6, -5.0), "rate_bps"),
        (lambda: service_accuracy(1.2, 1.0), "model_accuracy"),
        (lambda: co2_kg(-1.0, 0.7), "energy_j"),
    ],
)
def test_bad_inputs_raise_value_error_naming_the_value(call: Callable[[], object], named: str) -> None:
    """Negative rates, zero FLOP/s, accuracy above 1 … raise a ValueError (and TwinError) naming the input."""
    # Prepare / Execute
    with pytest.raises(ValueError, match=named) as caught:
        call()
    # Assert
    assert isinstance(caught.value, TwinError)
    assert isinstance(caught.value, KpiInputError)


def test_service_accuracy_is_model_accuracy_times_reliability() -> None:
    """a = a_m * r_c, element-wise over devices."""
    # Prepare
    reliability = np.array([1.0, 0.9, 0.0])
    # Execute
    accuracy = service_accuracy(0.7159, reliability)
    # Assert
    assert accuracy == pytest.approx([0.7159, 0.7159 * 0.9, 0.0])


def test_split_inference_cost_matches_hand_computation() -> None:
    """T = O_UE/F_UE + D/R + O_NET/F_NET and E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET, EE = D0/E."""
    # Prepare: one split point, 10 GFLOPs on the device, 8 Mb sent, 20 GFLOPs in the network
    profile = SplitProfile(points=(SplitPoint(10e9, 8e6, 20e9),), raw_input_bits=4e6)
    # Execute
    cost = split_inference_cost(profile, link=LINK, ue=UE, net=NET)
    # Assert
    expected_t = 10e9 / 1.4e12 + 8e6 / 1.95e9 + 20e9 / 19.5e12
    expected_e = 10e9 / (1.4e12 / 30) + 8e6 / (1.95e9 / 636) + 20e9 / (19.5e12 / 400)
    assert cost.total_latency_s[0] == pytest.approx(expected_t)
    assert cost.total_energy_j[0] == pytest.approx(expected_e)
    assert cost.efficiency_bits_per_j[0] == pytest.approx(4e6 / expected_e)


def test_zero_rate_makes_sending_infinite_and_local_only_free_of_radio() -> None:
    """With R = 0 a split that sends data costs inf, the all-on-device split costs no radio at all."""
    # Prepare
    profile = SplitProfile(points=(SplitPoint(0, 4e6, 30e9), SplitPoint(30e9, 0, 0)), raw_input_bits=4e6)
    dead_link = LinkProfile(rate_bps=0.0, power_w=636.0)
    # Execute
    cost = split_inference_cost(profile, link=dead_link, ue=UE, net=NET)
    # Assert
    assert np.isinf(cost.tx_latency_s[0]) and np.isinf(cost.tx_energy_j[0])
    assert cost.tx_latency_s[1] == 0.0 and cost.tx_energy_j[1] == 0.0
    assert choose_split(cost, "latency") == 1
    assert choose_split(cost, "energy") == 1


def test_weighted_objective_interpolates_between_latency_and_energy() -> None:
    """Weight 1 picks the fastest split, weight 0 the most frugal one; values are normalised by their best."""
    # Prepare: split 0 is fast but energy-hungry, split 1 slow but frugal
    profile = SplitProfile(points=(SplitPoint(0, 4.8e6, 31e9), SplitPoint(31e9, 0, 0)), raw_input_bits=4.8e6)
    cost = split_inference_cost(profile, link=LINK, ue=UE, net=NET)
    # Execute
    fastest = choose_split(cost, "weighted", latency_weight=1.0)
    frugal = choose_split(cost, "weighted", latency_weight=0.0)
    values = split_objective(cost, "weighted", latency_weight=1.0)
    # Assert
    assert (fastest, frugal) == (0, 1)
    assert values.min() == pytest.approx(1.0)
    with pytest.raises(ValueError, match="objective"):
        split_objective(cost, "cheapest")  # type: ignore[arg-type]


def test_co2_converts_joules_to_kwh_times_ecr() -> None:
    """CO2eq = E / 3.6e6 * ECR: 3.6 MJ at 0.702 kg/kWh is 0.702 kg."""
    # Prepare / Execute
    co2 = co2_kg(np.array([3.6e6, 7.2e6]), 0.702)
    # Assert
    assert co2 == pytest.approx([0.702, 1.404])


def test_coverage_counts_cells_meeting_rate_and_accuracy() -> None:
    """Coverage = Area(R >= R0 and a >= a0) / total area, with optional cell areas."""
    # Prepare: 4 cells; only cells 0 and 3 meet both targets
    rate = np.array([[100e6, 5e6], [100e6, 200e6]])
    accuracy = np.array([[0.9, 0.9], [0.5, 0.95]])
    areas = np.array([[1.0, 1.0], [1.0, 3.0]])
    # Execute
    equal = service_coverage(rate, accuracy, min_rate_bps=10e6, min_accuracy=0.8)
    weighted = service_coverage(rate, accuracy, min_rate_bps=10e6, min_accuracy=0.8, cell_area_m2=areas)
    # Assert
    assert equal == pytest.approx(0.5)
    assert weighted == pytest.approx(4 / 6)
    assert coverage_share([True, False, False, False]) == pytest.approx(0.25)


def test_service_density_is_min_of_traffic_and_compute_capacity() -> None:
    """C_comm = rho W SE, C_comp = rho F / O * D0, C_area = min of both."""
    # Prepare
    c_comm = area_traffic_capacity_bps_per_km2(10.0, 100e6, 5.0)
    c_comp = area_compute_capacity_bps_per_km2(2.0, 19.5e12, 31e9, 4.8e6)
    # Execute
    density = service_density_bps_per_km2(c_comm, c_comp)
    # Assert
    assert c_comm == pytest.approx(10 * 100e6 * 5)
    assert c_comp == pytest.approx(2 * 19.5e12 / 31e9 * 4.8e6)
    assert density == pytest.approx(min(c_comm, c_comp))


def test_centralized_training_formulas() -> None:
    """T = D N1/R + O/F_NET N M; E = D N/EE_comm + O/EE_NET N M; EE = D0 N / E (3.2.3.2)."""
    # Prepare
    d, n1, n, m, o = 4.8e6, 1000.0, 100_000.0, 3.0, 93e9
    # Execute
    cost = centralized_training_cost(
        sample_bits=d,
        samples_per_user=n1,
        total_samples=n,
        epochs=m,
        train_flops_per_sample=o,
        link=LINK,
        net=NET,
    )
    # Assert
    assert cost.latency_s == pytest.approx(d * n1 / 1.95e9 + o / 19.5e12 * n * m)
    energy = d * n / (1.95e9 / 636) + o / (19.5e12 / 400) * n * m
    assert cost.energy_j == pytest.approx(energy)
    assert cost.efficiency_bits_per_j == pytest.approx(d * n / energy)


def test_federated_training_formulas() -> None:
    """T = (D_m/R_d + D_m/R_u + O/F_UE N1 M) M_g; E = (K D_m/EE_comm + O/EE_UE N M) M_g (3.2.3.2)."""
    # Prepare
    dm, o, n1, k, rounds = 138e6 * 32, 93e9, 500.0, 10, 5
    # Execute
    cost = federated_training_cost(
        model_bits=dm,
        train_flops_per_sample=o,
        samples_per_user=n1,
        samples_per_round=n1 * k,
        local_epochs=2.0,
        rounds=rounds,
        users_per_round=k,
        downlink_rate_bps=2e9,
        uplink_rate_bps=0.5e9,
        ue=UE,
        comm_efficiency_bits_per_j=LINK.efficiency_bits_per_j,
        raw_input_bits=4.8e6,
    )
    both_ways = federated_training_cost(
        model_bits=dm,
        train_flops_per_sample=o,
        samples_per_user=n1,
        samples_per_round=n1 * k,
        local_epochs=2.0,
        rounds=rounds,
        users_per_round=k,
        downlink_rate_bps=2e9,
        uplink_rate_bps=0.5e9,
        ue=UE,
        comm_efficiency_bits_per_j=LINK.efficiency_bits_per_j,
        raw_input_bits=4.8e6,
        model_transfers_per_user=2,
    )
    # Assert
    assert cost.latency_s == pytest.approx((dm / 2e9 + dm / 0.5e9 + o / 1.4e12 * n1 * 2) * rounds)
    comm = k * dm / (1.95e9 / 636)
    comp = o / (1.4e12 / 30) * n1 * k * 2
    assert cost.energy_j == pytest.approx((comm + comp) * rounds)
    assert both_ways.energy_j == pytest.approx((2 * comm + comp) * rounds)
    assert cost.compute_efficiency_bits_per_j == pytest.approx(4.8e6 / (o / (1.4e12 / 30)))


def test_completeness_and_lossless_mask() -> None:
    """Completeness = N_lossless / N_total; a sample with a NaN or inf is not lossless."""
    # Prepare
    samples = np.array([[1.0, 2.0], [np.nan, 1.0], [3.0, np.inf], [0.0, 0.0]])
    # Execute
    mask = lossless_mask(samples)
    # Assert
    assert mask.tolist() == [True, False, False, True]
    assert data_completeness(int(mask.sum()), len(mask)) == pytest.approx(0.5)
    with pytest.raises(ValueError, match="n_lossless"):
        data_completeness(5, 4)


def test_mutual_information_is_high_for_duplicates_and_low_for_independent_samples() -> None:
    """Identical samples share H(x) bits; independent ones share about the estimator's bias only."""
    # Prepare
    rng = np.random.default_rng(7)
    base = rng.uniform(0, 1, size=(1, 4096))
    duplicates = np.repeat(base, 3, axis=0)
    independent = rng.uniform(0, 1, size=(3, 4096))
    # Execute
    dup_bits = mutual_information_redundancy_bits(duplicates, n_bins=8)
    ind_bits = mutual_information_redundancy_bits(independent, n_bins=8)
    # Assert: 8 equiprobable bins carry log2(8) = 3 bits; bias ~ 49 / (2 * 4096 * ln 2) ~ 0.009 bit
    assert dup_bits == pytest.approx(3.0, abs=0.01)
    assert ind_bits < 0.03


def test_near_duplicate_share_uses_cosine_at_least_threshold() -> None:
    """A sample counts as redundant if another sample has cosine >= eps (SPEC's deliberate deviation)."""
    # Prepare: rows 0 and 1 are parallel, row 2 orthogonal to both
    samples = np.array([[1.0, 0.0], [2.0, 0.0], [0.0, 1.0]])
    # Execute
    share = near_duplicate_share(samples, threshold=0.99, chunk_rows=2)
    # Assert
    assert share == pytest.approx(2 / 3)
    with pytest.raises(ValueError, match="all-zero"):
        near_duplicate_share(np.zeros((2, 3)))
