"""industrial-robots: InF sub-scenario, CNN in the cohort path, split points, clusters, latency figures."""

from __future__ import annotations

from dataclasses import replace

import numpy as np
import pandas as pd
import pytest
import torch

from agents.clustered import ClusterNetworkAgent
from broker.bus import LocalBus
from broker.model_exchange import ReceivedModel
from twin.config import apply_overrides
from twin.errors import ConfigError
from twin.kpi import ComputeProfile, LinkProfile
from twin.learning.cnn import IMAGE_PIXELS, SmallCNN, init_cnn_params, run_blocks
from twin.learning.cohort import LocalData, make_schedule, train_cohort, train_loop
from twin.runner import RunOptions, run_scenario
from twin.services.latency import harq_retransmissions, latency_stats
from twin.services.split_inference import choose_split_points, split_costs
from twin.split_profile import best_split, profile_split_points
from usecases.industrial_robots import FactoryHall, IndustrialRobotsConfig, build, check_hall, inf_subscenario
from usecases.registry import BuildContext

SMALL = {"devices.count": "6", "devices.test_samples": "80", "devices.samples_max": "80"}


def test_hall_clutter_picks_the_inf_subscenario() -> None:
    """Dense clutter under ceiling cells is InF-DH; sparse is S, cells at or below the clutter are L."""
    assert inf_subscenario(0.6, 4.0, 8.0) == "InF-DH"
    assert inf_subscenario(0.2, 4.0, 8.0) == "InF-SH"
    assert inf_subscenario(0.6, 4.0, 1.5) == "InF-DL"
    assert inf_subscenario(0.39, 6.0, 6.0) == "InF-SL"
    assert check_hall(IndustrialRobotsConfig()) == "InF-DH"


def test_radio_that_disagrees_with_the_hall_is_refused() -> None:
    """A sparse hall with the dense radio default is a ConfigError naming what to set."""
    config = replace(IndustrialRobotsConfig(), hall=FactoryHall(clutter_density=0.2))
    with pytest.raises(ConfigError, match="radio.scenario=InF-SH"):
        check_hall(config)


def test_cnn_trains_in_the_vmap_cohort_like_the_loop() -> None:
    """The CNN's cohort training (vmap over devices) gives the per-device autograd loop's parameters."""
    # Prepare
    net = SmallCNN(4)
    params = init_cnn_params(net, torch.Generator().manual_seed(0))
    g = torch.Generator().manual_seed(1)
    sizes = [12, 20, 17]
    data = [
        LocalData(torch.rand(n, IMAGE_PIXELS, generator=g), torch.randint(0, 4, (n,), generator=g))
        for n in sizes
    ]
    schedule = make_schedule(sizes, epochs=1, batch_size=8, rngs=[np.random.default_rng(i) for i in range(3)])
    # Execute
    cohort = train_cohort(net, params, data, schedule, lr=0.1)
    loop = train_loop(net, params, data, schedule, lr=0.1)
    # Assert
    for a, b in zip(cohort, loop, strict=True):
        for name in params:
            torch.testing.assert_close(a[name], b[name], rtol=1e-5, atol=1e-6)
        assert not torch.equal(a["conv1.1.weight"], params["conv1.1.weight"])


def test_split_profile_of_the_cnn_and_head_tail_equal_the_whole() -> None:
    """The split profiler sees the CNN's 5 blocks; head then tail at any k equals the whole forward."""
    net = SmallCNN(4)
    params = init_cnn_params(net, torch.Generator().manual_seed(0))
    profile = profile_split_points(net, torch.zeros(1, IMAGE_PIXELS), input_bits_per_value=8)
    assert len(profile.points) == 6
    assert profile.points[0].tx_bits == IMAGE_PIXELS * 8 and profile.points[-1].net_flops == 0
    x = torch.rand(5, IMAGE_PIXELS)
    whole = run_blocks(net, params, x, 0, 5)
    for k in range(6):
        torch.testing.assert_close(run_blocks(net, params, run_blocks(net, params, x, 0, k), k, 5), whole)


def _costs(rate_bps: float, load: float = 0.0) -> tuple[np.ndarray, np.ndarray]:
    profile = profile_split_points(SmallCNN(4), torch.zeros(1, IMAGE_PIXELS), input_bits_per_value=8)
    return split_costs(
        profile,
        uplink_bps=[rate_bps],
        ue_flops_per_s=[0.2e9],
        ue_power_w=[2.0],
        radio_power_w=0.2,
        edge_flops_per_s=[2e12 * (1 - load)],
        edge_efficiency_flops_per_j=2e12 / 60,
    )


def test_split_point_moves_when_the_link_changes() -> None:
    """A good uplink offloads the raw frame (k = 0); a poor one keeps the CNN on the robot (k = L)."""
    good = choose_split_points(*_costs(50e6), budget_s=5e-3, policy="local-first")
    poor = choose_split_points(*_costs(0.2e6), budget_s=5e-3, policy="local-first")
    assert good[0] == 0
    assert poor[0] == 5


def test_raw_frames_stay_on_the_robot_under_the_privacy_constraint() -> None:
    """With ``min_split_point=1`` a good uplink no longer offloads the raw frame: the robot runs block 1."""
    # Prepare
    latency, energy = _costs(50e6)
    # Execute
    free = choose_split_points(latency, energy, budget_s=5e-3, policy="local-first")
    private = choose_split_points(latency, energy, budget_s=5e-3, policy="local-first", min_split_point=1)
    # Assert
    assert free[0] == 0
    assert 1 <= private[0] < 5
    assert latency[0, private[0]] > latency[0, 0]  # the privacy has a latency cost
    with pytest.raises(ValueError, match="min_split_point"):
        choose_split_points(latency, energy, budget_s=5e-3, min_split_point=6)


def test_split_costs_match_the_table_3_13_method() -> None:
    """Vectorised costs equal twin.split_profile.best_split's T and E for the same link and compute."""
    profile = profile_split_points(SmallCNN(4), torch.zeros(1, IMAGE_PIXELS), input_bits_per_value=8)
    latency, energy = _costs(5e6)
    choice = best_split(
        profile, LinkProfile(5e6, 0.2), ComputeProfile(0.2e9, 2.0), ComputeProfile(2e12, 60.0)
    )
    np.testing.assert_allclose(latency[0], choice.cost.total_latency_s, rtol=1e-12)
    np.testing.assert_allclose(energy[0], choice.cost.total_energy_j, rtol=1e-12)
    assert choose_split_points(latency, energy, budget_s=1.0, policy="optimise")[0] == choice.split_point


def test_latency_stats_and_harq() -> None:
    """p50/p99/jitter/on-time of known latencies; a perfect link never retransmits, a poor one does."""
    stats = latency_stats(np.arange(1, 101) * 1e-3, budget_s=0.05)
    assert stats.p50_s == pytest.approx(0.05) and stats.p99_s == pytest.approx(0.099)
    assert stats.jitter_s == pytest.approx(0.049) and stats.on_time_share == pytest.approx(0.5)
    rng = np.random.default_rng(0)
    assert harq_retransmissions(rng, np.ones(100), 4).sum() == 0
    poor = harq_retransmissions(rng, np.full(1000, 0.9), 4)
    assert poor.max() <= 3 and 0 < poor.mean() < 3


@pytest.fixture(scope="module")
def small_run(tmp_path_factory: pytest.TempPathFactory) -> object:
    out = tmp_path_factory.mktemp("ir")
    return run_scenario(
        RunOptions("industrial-robots", seed=5, overrides=SMALL, broker="local", out_dir=out, rounds=2)
    )


def test_each_cluster_has_its_own_rounds_kpis_and_report(small_run: object) -> None:
    """Three clustered services, each with its rounds as KPI rows and a QoAIS report; one split service."""
    result = small_run
    assert result.status == "finished", result.error  # type: ignore[attr-defined]
    kpis: pd.DataFrame = result.kpis  # type: ignore[attr-defined]
    assert sorted(kpis["service"].unique()) == ["defects-step-1", "defects-step-2", "defects-step-3"]
    assert (kpis.groupby("service")["round"].max() == 2).all()
    services = [r.service for r in result.qoais]  # type: ignore[attr-defined]
    assert services == ["defects-step-1", "defects-step-2", "defects-step-3", "control-inference"]
    names = {i.name for i in result.qoais[-1].indicators}  # type: ignore[attr-defined]
    assert {"response_latency_p99", "latency_jitter_p99_minus_p50"} <= names
    requests = pd.read_parquet(result.run_dir / "requests.parquet")  # type: ignore[attr-defined]
    assert {"split_point", "latency_s", "edge_load"} <= set(requests.columns)
    assert (requests["split_point"] >= 1).all()  # default privacy constraint: raw frames never leave


def test_updates_never_cross_clusters() -> None:
    """Each cluster selects only among its members, and refuses an update from another cluster's robot."""
    # Prepare
    model = build(apply_overrides(IndustrialRobotsConfig(), SMALL), BuildContext("run-x", 3, LocalBus(), 1))
    agents = [n for n in model.networks.values() if isinstance(n, ClusterNetworkAgent)]
    members = [set(a.members) for a in agents]
    first, second = agents[0], agents[1]
    # Execute
    first.start_round()  # publishes plan and model; the in-process host trains and uploads
    state = first.round
    intruder = sorted(second.members)[0]
    first.on_model(ReceivedModel("update", first.service, 1, intruder, None))  # type: ignore[arg-type]
    # Assert
    assert len(agents) == 3 and all(members)
    assert not (members[0] & members[1]) and not (members[1] & members[2]) and not (members[0] & members[2])
    for agent in agents:
        assert {d.agent_id for d in agent.candidates()} == set(agent.members)
    assert state is not None and set(state.updates) <= set(first.members) and state.updates
    assert intruder not in state.updates
    assert model.bus.stats.rejected["unexpected"] == 1
