"""Model generation (paper §2.4.3): the network builds a model for a scenario from a configuration and data.

A service developer names the task (input width, classes), hands over training data and a QoAIS target
(accuracy, and on the device that will run it: inference latency and energy); the network searches a
**small, bounded** space of MLP sizes × learning rates and returns the **cheapest candidate meeting the
target**, cheapest meaning the least energy per inference on the target device (which is what the model
costs for as long as it is deployed).

Each candidate's latency and energy per inference are known from its FLOPs before it is trained
(SPEC §7: O/F, O/EE), so candidates that cannot meet them are ruled out for free; the others are trained
for real (torch, seeded) **in order of cost**, and the search stops at the first one whose validation
accuracy meets the target — no cheaper candidate is left untried, so it is the cheapest that meets it —
or when the next training would exceed the FLOP budget. The search's own cost (training FLOPs on the
edge, its time and energy) is counted for every candidate trained.
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

import torch
from torch import nn
from torch.func import functional_call

from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile
from twin.learning.models import MLP, inference_flops_per_sample, init_params, param_count
from twin.learning.models import training_flops_per_sample as training_flops
from twin.qoais import Indicator, ServiceReport, graded_indicators


@dataclass(frozen=True, slots=True)
class GenerationConfig:
    """The search space and its bounds."""

    hidden_sizes: tuple[int, ...] = (4, 8, 16, 32, 64, 128)
    """Hidden widths of the MLP candidates."""
    learning_rates: tuple[float, ...] = (0.1, 0.3)
    """SGD learning rates tried for each width."""
    epochs: int = 15
    """Training passes over the developer's data per candidate."""
    batch_size: int = 32
    """Samples per training step."""
    validation_share: float = 0.25
    """Share of the developer's data held out to validate each candidate."""
    max_candidates: int = 12
    """Most candidates trained in one search."""
    budget_flops: float = 5e12
    """Most training FLOPs the search may spend."""

    def __post_init__(self) -> None:
        if not self.hidden_sizes or not self.learning_rates:
            raise ValueError("generation: hidden_sizes and learning_rates need at least one value each")
        for h in self.hidden_sizes:
            check_range("generation", "hidden_sizes", h, 1, 100_000)
        for lr in self.learning_rates:
            check_range("generation", "learning_rates", lr, 1e-9, 100.0)
        check_positive(
            "generation",
            epochs=self.epochs,
            batch_size=self.batch_size,
            max_candidates=self.max_candidates,
            budget_flops=self.budget_flops,
        )
        check_range("generation", "validation_share", self.validation_share, 0.05, 0.95)


@dataclass(frozen=True, slots=True)
class GenerationTargets:
    """The QoAIS target a generated model must meet on its target device; graded levels 1 … 5."""

    accuracy: float = 0.8
    """Smallest validation accuracy."""
    latency_s: float = 0.005
    """Largest inference latency of one sample on the target device."""
    energy_per_inference_j: float = 0.001
    """Largest energy of one inference on the target device."""
    search_energy_j: float = 50.0
    """Largest energy the search itself may use on the edge."""
    privacy_level: int = 3
    """Target privacy level, 1 (low) … 5 (high)."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high)."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Autonomy the service must offer."""

    def __post_init__(self) -> None:
        check_range("generation_qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_positive(
            "generation_qoais",
            latency_s=self.latency_s,
            energy_per_inference_j=self.energy_per_inference_j,
            search_energy_j=self.search_energy_j,
        )
        check_range("generation_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("generation_qoais", "security_level", self.security_level, 1, 5)


@dataclass(frozen=True, slots=True)
class Candidate:
    """One point of the search space, its modelled cost and (if trained) its measured accuracy."""

    hidden: int
    lr: float
    params: int
    inference_flops: float
    latency_s: float
    energy_per_inference_j: float
    training_flops: float
    status: Literal["met", "missed", "ruled-out", "not-tried"]
    accuracy: float = math.nan

    @property
    def trained(self) -> bool:
        """Whether the search trained this candidate (and paid for it)."""
        return self.status in ("met", "missed")


@dataclass(frozen=True, slots=True)
class GenerationResult:
    """What the search returns: the chosen candidate (None: none met the target) and its own cost."""

    chosen: Candidate | None
    candidates: tuple[Candidate, ...]
    params: dict[str, torch.Tensor] | None
    search_flops: float
    search_time_s: float
    search_energy_j: float

    @property
    def trained(self) -> int:
        """Candidates trained."""
        return sum(c.trained for c in self.candidates)


def generate_model(
    train_x: torch.Tensor,
    train_y: torch.Tensor,
    n_classes: int,
    *,
    config: GenerationConfig,
    targets: GenerationTargets,
    device: ComputeProfile,
    edge: ComputeProfile,
    generator: torch.Generator,
) -> GenerationResult:
    """Search the cheapest MLP meeting ``targets`` on ``device``, training on the ``edge`` (module doc).

    ``generator`` seeds the split, every candidate's initial weights and its batch order.
    """
    in_features = int(train_x.shape[1])
    n = int(train_x.shape[0])
    order = torch.randperm(n, generator=generator)
    n_val = max(1, round(config.validation_share * n))
    val, fit = order[:n_val], order[n_val:]
    seeds = torch.randint(
        0, 2**62, (len(config.hidden_sizes), len(config.learning_rates)), generator=generator
    )
    space = []
    for i, hidden in enumerate(config.hidden_sizes):
        net = MLP(in_features, hidden, n_classes)
        flops = inference_flops_per_sample(net, in_features)
        for j, lr in enumerate(config.learning_rates):
            space.append((flops / device.efficiency_flops_per_j, i, j, hidden, lr, net, flops))
    space.sort(key=lambda c: (c[0], c[1], c[2]))  # cheapest first; ties in the configured order
    candidates: list[Candidate] = []
    chosen: Candidate | None = None
    chosen_params: dict[str, torch.Tensor] | None = None
    spent = 0.0
    for energy, i, j, hidden, lr, net, flops in space:
        cost = training_flops(net, in_features) * len(fit) * config.epochs
        base = Candidate(
            hidden, lr, param_count(net), flops, flops / device.flops_per_s, energy, cost, "not-tried"
        )
        feasible = base.latency_s <= targets.latency_s and energy <= targets.energy_per_inference_j
        trained_so_far = sum(c.trained for c in candidates)
        if not feasible:
            candidates.append(_with(base, "ruled-out"))
        elif (
            chosen is None and trained_so_far < config.max_candidates and spent + cost <= config.budget_flops
        ):
            params = _train(net, train_x[fit], train_y[fit], config, lr, int(seeds[i, j]))
            spent += cost
            with torch.no_grad():
                logits = functional_call(net, params, (train_x[val],))
            accuracy = float((logits.argmax(dim=1) == train_y[val]).float().mean())
            met = accuracy >= targets.accuracy
            candidate = _with(base, "met" if met else "missed", accuracy)
            candidates.append(candidate)
            if met:
                chosen, chosen_params = candidate, params
        else:
            candidates.append(base)
    return GenerationResult(
        chosen,
        tuple(candidates),
        chosen_params,
        spent,
        spent / edge.flops_per_s,
        spent / edge.efficiency_flops_per_j,
    )


def _with(
    base: Candidate, status: Literal["met", "missed", "ruled-out"], accuracy: float = math.nan
) -> Candidate:
    return Candidate(
        base.hidden,
        base.lr,
        base.params,
        base.inference_flops,
        base.latency_s,
        base.energy_per_inference_j,
        base.training_flops,
        status,
        accuracy,
    )


def _train(
    net: nn.Module, x: torch.Tensor, y: torch.Tensor, config: GenerationConfig, lr: float, seed: int
) -> dict[str, torch.Tensor]:
    """Plain minibatch SGD from seeded initial weights (one candidate, on the edge)."""
    generator = torch.Generator().manual_seed(seed)
    params = {k: v.requires_grad_(True) for k, v in init_params(net, generator).items()}
    n = int(x.shape[0])
    for _ in range(config.epochs):
        perm = torch.randperm(n, generator=generator)
        for start in range(0, n, config.batch_size):
            idx = perm[start : start + config.batch_size]
            loss = nn.functional.cross_entropy(functional_call(net, params, (x[idx],)), y[idx])
            grads = torch.autograd.grad(loss, list(params.values()))
            with torch.no_grad():
                params = {
                    k: (p - lr * g).requires_grad_(True)
                    for (k, p), g in zip(params.items(), grads, strict=True)
                }
    return {k: v.detach() for k, v in params.items()}


def generation_report(
    service: str, result: GenerationResult, targets: GenerationTargets, *, tls: bool, authenticated: bool
) -> ServiceReport:
    """QoAIS of one model-generation request: the chosen model vs the target, and the search's cost."""
    kind = "model generation (bounded search)"
    chosen = result.chosen
    best = max((c for c in result.candidates if c.trained), key=lambda c: c.accuracy, default=None)
    shown = chosen or best
    accuracy = shown.accuracy if shown else math.nan
    indicators = (
        Indicator(
            "performance",
            "model_accuracy",
            accuracy,
            targets.accuracy,
            "",
            "min",
            f"validation, {_describe(shown)}" if chosen else f"no candidate met it; best {_describe(best)}",
        ),
        Indicator(
            "performance",
            "inference_latency",
            shown.latency_s if shown else math.nan,
            targets.latency_s,
            " s",
            "max",
            "on the target device (FLOPs ÷ FLOP/s)",
        ),
        Indicator(
            "overhead",
            "energy_per_inference",
            shown.energy_per_inference_j if shown else math.nan,
            targets.energy_per_inference_j,
            " J",
            "max",
            "on the target device (FLOPs ÷ FLOP/J)",
        ),
        Indicator(
            "overhead",
            "search_energy",
            result.search_energy_j,
            targets.search_energy_j,
            " J",
            "max",
            f"{result.trained} candidates trained, {result.search_flops:.3g} FLOPs, "
            f"{result.search_time_s:.3g} s of edge compute",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=True,
            privacy_detail="the developer's desensitised feature windows are used in the network",
        ),
    )
    ruled = sum(c.status == "ruled-out" for c in result.candidates)
    notes = (
        f"search space: {len(result.candidates)} candidates; {ruled} ruled out by latency/energy before "
        f"training; {result.trained} trained, cheapest first",
    )
    return ServiceReport(service, kind, indicators, notes)


def _describe(candidate: Candidate | None) -> str:
    if candidate is None:
        return "none trained"
    return f"hidden {candidate.hidden}, lr {candidate.lr:g}, {candidate.params} parameters"
