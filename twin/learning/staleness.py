"""Aggregation of late (stored-and-forwarded) updates: rebased deltas with a staleness discount.

A device out of coverage trains on the global model of round ``r`` but its update reaches the network
only in a later round ``r + τ``. It is aggregated **into the round in which it arrives**, as the change
it made to the model it started from, discounted by its staleness (FedAsync's polynomial discount,
Xie et al. 2019, *Asynchronous Federated Optimization*):

    w ← w + Σ_i p_i (w_i − b_i),   p_i = n_i s(τ_i) / Σ_j n_j s(τ_j),   s(τ) = (1 + τ)^−a

with ``b_i`` the global model update ``i`` started from and ``n_i`` its registered sample count. For
updates of the current round (τ = 0, ``b_i = w``) this is exactly FedAvg's sample-weighted mean.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass

import torch

from twin.learning.aggregation import Params


def staleness_discount(staleness_rounds: int, exponent: float) -> float:
    """``(1 + τ)^−a``: 1 for a fresh update, smaller the older the model it was trained from."""
    if staleness_rounds < 0:
        raise ValueError(f"staleness must be >= 0 rounds, got {staleness_rounds}")
    if exponent < 0:
        raise ValueError(f"staleness exponent must be >= 0, got {exponent}")
    return float((1.0 + staleness_rounds) ** -exponent)


@dataclass(frozen=True, slots=True)
class StaleUpdate:
    """One update to aggregate: its params, the global model it started from, its weight inputs."""

    agent_id: str
    origin_round: int
    n_samples: int
    params: Mapping[str, torch.Tensor]
    base: Params


def aggregate_with_staleness(
    global_params: Params, updates: list[StaleUpdate], *, current_round: int, exponent: float
) -> Params:
    """The new global model from ``updates`` (sorted by the caller), each discounted by its staleness.

    An empty list keeps the global model.
    """
    if not updates:
        return dict(global_params)
    weights = [u.n_samples * staleness_discount(current_round - u.origin_round, exponent) for u in updates]
    total = float(sum(weights))
    if total <= 0:
        raise ValueError("updates carry no weight")
    out: Params = {}
    for name, w in global_params.items():
        acc = w.to(torch.float64).clone()
        for u, weight in zip(updates, weights, strict=True):
            acc += (u.params[name].to(torch.float64) - u.base[name].to(torch.float64)) * (weight / total)
        out[name] = acc.to(torch.float32)
    return out
