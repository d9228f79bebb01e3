"""``beam-orchestration`` (paper §3.1.4): the 3 × 3 table, its metrics, overheads and determinism."""

from __future__ import annotations

import math
from dataclasses import replace

import numpy as np
import pytest

from twin.orchestration import TrainingPlan
from usecases.beam_orchestration import (
    COLUMNS,
    BeamOrchestrationConfig,
    CrowdConfig,
    RunConfig,
    compute,
)
from usecases.beam_orchestration_data import (
    AreaConfig,
    beam_weights,
    occupancy_class,
    prediction_accuracy,
    raw_records,
    simulate_positions,
)
from usecases.check import check_scenario


def _small(seed: int = 0) -> BeamOrchestrationConfig:
    """A quick world: fewer windows and users, two aggregation periods."""
    return BeamOrchestrationConfig(
        run=RunConfig(seed=seed),
        crowd=CrowdConfig(users=300, windows=60, train_windows=40),
        training=TrainingPlan(rounds=2, local_epochs=1, batch_size=256),
    )


@pytest.fixture(scope="module")
def small_result():  # noqa: ANN201 - the CalculationResult of the quick world
    return compute(_small())


def test_table_has_every_orchestration_and_setting_with_every_metric(small_result) -> None:  # noqa: ANN001
    """Nine rows (3 orchestrations × 10/50/100 % dynamic users), each with every metric, finite."""
    # Execute
    rows = small_result.rows
    # Assert
    cells = {(r["orchestration"], r["dynamic_user_share_pct"]) for r in rows}
    assert cells == {
        (o, s) for o in ("centralized", "distributed", "collaborative") for s in (10.0, 50.0, 100.0)
    }
    for row in rows:
        for column in COLUMNS:
            assert math.isfinite(float(row[column])), (row["row"], column)
        assert row["accuracy_lower_pct"] <= row["accuracy_pct"] <= row["accuracy_upper_pct"]
        assert row["accuracy_lower_pct"] >= 0 and row["accuracy_upper_pct"] <= 100


def test_distributed_transmits_nothing_and_centralized_uploads_most(small_result) -> None:  # noqa: ANN001
    """Distributed sends 0 bytes; centralized uploads more than collaborative, which downloads most."""
    for share in (10.0, 50.0, 100.0):
        # Prepare
        by = {r["orchestration"]: r for r in small_result.rows if r["dynamic_user_share_pct"] == share}
        # Assert
        assert by["distributed"]["upload_kb"] == 0 and by["distributed"]["download_kb"] == 0
        assert by["centralized"]["upload_kb"] > by["collaborative"]["upload_kb"] > 0
        assert by["collaborative"]["download_kb"] > by["centralized"]["download_kb"] > 0
        assert by["centralized"]["training_storage_kb"] > by["distributed"]["training_storage_kb"]
        assert by["centralized"]["compute_mflop"] > by["distributed"]["compute_mflop"]


def test_upload_counts_the_raw_records_and_model_bytes() -> None:
    """Centralized upload grows with the users reporting; collaborative upload with the periods."""
    # Prepare
    base = replace(_small(), run=RunConfig(dynamic_shares_pct=(50,)))
    more_users = replace(base, crowd=replace(base.crowd, users=600))
    more_rounds = replace(base, training=replace(base.training, rounds=4))
    # Execute
    rows = {name: {r["orchestration"]: r for r in compute(c).rows} for name, c in
            (("base", base), ("users", more_users), ("rounds", more_rounds))}  # fmt: skip
    # Assert
    assert rows["users"]["centralized"]["upload_kb"] == pytest.approx(
        2 * rows["base"]["centralized"]["upload_kb"]
    )
    assert rows["rounds"]["collaborative"]["upload_kb"] == pytest.approx(
        2 * rows["base"]["collaborative"]["upload_kb"], rel=1e-3
    )


def test_accuracy_is_the_share_of_grid_cells_predicted_right() -> None:
    """On a hand-made 3 × 3 grid with 2 wrong cells, accuracy is 7/9; the class follows the edges."""
    # Prepare
    true = np.array([[0, 1, 2], [3, 0, 0], [1, 1, 2]])
    predicted = np.array([[0, 1, 1], [3, 0, 2], [1, 1, 2]])
    # Execute
    accuracy = prediction_accuracy(predicted, true)
    # Assert
    assert accuracy == pytest.approx(7 / 9)
    assert prediction_accuracy(true, true) == 1.0
    assert occupancy_class([0, 1, 2, 3, 5, 6, 40], (1, 3, 6)).tolist() == [0, 1, 1, 2, 2, 3, 3]
    with pytest.raises(ValueError, match="same non-empty grid"):
        prediction_accuracy(predicted[:2], true)


def test_same_seed_same_table_other_seed_other_table() -> None:
    """Two runs with one seed give identical rows; another seed gives another crowd and table."""
    # Prepare
    config = replace(_small(), run=RunConfig(seed=7, dynamic_shares_pct=(100,)))
    # Execute
    first, second = compute(config).rows, compute(config).rows
    other = compute(replace(config, run=replace(config.run, seed=8))).rows
    # Assert
    assert first == second
    assert [r["accuracy_pct"] for r in first] != [r["accuracy_pct"] for r in other]


def test_dynamic_share_sets_how_many_users_move() -> None:
    """With 0 % dynamic users nobody strays from home; with 100 % crowds form (some cell gets crowded)."""
    # Prepare
    area, crowd = AreaConfig(), CrowdConfig(users=300, windows=60, train_windows=40)
    rng = np.random.default_rng
    # Execute
    still = simulate_positions(area, crowd, 0.0, rng(1))
    moving = simulate_positions(area, crowd, 1.0, rng(1))
    # Assert
    assert np.abs(still - still[0]).max() < 10 * crowd.static_jitter_m
    assert np.abs(moving - moving[0]).max() > 100.0


def test_beams_follow_the_expected_users_and_records_are_sixteen_bytes() -> None:
    """A base station puts most power on the beam covering the crowd; a report is 16 bytes a user."""
    # Prepare
    area = AreaConfig()
    expected = np.zeros(area.grid_shape)
    expected[2, 2] = 10.0  # south-west of site 0's centre (grid 4..3.5 → bs at 100 m, 100 m)
    # Execute
    weights = beam_weights(expected, area)
    positions = np.full((1, 5, 2), 10.0)
    records = raw_records(positions, 0, area)
    # Assert
    assert weights.sum(axis=1) == pytest.approx(np.ones(area.sites))
    assert weights[0].argmax() == 5  # 225°: beams every 45° from 0°
    assert weights[1] == pytest.approx(np.full(area.beams, 1 / area.beams))
    assert records[0].nbytes == 5 * 16 and sum(r.nbytes for r in records[1:]) == 0


@pytest.mark.slow
def test_default_scenario_passes_twin_check() -> None:
    """``twin check beam-orchestration`` finds no problem (it computes the default table)."""
    assert check_scenario("beam-orchestration") == []


def test_twin_run_seed_reaches_the_calculation(tmp_path) -> None:  # noqa: ANN001
    """``twin run beam-orchestration --seed 7`` computes with run.seed = 7 (an explicit --set wins)."""
    from twin.runner import RunOptions, run_calculation

    small = {
        "crowd.users": "300",
        "crowd.windows": "60",
        "crowd.train_windows": "40",
        "training.rounds": "2",
        "training.local_epochs": "1",
        "run.dynamic_shares_pct": "100",
    }
    # Execute
    by_flag = run_calculation(RunOptions("beam-orchestration", seed=7, overrides=small, out_dir=tmp_path))
    by_set = run_calculation(
        RunOptions("beam-orchestration", seed=3, overrides={**small, "run.seed": "7"}, out_dir=tmp_path)
    )
    # Assert
    assert "seed = 7" in (by_flag.run_dir / "config.toml").read_text()
    assert by_flag.result.rows == by_set.result.rows
