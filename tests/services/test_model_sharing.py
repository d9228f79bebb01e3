"""The model registry: sub-task split, matching rules, and the saving accounting."""

from __future__ import annotations

import pytest

from twin.services.model_sharing import (
    ModelCard,
    ModelRegistry,
    ModelRequest,
    SharingOutcome,
    SharingTargets,
    TrainingCost,
    model_sharing_report,
    with_fetch,
)

ARCH = ("mlp", 24, 48, 5)


def _card(
    model_id: str, *, task: str = "herd-health", region: str = "steppe", accuracy: float = 0.9
) -> ModelCard:
    return ModelCard(model_id, task, region, accuracy, 100_000, ARCH, "farm-a", 0.0, params={})


def _request(**changes: object) -> ModelRequest:
    fields: dict[str, object] = {
        "consumer": "farm-b",
        "tasks": ("herd-health", "pasture-state"),
        "regions": ("steppe",),
        "min_accuracy": 0.8,
        "max_size_bits": 200_000,
        "architecture": ARCH,
    }
    fields.update(changes)
    return ModelRequest(**fields)  # type: ignore[arg-type]


def test_a_request_is_split_into_sub_tasks_and_the_best_match_is_reused() -> None:
    """One match per task: the most accurate fitting model; an unknown task is left to train."""
    # Prepare
    registry = ModelRegistry()
    registry.publish(_card("a", accuracy=0.85))
    registry.publish(_card("b", accuracy=0.92))
    registry.publish(_card("c", accuracy=0.99, region="desert"))  # wrong region
    # Execute
    matches = registry.find(_request())
    # Assert
    assert [m.task for m in matches] == ["herd-health", "pasture-state"]
    assert matches[0].card is not None and matches[0].card.model_id == "b"
    assert matches[1].card is None and "train" in matches[1].reason


@pytest.mark.parametrize(
    "change",
    [
        {"min_accuracy": 0.95},
        {"max_size_bits": 50_000},
        {"architecture": ("mlp", 24, 64, 5)},
        {"regions": ("x",)},
    ],
)
def test_a_model_outside_the_request_is_not_reused(change: dict[str, object]) -> None:
    """Accuracy, size, architecture and region bounds each rule a model out."""
    registry = ModelRegistry()
    registry.publish(_card("a"))
    assert registry.find(_request(**change))[0].card is None


def test_a_global_model_fits_every_region() -> None:
    """A model published for the ``global`` region is offered to any consumer."""
    registry = ModelRegistry()
    registry.publish(_card("g", region="global"))
    assert registry.find(_request(regions=("valley",)))[0].card is not None


def test_fetching_costs_a_round_trip_and_the_download_and_savings_follow() -> None:
    """Reuse = fetch + fine-tune; the outcome reports what it saved against training from scratch."""
    # Prepare
    tuned = TrainingCost(1, 1e9, 2.0, 10.0, 0.9)
    scratch = TrainingCost(10, 1e10, 20.0, 100.0, 0.88)
    # Execute
    reuse = with_fetch(
        tuned, bits=1e6, rate_bps=1e6, round_trip_s=0.5, device_power_w=1.0, network_j_per_bit=1e-6
    )
    outcome = SharingOutcome("farm-b", "b", reuse, scratch)
    report = model_sharing_report("model-sharing", outcome, SharingTargets(), tls=False, authenticated=True)
    # Assert
    assert reuse.time_s == pytest.approx(2.0 + 0.5 + 1.0)
    assert reuse.energy_j == pytest.approx(10.0 + 1.5 + 1.0)
    assert outcome.time_saving_share == pytest.approx(1 - 3.5 / 20.0)
    assert outcome.accuracy_gain == pytest.approx(0.02)
    assert report.passed
