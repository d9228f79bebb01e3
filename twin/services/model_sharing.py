"""Model sharing (paper §2.4.5): a registry of trained models that consumers reuse instead of retraining.

Producers **publish** a trained model with its metadata (:class:`ModelCard`: task, region, accuracy,
size, architecture). A consumer **asks** with a :class:`ModelRequest`; a request naming several tasks
is **split into sub-tasks**, one per task, and each is matched on its own: same task and architecture,
a region the consumer accepts (or a ``global`` model), accuracy and size within the consumer's bounds;
the most accurate match wins (ties: the model id). A sub-task with no match is left to train.

The consumer then fine-tunes what it reused (or trains from scratch) and :class:`SharingOutcome`
compares the two ways — time, energy and accuracy — from their :class:`TrainingCost`: the SPEC §7
federated-training time and energy of the rounds each needed, plus, for reuse, fetching the model
(the link's round trip + bits ÷ rate; bits × J/bit). Pure logic: no I/O, no clock, no randomness;
the training itself is the caller's (real torch in ``usecases/unmanned_grazing.py``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any, Literal

from twin.config import check_positive, check_range
from twin.qoais import Indicator, ServiceReport, graded_indicators

GLOBAL_REGION = "global"
"""Region of a model meant for every region (paper §2.3.5.3: 为牧民提供全局模型共享)."""


@dataclass(frozen=True, slots=True, eq=False)
class ModelCard:
    """A model in the registry: what it does, where, how well, how big, and its parameters."""

    model_id: str
    task: str
    region: str
    accuracy: float
    size_bits: int
    architecture: tuple[Any, ...]
    producer: str
    training_flops: float
    params: Any = field(repr=False)
    """The model itself (tensors); the registry never looks inside."""

    def __post_init__(self) -> None:
        check_range("model card", "accuracy", self.accuracy, 0.0, 1.0)
        check_positive("model card", size_bits=self.size_bits)


@dataclass(frozen=True, slots=True)
class ModelRequest:
    """What a consumer needs: tasks, acceptable regions, accuracy and size bounds, architecture."""

    consumer: str
    tasks: tuple[str, ...]
    regions: tuple[str, ...]
    min_accuracy: float
    max_size_bits: int
    architecture: tuple[Any, ...]

    def __post_init__(self) -> None:
        if not self.tasks:
            raise ValueError("a model request names at least one task")
        check_range("model request", "min_accuracy", self.min_accuracy, 0.0, 1.0)
        check_positive("model request", max_size_bits=self.max_size_bits)


@dataclass(frozen=True, slots=True)
class Match:
    """The answer to one sub-task: the reused card, or none and why."""

    task: str
    card: ModelCard | None
    reason: str


class ModelRegistry:
    """Published models, every version kept; a new card with a known id replaces that version."""

    def __init__(self) -> None:
        self._cards: dict[str, ModelCard] = {}

    def publish(self, card: ModelCard) -> None:
        """Add (or replace) a model."""
        self._cards[card.model_id] = card

    @property
    def cards(self) -> list[ModelCard]:
        """Every model, sorted by id."""
        return [self._cards[k] for k in sorted(self._cards)]

    def find(self, request: ModelRequest) -> list[Match]:
        """One :class:`Match` per task of ``request`` (the request split into sub-tasks)."""
        return [self._match(request, task) for task in request.tasks]

    def _match(self, request: ModelRequest, task: str) -> Match:
        same_task = [c for c in self.cards if c.task == task]
        if not same_task:
            return Match(task, None, f"no model of task {task!r}: train it")
        fitting = [
            c
            for c in same_task
            if c.architecture == request.architecture
            and (c.region in request.regions or c.region == GLOBAL_REGION)
            and c.accuracy >= request.min_accuracy
            and c.size_bits <= request.max_size_bits
        ]
        if not fitting:
            return Match(task, None, f"{len(same_task)} model(s) of task {task!r}, none within the request")
        best = max(fitting, key=lambda c: (c.accuracy, c.model_id))
        return Match(task, best, f"reuse {best.model_id} ({best.region}, accuracy {best.accuracy:.3f})")


@dataclass(frozen=True, slots=True)
class TrainingCost:
    """What getting a usable model cost one way (fetch + fine-tune, or from scratch).

    ``training_s``/``training_j`` are the training's own time and energy, its model exchanges included
    (SPEC §7 federated training: ``(D_m/R_d + D_m/R_u + (O/F_UE)·N1·M_epoch)·M_g``); the fetch of a
    shared model comes on top.
    """

    rounds: int
    flops: float
    training_s: float
    training_j: float
    accuracy: float
    transfer_bits: float = 0.0
    transfer_s: float = 0.0
    transfer_j: float = 0.0

    @property
    def time_s(self) -> float:
        """Fetching the model, then training."""
        return self.transfer_s + self.training_s

    @property
    def energy_j(self) -> float:
        """Fetching the model, then training."""
        return self.transfer_j + self.training_j


def with_fetch(
    cost: TrainingCost,
    *,
    bits: float,
    rate_bps: float,
    round_trip_s: float,
    device_power_w: float,
    network_j_per_bit: float,
) -> TrainingCost:
    """``cost`` plus fetching a model of ``bits``: a request/answer round trip, then the download.

    The device's radio is on for the whole fetch; the network sends the bits at ``network_j_per_bit``.
    """
    if rate_bps <= 0:
        return TrainingCost(
            cost.rounds, cost.flops, cost.training_s, cost.training_j, cost.accuracy, bits, math.inf, math.inf
        )
    seconds = round_trip_s + bits / rate_bps
    joules = device_power_w * seconds + network_j_per_bit * bits
    return TrainingCost(
        cost.rounds, cost.flops, cost.training_s, cost.training_j, cost.accuracy, bits, seconds, joules
    )


@dataclass(frozen=True, slots=True)
class SharingOutcome:
    """A consumer's reuse of a shared model next to training from scratch."""

    consumer: str
    reused_model_id: str | None
    reuse: TrainingCost
    scratch: TrainingCost

    @property
    def time_saved_s(self) -> float:
        """Scratch time minus reuse time."""
        return self.scratch.time_s - self.reuse.time_s

    @property
    def energy_saved_j(self) -> float:
        """Scratch energy minus reuse energy."""
        return self.scratch.energy_j - self.reuse.energy_j

    @property
    def accuracy_gain(self) -> float:
        """Reuse accuracy minus scratch accuracy (each where it stopped)."""
        return self.reuse.accuracy - self.scratch.accuracy

    @property
    def time_saving_share(self) -> float:
        """Share of the scratch time saved."""
        return self.time_saved_s / self.scratch.time_s if self.scratch.time_s > 0 else 0.0

    @property
    def energy_saving_share(self) -> float:
        """Share of the scratch energy saved."""
        return self.energy_saved_j / self.scratch.energy_j if self.scratch.energy_j > 0 else 0.0


@dataclass(frozen=True, slots=True)
class SharingTargets:
    """QoAIS targets of model sharing (``--set sharing_qoais.field=value``)."""

    accuracy: float = 0.85
    """Accuracy the consumer's model must reach on its own data, in [0, 1]."""
    accuracy_loss_max: float = 0.02
    """Largest accuracy the reused model may lose against training from scratch."""
    time_saving_min: float = 0.5
    """Smallest share of the from-scratch time that reuse must save."""
    energy_saving_min: float = 0.5
    """Smallest share of the from-scratch energy that reuse must save."""
    privacy_level: int = 4
    """Target privacy level, 1 (low) … 5 (high)."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high)."""
    autonomy: Literal["full", "partial", "human"] = "partial"
    """Autonomy the service must offer."""

    def __post_init__(self) -> None:
        check_range("sharing_qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_range("sharing_qoais", "accuracy_loss_max", self.accuracy_loss_max, 0.0, 1.0)
        check_range("sharing_qoais", "time_saving_min", self.time_saving_min, -1e9, 1.0)
        check_range("sharing_qoais", "energy_saving_min", self.energy_saving_min, -1e9, 1.0)
        check_range("sharing_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("sharing_qoais", "security_level", self.security_level, 1, 5)


def model_sharing_report(
    service: str, outcome: SharingOutcome | None, targets: SharingTargets, *, tls: bool, authenticated: bool
) -> ServiceReport:
    """QoAIS of a model-sharing service from the consumer's outcome (Table 3-1 dimensions)."""
    if outcome is None:
        return ServiceReport(service, "model sharing", (), ("no consumer has asked the registry yet",))
    reused = outcome.reused_model_id or "nothing (no match: trained from scratch)"
    indicators = (
        Indicator(
            "performance",
            "consumer_accuracy",
            outcome.reuse.accuracy,
            targets.accuracy,
            "",
            "min",
            f"reused {reused}, fine-tuned {outcome.reuse.rounds} round(s) on the consumer's devices",
        ),
        Indicator(
            "performance",
            "accuracy_vs_scratch",
            outcome.accuracy_gain,
            -targets.accuracy_loss_max,
            "",
            "min",
            f"from scratch: {outcome.scratch.accuracy:.3f} after {outcome.scratch.rounds} round(s)",
        ),
        Indicator(
            "performance",
            "time_saving_share",
            outcome.time_saving_share,
            targets.time_saving_min,
            "",
            "min",
            f"{outcome.reuse.time_s:.3g} s (fetch {outcome.reuse.transfer_s:.3g} s) vs "
            f"{outcome.scratch.time_s:.3g} s from scratch",
        ),
        Indicator(
            "overhead",
            "energy_saving_share",
            outcome.energy_saving_share,
            targets.energy_saving_min,
            "",
            "min",
            f"{outcome.reuse.energy_j:.3g} J (fetch {outcome.reuse.transfer_j:.3g} J) vs "
            f"{outcome.scratch.energy_j:.3g} J from scratch",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=False,
            privacy_detail="only the trained model is shared; no herd data leaves either farm",
        ),
    )
    notes = (
        f"consumer {outcome.consumer}: saved {outcome.time_saved_s:.3g} s, {outcome.energy_saved_j:.3g} J, "
        f"accuracy {outcome.accuracy_gain:+.3f} against training from scratch",
        f"model fetched: {outcome.reuse.transfer_bits / 8e3:.1f} kB",
    )
    return ServiceReport(service, "model sharing", indicators, notes)
