"""Aggregation strategies as small classes (FedAvg, FedProx, FedAvgM).

Each receives the current global parameters and the accepted updates **sorted by sender id** (the
network agent guarantees the order, so the floating-point sum is the same on every bus).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import ClassVar, Protocol

import torch

Params = dict[str, torch.Tensor]


@dataclass(frozen=True, slots=True)
class ClientUpdate:
    """One device's contribution to a round."""

    agent_id: str
    n_samples: int
    params: Mapping[str, torch.Tensor]
    row: torch.Tensor | None = None
    """``params`` flattened (tensor names sorted, each row-major), when they arrived that way (packed)."""

    def flat(self) -> torch.Tensor:
        """The parameters as one row: names sorted, each tensor row-major (float32)."""
        if self.row is not None:
            return self.row
        return torch.cat([self.params[name].reshape(-1).to(torch.float32) for name in sorted(self.params)])


class Strategy(Protocol):
    """What the network agent needs from an aggregation strategy."""

    @property
    def name(self) -> str:
        """Short name of the strategy."""

    proximal_mu: float

    def aggregate(self, global_params: Params, updates: list[ClientUpdate]) -> Params:
        """New global parameters from the accepted updates."""


def weighted_average(updates: list[ClientUpdate]) -> Params:
    """Sample-weighted mean of the updates' parameters (FedAvg, McMahan et al. 2017)."""
    if not updates:
        raise ValueError("weighted_average needs at least one update")
    total = float(sum(u.n_samples for u in updates))
    if total <= 0:
        raise ValueError("updates carry no samples")
    weights = torch.tensor([u.n_samples / total for u in updates], dtype=torch.float64)
    mean = torch.zeros(len(updates[0].flat()), dtype=torch.float64)
    for w, u in zip(weights.tolist(), updates, strict=True):  # one row at a time: no (updates, P) copy
        mean.add_(u.flat(), alpha=w)
    mean = mean.to(torch.float32)
    out: Params = {}
    start = 0
    for name in sorted(updates[0].params):
        shape = updates[0].params[name].shape
        size = updates[0].params[name].numel()
        out[name] = mean[start : start + size].reshape(shape).clone()
        start += size
    return {name: out[name] for name in updates[0].params}  # the updates' own name order


@dataclass(slots=True)
class FedAvg:
    """Federated averaging: the sample-weighted mean of local models."""

    name: ClassVar[str] = "fedavg"
    proximal_mu: float = 0.0

    def aggregate(self, global_params: Params, updates: list[ClientUpdate]) -> Params:
        """Weighted mean; an empty round keeps the global model."""
        return weighted_average(updates) if updates else dict(global_params)


@dataclass(slots=True)
class FedProx:
    """FedProx (Li et al. 2020): FedAvg aggregation, clients add (μ/2)·‖w − w_global‖² to their loss."""

    name: ClassVar[str] = "fedprox"
    proximal_mu: float = 0.01

    def __post_init__(self) -> None:
        if self.proximal_mu < 0:
            raise ValueError(f"FedProx proximal_mu must be >= 0, got {self.proximal_mu}")

    def aggregate(self, global_params: Params, updates: list[ClientUpdate]) -> Params:
        """Weighted mean; an empty round keeps the global model."""
        return weighted_average(updates) if updates else dict(global_params)


@dataclass(slots=True)
class FedAvgM:
    """FedAvg with server momentum (Hsu et al. 2019): ``v ← βv + Δ``, ``w ← w + η·v``."""

    name: ClassVar[str] = "fedavgm"
    proximal_mu: float = 0.0
    server_lr: float = 1.0
    momentum: float = 0.9
    _velocity: Params = field(default_factory=dict)

    def aggregate(self, global_params: Params, updates: list[ClientUpdate]) -> Params:
        """Apply the momentum-smoothed average update."""
        if not updates:
            return dict(global_params)
        mean = weighted_average(updates)
        out: Params = {}
        for name, w in global_params.items():
            delta = mean[name] - w
            v = self._velocity.get(name, torch.zeros_like(w)) * self.momentum + delta
            self._velocity[name] = v
            out[name] = w + self.server_lr * v
        return out


STRATEGIES = ("fedavg", "fedprox", "fedavgm")


def make_strategy(name: str, proximal_mu: float) -> Strategy:
    """Build a strategy by name (``fedavg``, ``fedprox``, ``fedavgm``)."""
    if name == "fedavg":
        return FedAvg()
    if name == "fedprox":
        return FedProx(proximal_mu=proximal_mu)
    if name == "fedavgm":
        return FedAvgM()
    raise ValueError(f"unknown strategy {name!r}; choose one of {', '.join(STRATEGIES)}")
