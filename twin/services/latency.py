"""Deterministic-latency accounting (paper §2.3.2.4: "latency with a definite range — not late, not early").

A control loop gives every inference a **latency budget** and a **jitter bound**. Jitter is measured as
the spread of the response latency, ``p99 − p50``; on-time share is the share of requests answered
within the budget. Retransmissions are the radio's main source of jitter: each failed transmission
costs one HARQ round trip. Pure numpy: no Mesa, no MQTT, no torch.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt


@dataclass(frozen=True, slots=True)
class LatencyStats:
    """Percentiles and spread of a set of response latencies against a budget."""

    count: int
    p50_s: float
    p99_s: float
    max_s: float
    on_time_share: float

    @property
    def jitter_s(self) -> float:
        """Spread of the latency, ``p99 − p50``."""
        return self.p99_s - self.p50_s


def latency_stats(latency_s: npt.ArrayLike, budget_s: float) -> LatencyStats:
    """p50, p99, max and on-time share (latency ≤ ``budget_s``) of ``latency_s``.

    An infinite latency (no link) counts as late and as infinitely long.

    Raises:
        ValueError: ``budget_s`` is not > 0.

    """
    if not budget_s > 0:
        raise ValueError(f"budget_s must be > 0, got {budget_s}")
    values = np.asarray(latency_s, dtype=float).ravel()
    if values.size == 0:
        return LatencyStats(0, math.nan, math.nan, math.nan, math.nan)
    return LatencyStats(
        count=int(values.size),
        p50_s=float(np.percentile(values, 50, method="inverted_cdf")),
        p99_s=float(np.percentile(values, 99, method="inverted_cdf")),
        max_s=float(values.max()),
        on_time_share=float(np.mean(values <= budget_s)),
    )


def harq_retransmissions(
    rng: np.random.Generator, reliability: npt.ArrayLike, max_transmissions: int
) -> np.ndarray:
    """Retransmissions each transfer needs, drawn per transfer (truncated geometric).

    A link reliability ``r`` within ``H`` transmissions means a per-transmission failure probability
    ``p = (1 − r)^(1/H)``; the number of failures before success is geometric in ``p``, capped at
    ``H − 1`` (a transfer that fails every time is counted as ``H − 1`` retransmissions; it is the
    reliability, not the latency, that accounts for its loss).

    Raises:
        ValueError: ``max_transmissions`` < 1.

    """
    if max_transmissions < 1:
        raise ValueError(f"max_transmissions must be >= 1, got {max_transmissions}")
    r = np.clip(np.asarray(reliability, dtype=float), 0.0, 1.0)
    p = (1.0 - r) ** (1.0 / max_transmissions)
    u = rng.random(r.shape)
    with np.errstate(divide="ignore", invalid="ignore"):
        failures = np.where(p <= 0.0, 0.0, np.floor(np.log(u) / np.log(np.where(p > 0.0, p, 0.5))))
    failures = np.where(p >= 1.0, max_transmissions - 1, failures)
    return np.clip(failures, 0, max_transmissions - 1).astype(np.int64)
