"""Model generation (paper §2.4.3): a bounded search returns the cheapest candidate meeting the target."""

from __future__ import annotations

import math

import numpy as np
import torch

from twin.kpi import ComputeProfile
from twin.learning.models import MLP, training_flops_per_sample
from twin.services.model_generation import GenerationConfig, GenerationTargets, generate_model
from usecases import virtual_classroom_data

DEVICE = ComputeProfile(flops_per_s=1e9, power_w=2.0)
EDGE = ComputeProfile(flops_per_s=1e12, power_w=300.0)
SMALL = GenerationConfig(hidden_sizes=(2, 4, 16, 64), learning_rates=(0.05, 0.3), epochs=8)


def _pilot() -> tuple[torch.Tensor, torch.Tensor]:
    rng = np.random.default_rng(5)
    data = virtual_classroom_data.generate(
        rng,
        ["a"],
        {"a": 0},
        [0.0],
        samples_min=10,
        samples_max=10,
        dirichlet_alpha=1.0,
        test_learners=1,
        test_samples_per_learner=10,
        pilot_learners=12,
        pilot_samples_per_learner=50,
    )
    return data.pilot_x, data.pilot_y


def _search(targets: GenerationTargets, config: GenerationConfig = SMALL):  # type: ignore[no-untyped-def]
    x, y = _pilot()
    return generate_model(
        x,
        y,
        4,
        config=config,
        targets=targets,
        device=DEVICE,
        edge=EDGE,
        generator=torch.Generator().manual_seed(0),
    )


def test_search_returns_the_cheapest_candidate_meeting_the_target() -> None:
    """Against an exhaustive search (every candidate trained): the chosen one meets the target and no
    cheaper candidate does."""
    # Prepare
    targets = GenerationTargets(accuracy=0.6)
    # Execute
    result = _search(targets)
    everything = _search(GenerationTargets(accuracy=1.0))  # nothing meets it: every candidate is trained
    # Assert
    chosen = result.chosen
    assert chosen is not None and chosen.accuracy >= targets.accuracy
    accuracy = {(c.hidden, c.lr): c.accuracy for c in everything.candidates}
    assert all(c.trained for c in everything.candidates)
    assert accuracy[(chosen.hidden, chosen.lr)] == chosen.accuracy  # same seeds, same training
    cheaper = [c for c in everything.candidates if c.energy_per_inference_j < chosen.energy_per_inference_j]
    assert all(accuracy[(c.hidden, c.lr)] < targets.accuracy for c in cheaper)
    assert result.trained < len(result.candidates)  # it stopped early


def test_search_cost_is_every_trained_candidate() -> None:
    """The search's FLOPs are the training FLOPs of the candidates it trained; time and energy follow."""
    result = _search(GenerationTargets(accuracy=0.6))
    x, _ = _pilot()
    n_fit = x.shape[0] - round(SMALL.validation_share * x.shape[0])
    expected = sum(
        training_flops_per_sample(MLP(x.shape[1], c.hidden, 4), x.shape[1]) * n_fit * SMALL.epochs
        for c in result.candidates
        if c.trained
    )
    assert result.trained >= 1
    assert math.isclose(result.search_flops, expected)
    assert math.isclose(result.search_time_s, expected / EDGE.flops_per_s)
    assert math.isclose(result.search_energy_j, expected / EDGE.efficiency_flops_per_j)


def test_latency_and_energy_targets_rule_out_candidates_without_training() -> None:
    """A candidate too slow or too costly on the device is never trained; the search is bounded."""
    tight = GenerationTargets(accuracy=1.0, energy_per_inference_j=5e-6)
    result = _search(tight)
    ruled = [c for c in result.candidates if c.status == "ruled-out"]
    assert ruled and all(c.energy_per_inference_j > 5e-6 for c in ruled)
    assert result.chosen is None
    bounded = _search(tight, GenerationConfig(hidden_sizes=(2, 4), learning_rates=(0.1,), max_candidates=1))
    assert bounded.trained == 1
