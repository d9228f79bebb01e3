"""Three ways to run a predictor over several network sites: centralized, distributed, collaborative.

Paper §3.1.4 (Figure 3-3) compares three AI-workflow orchestrations for a multi-site prediction task:

- **centralized** — every site uploads its raw data; one cloud model is trained on all of it and its
  predictions are sent back to the sites;
- **distributed** — every site (edge) trains its own model on its own data; nothing is transmitted;
- **collaborative** — edge models trained locally are uploaded each period, the cloud averages them
  (FedAvg) and sends the aggregate back (cloud feedback).

This module trains the models for real (torch, the project's :class:`~twin.learning.models.MLP`, plain
SGD through :func:`~twin.learning.cohort.train_cohort`) and books what each orchestration costs where:
bytes up and down (raw data bytes as given by the caller, model bytes as the project's codec encodes
them), training-data storage, model size and compute (analytic FLOPs). A scenario supplies the
per-site datasets (what each site sees) and the cloud's dataset (what the cloud sees once all raw data
has been uploaded), and accounts its own inference traffic with :class:`Overheads`.

Sample weights scale each sample's loss (``Σ wᵢ·CEᵢ / Σ wᵢ`` per minibatch), so a scenario can put its
optimisation targets into the loss (the paper's objective match).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Literal

import torch

from broker.codec import WireDtype, encode_model
from twin.config import check_positive
from twin.learning.aggregation import ClientUpdate, weighted_average
from twin.learning.cohort import LocalData, Params, Schedule, make_schedule, train_cohort
from twin.learning.models import MLP, init_params, param_count, training_flops_per_sample
from twin.rng import SeedStreams

Orchestration = Literal["centralized", "distributed", "collaborative"]
ORCHESTRATIONS: tuple[Orchestration, ...] = ("centralized", "distributed", "collaborative")


@dataclass(frozen=True, slots=True)
class TrainingPlan:
    """How the predictors are trained (the same budget of passes for every orchestration).

    Centralized and distributed models make ``rounds × local_epochs`` passes over their data; the
    collaborative edges make ``local_epochs`` passes per round and are averaged after each round.
    """

    hidden: int = 32
    """Width of the predictor's two hidden layers."""
    rounds: int = 5
    """Aggregation periods of the collaborative orchestration."""
    local_epochs: int = 2
    """Passes over its data a model makes per period."""
    batch_size: int = 128
    """Minibatch size."""
    learning_rate: float = 0.1
    """SGD step size."""
    wire_dtype: WireDtype = "fp32"
    """Precision of models on the wire (and in storage)."""

    def __post_init__(self) -> None:
        check_positive(
            "training",
            hidden=self.hidden,
            rounds=self.rounds,
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            learning_rate=self.learning_rate,
        )


@dataclass(frozen=True, slots=True)
class WeightedData:
    """Samples of one site (or of the cloud): features, class labels and per-sample loss weights."""

    x: torch.Tensor  # (n, features) float32
    y: torch.Tensor  # (n,) int64
    weight: torch.Tensor  # (n,) float32, > 0

    def __post_init__(self) -> None:
        n = self.x.shape[0]
        if self.y.shape != (n,) or self.weight.shape != (n,):
            raise ValueError(
                f"x has {n} rows but y is {tuple(self.y.shape)}, weight {tuple(self.weight.shape)}"
            )


@dataclass(slots=True)
class Overheads:
    """What an orchestration costs, in bytes and FLOPs, per place (``cloud`` or a site's name)."""

    upload_bytes: int = 0
    download_bytes: int = 0
    model_bytes: int = 0
    training_storage_bytes: dict[str, int] = field(default_factory=dict)
    inference_storage_bytes: dict[str, int] = field(default_factory=dict)
    flops: dict[str, float] = field(default_factory=dict)

    def add_flops(self, place: str, flops: float) -> None:
        """Book ``flops`` of compute at ``place``."""
        self.flops[place] = self.flops.get(place, 0.0) + flops

    def store(self, kind: Literal["training", "inference"], place: str, n_bytes: int) -> None:
        """Book ``n_bytes`` of training or inference data held at ``place``."""
        book = self.training_storage_bytes if kind == "training" else self.inference_storage_bytes
        book[place] = book.get(place, 0) + n_bytes

    @property
    def busiest_flops(self) -> float:
        """Compute of the place that computes most (the paper's per-brain compute)."""
        return max(self.flops.values(), default=0.0)

    @property
    def busiest_training_storage_bytes(self) -> int:
        """Training data held at the place that holds most."""
        return max(self.training_storage_bytes.values(), default=0)

    @property
    def busiest_inference_storage_bytes(self) -> int:
        """Inference data held at the place that holds most."""
        return max(self.inference_storage_bytes.values(), default=0)


@dataclass(frozen=True, slots=True)
class TrainedPredictors:
    """The outcome of training: the parameters each site predicts with, and what training cost."""

    orchestration: Orchestration
    model: MLP
    site_params: tuple[Params, ...]  # centralized: the cloud model, once per site
    overheads: Overheads

    def predict(self, site: int, x: torch.Tensor) -> torch.Tensor:
        """Predicted classes (n,) of site ``site``'s samples ``x`` (for centralized: the cloud's)."""
        with torch.no_grad():
            logits = torch.func.functional_call(self.model, self.site_params[site], (x,))
        return logits.argmax(dim=1)


def model_wire_bytes(params: Mapping[str, torch.Tensor], wire_dtype: WireDtype) -> int:
    """Size of a model message as the project's codec encodes it (safetensors with its envelope)."""
    return len(encode_model(params, {"service": "orchestration"}, wire_dtype))


def train(
    orchestration: Orchestration,
    *,
    sites: Sequence[WeightedData],
    site_names: Sequence[str],
    cloud: WeightedData | None,
    raw_training_bytes: Sequence[int],
    n_classes: int,
    plan: TrainingPlan,
    streams: SeedStreams,
) -> TrainedPredictors:
    """Train the predictors of one orchestration and book the cost of training.

    Args:
        orchestration: ``centralized``, ``distributed`` or ``collaborative``.
        sites: each site's training samples, as the site itself sees them.
        site_names: names of the sites (places in :class:`Overheads`).
        cloud: the cloud's training samples built from every site's uploaded raw data (centralized only).
        raw_training_bytes: bytes of raw training data each site holds (uploaded when centralized).
        n_classes: classes of the prediction.
        plan: the training budget.
        streams: random streams (initial weights, minibatch order).

    Returns:
        The trained predictors with their overheads (inference traffic is the caller's to add).

    Raises:
        ValueError: the inputs disagree in length, or centralized training has no cloud dataset.
    """
    if not len(sites) == len(site_names) == len(raw_training_bytes) or not sites:
        raise ValueError("sites, site_names and raw_training_bytes must be non-empty and of equal length")
    features = sites[0].x.shape[1]
    model = MLP(features, plan.hidden, n_classes)
    start = init_params(model, streams.torch("orchestration/init"))
    per_sample = training_flops_per_sample(model, features)
    overheads = Overheads()
    if orchestration == "centralized":
        if cloud is None:
            raise ValueError("centralized training needs the cloud's dataset")
        overheads.upload_bytes += sum(raw_training_bytes)
        overheads.store("training", "cloud", sum(raw_training_bytes))
        epochs = plan.rounds * plan.local_epochs
        (params,) = _train(model, start, [cloud], epochs, plan, streams, "orchestration/cloud")
        overheads.add_flops("cloud", per_sample * cloud.x.shape[0] * epochs)
        overheads.model_bytes = model_wire_bytes(params, plan.wire_dtype)
        return TrainedPredictors(orchestration, model, (params,) * len(sites), overheads)
    for name, n_bytes in zip(site_names, raw_training_bytes, strict=True):
        overheads.store("training", name, n_bytes)
    if orchestration == "distributed":
        epochs = plan.rounds * plan.local_epochs
        trained = _train(model, start, list(sites), epochs, plan, streams, "orchestration/edges")
        for name, data in zip(site_names, sites, strict=True):
            overheads.add_flops(name, per_sample * data.x.shape[0] * epochs)
        overheads.model_bytes = model_wire_bytes(trained[0], plan.wire_dtype)
        return TrainedPredictors(orchestration, model, tuple(trained), overheads)
    if orchestration != "collaborative":
        raise ValueError(f"orchestration must be one of {', '.join(ORCHESTRATIONS)}, got {orchestration!r}")
    global_params = start
    model_bytes = model_wire_bytes(global_params, plan.wire_dtype)
    for round_index in range(plan.rounds):
        overheads.download_bytes += model_bytes * len(sites)  # the global model to every edge
        local = _train(
            model,
            global_params,
            list(sites),
            plan.local_epochs,
            plan,
            streams,
            f"orchestration/r{round_index}",
        )
        updates = [
            ClientUpdate(name, int(data.x.shape[0]), params)
            for name, data, params in zip(site_names, sites, local, strict=True)
        ]
        overheads.upload_bytes += sum(model_wire_bytes(u.params, plan.wire_dtype) for u in updates)
        global_params = weighted_average(updates)
        for name, data in zip(site_names, sites, strict=True):
            overheads.add_flops(name, per_sample * data.x.shape[0] * plan.local_epochs)
        overheads.add_flops("cloud", 2.0 * param_count(model) * len(sites))  # weighted sum
    overheads.download_bytes += model_bytes * len(sites)  # the final aggregate
    overheads.model_bytes = model_bytes
    return TrainedPredictors(orchestration, model, (global_params,) * len(sites), overheads)


def _train(
    model: MLP,
    start: Params,
    data: list[WeightedData],
    epochs: int,
    plan: TrainingPlan,
    streams: SeedStreams,
    stream: str,
) -> list[Params]:
    """Train one model per dataset from ``start`` (one vmap cohort), loss weighted per sample.

    Runs on one intra-op thread (restored afterwards): these models are so small that more threads
    only add synchronisation, measured here ~20× slower on a busy 2-core machine.
    """
    sizes = [int(d.x.shape[0]) for d in data]
    rngs = [streams.numpy(f"{stream}/{i}") for i in range(len(data))]
    schedule = make_schedule(sizes, epochs=epochs, batch_size=plan.batch_size, rngs=rngs)
    weights = torch.zeros(len(data), max(sizes))
    for i, d in enumerate(data):
        weights[i, : sizes[i]] = d.weight
    rows = torch.arange(len(data)).unsqueeze(1)
    weighted = Schedule(schedule.index, schedule.mask * weights[rows, schedule.index], schedule.active)
    local = [LocalData(d.x, d.y) for d in data]
    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    try:
        return train_cohort(model, start, local, weighted, lr=plan.learning_rate)
    finally:
        torch.set_num_threads(threads)
