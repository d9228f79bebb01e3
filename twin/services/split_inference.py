"""Live split inference (paper §2.4.1, Table 3-13 method): the split point chosen per request.

For every request the split point ``k`` of the profiled model minimises the paper's latency
``T = O_UE/F_UE + D/R + O_NET/F_NET`` (or energy ``E = O_UE/EE_UE + D/EE_comm + O_NET/EE_NET``) for the
device's **current** uplink rate and the edge's **current** load (the edge's free share of its FLOP/s),
vectorised over all requests of a tick. Policy ``local-first`` keeps a request on the device when the
device alone meets the latency budget (no radio, no jitter) and splits only the others; ``optimise``
splits every request. With ``raw_frames_stay`` (a privacy constraint) point 0 — sending the raw input —
is never chosen. Pure numpy (no Mesa, no MQTT, no torch).
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt

from twin.config import check_positive, check_range
from twin.kpi import SplitProfile
from twin.qoais import Indicator, ServiceReport, graded_indicators

SplitPolicy = Literal["local-first", "optimise"]
Objective = Literal["latency", "energy"]


@dataclass(frozen=True, slots=True)
class SplitInferenceConfig:
    """How the control loop infers and how a request is split between robot and edge."""

    enabled: bool = True
    """Whether robots run the control-loop inference."""
    interval_s: float = 1.0
    """Simulated time between two sampled control-loop inferences of a robot."""
    policy: SplitPolicy = "local-first"
    """``local-first``: split only when the robot alone misses the budget; ``optimise``: always choose."""
    objective: Objective = "latency"
    """What the split point minimises: ``latency`` (T) or ``energy`` (E, among points within budget)."""
    raw_frames_stay: bool = False
    """Privacy constraint: never split at point 0, so a raw frame never leaves the robot (at most its
    intermediate features do, privacy level 3) — the robot always runs at least the first block."""
    activation_bits: int = 8
    """[bit] Bits of one activation value on the air (8: int8-quantised features)."""
    result_bits: int = 64
    """Size of the decision the edge sends back."""
    harq_rtt_s: float = 1e-3
    """Time one HARQ retransmission adds (a slot round trip)."""
    edge_load_mean: float = 0.5
    """Mean share of each edge server's compute busy with other work, in [0, 0.99]."""
    edge_load_spread: float = 0.3
    """Standard deviation of the edge's background load around its mean (AR(1) over ticks)."""

    def __post_init__(self) -> None:
        check_positive(
            "split",
            interval_s=self.interval_s,
            activation_bits=self.activation_bits,
            result_bits=self.result_bits,
            harq_rtt_s=self.harq_rtt_s,
        )
        check_range("split", "edge_load_mean", self.edge_load_mean, 0.0, 0.99)
        check_range("split", "edge_load_spread", self.edge_load_spread, 0.0, 1.0)
        if self.policy not in ("local-first", "optimise"):
            raise ValueError(f"split.policy must be 'local-first' or 'optimise', got {self.policy!r}")
        if self.objective not in ("latency", "energy"):
            raise ValueError(f"split.objective must be 'latency' or 'energy', got {self.objective!r}")


@dataclass(frozen=True, slots=True)
class DeterministicLatencyTargets:
    """QoAIS targets of a control-loop inference service with a latency budget and a jitter bound."""

    accuracy: float = 0.8
    """Service accuracy (correct decisions × link reliability), in [0, 1]."""
    latency_p99_s: float = 5e-3
    """The latency budget: 99th percentile of the response latency."""
    jitter_s: float = 2e-3
    """The jitter bound: p99 − p50 of the response latency."""
    on_time_share: float = 0.99
    """Share of requests answered within the budget, in [0, 1]."""
    energy_per_request_j: float = 0.05
    """Energy of one inference: robot compute and radio, edge compute, downlink."""
    privacy_level: int = 3
    """Data privacy level required (1-5)."""
    security_level: int = 2
    """Transmission security level required (1-5)."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Control mode the service must offer."""

    def __post_init__(self) -> None:
        check_range("qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_range("qoais", "on_time_share", self.on_time_share, 0.0, 1.0)
        check_positive(
            "qoais",
            latency_p99_s=self.latency_p99_s,
            jitter_s=self.jitter_s,
            energy_per_request_j=self.energy_per_request_j,
        )


@dataclass(frozen=True, slots=True, eq=False)
class SplitDecision:
    """Chosen split point per request and the modelled latency and energy of every split point."""

    split_point: np.ndarray  # (n,) int
    latency_s: np.ndarray  # (n, K)
    energy_j: np.ndarray  # (n, K)

    def chosen(self, values: np.ndarray) -> np.ndarray:
        """``values[i, split_point[i]]`` for every request ``i``."""
        return values[np.arange(len(self.split_point)), self.split_point]


def split_costs(
    profile: SplitProfile,
    *,
    uplink_bps: npt.ArrayLike,
    ue_flops_per_s: npt.ArrayLike,
    ue_power_w: npt.ArrayLike,
    radio_power_w: float,
    edge_flops_per_s: npt.ArrayLike,
    edge_efficiency_flops_per_j: float,
) -> tuple[np.ndarray, np.ndarray]:
    """Latency ``T`` and energy ``E`` (SPEC §7) of every split point for every request, ``(n, K)`` each.

    ``edge_flops_per_s`` is the edge's speed left for each request (its FLOP/s × free share); its energy
    per FLOP is the server's own (``EE_NET = F / P``), whatever the load. A rate of 0 makes every point
    that sends data infinitely slow and costly; the last point (all on the device) sends nothing.
    """
    ue_f = np.asarray(ue_flops_per_s, dtype=float)[:, None]
    ue_p = np.asarray(ue_power_w, dtype=float)[:, None]
    rate = np.asarray(uplink_bps, dtype=float)[:, None]
    edge_f = np.asarray(edge_flops_per_s, dtype=float)[:, None]
    o_ue, bits, o_net = profile.ue_flops[None, :], profile.tx_bits[None, :], profile.net_flops[None, :]
    with np.errstate(divide="ignore", invalid="ignore"):
        tx_s = np.where(bits > 0, bits / rate, 0.0)
        net_s = np.where(o_net > 0, o_net / edge_f, 0.0)
    latency = o_ue / ue_f + tx_s + net_s
    energy = o_ue / (ue_f / ue_p) + radio_power_w * tx_s + o_net / edge_efficiency_flops_per_j
    return latency, energy


def choose_split_points(
    latency_s: np.ndarray,
    energy_j: np.ndarray,
    *,
    budget_s: float,
    policy: SplitPolicy = "local-first",
    objective: Objective = "latency",
    min_split_point: int = 0,
) -> np.ndarray:
    """Split point per request (row) of the ``(n, K)`` cost matrices; ties go to the lower index.

    ``local-first`` keeps a request whose all-on-device latency (last column) meets ``budget_s`` on the
    device. Otherwise ``latency`` takes the fastest point; ``energy`` the cheapest point within the
    budget, or the fastest when none is within it. Points below ``min_split_point`` are never chosen
    (1: the raw input never leaves the device).

    Raises:
        ValueError: ``min_split_point`` is not a split point of the matrices.

    """
    if not 0 <= min_split_point < latency_s.shape[1]:
        raise ValueError(f"min_split_point must be in [0, {latency_s.shape[1] - 1}], got {min_split_point}")
    allowed = np.arange(latency_s.shape[1]) >= min_split_point
    latency_s = np.where(allowed, latency_s, np.inf)
    fastest = np.argmin(latency_s, axis=1)
    if objective == "energy":
        within = latency_s <= budget_s
        masked = np.where(within, energy_j, np.inf)
        choice = np.where(within.any(axis=1), np.argmin(masked, axis=1), fastest)
    else:
        choice = fastest
    if policy == "local-first":
        last = latency_s.shape[1] - 1
        choice = np.where(latency_s[:, last] <= budget_s, last, choice)
    return choice.astype(np.int64)


def edge_load_step(
    rng: np.random.Generator, previous: np.ndarray | None, n_cells: int, mean: float, spread: float
) -> np.ndarray:
    """Background load of each edge server this tick: AR(1) (ρ = 0.8) around ``mean``, in [0, 0.99]."""
    rho = 0.8
    noise = rng.normal(0.0, spread, n_cells)
    if previous is None:
        load = mean + noise
    else:
        load = mean + rho * (previous - mean) + math.sqrt(1 - rho**2) * noise
    return np.clip(load, 0.0, 0.99)


def split_inference_report(
    service: str,
    summary: Mapping[str, Any],
    targets: DeterministicLatencyTargets,
    *,
    tls: bool,
    authenticated: bool,
) -> ServiceReport:
    """QoAIS of a deterministic-latency split-inference service from its request summary."""
    kind = "split inference (deterministic latency)"
    if not summary:
        return ServiceReport(service, kind, (), ("no request served: nothing to assess",))
    split = summary["split_share"]
    indicators = (
        Indicator(
            "performance",
            "service_accuracy",
            summary["service_accuracy"],
            targets.accuracy,
            "",
            "min",
            f"correct decisions × link reliability; {summary['accuracy']:.3f} before the link",
        ),
        Indicator(
            "performance",
            "response_latency_p99",
            summary["latency_p99_s"] * 1e3,
            targets.latency_p99_s * 1e3,
            " ms",
            "max",
            f"p50 {summary['latency_p50_s'] * 1e3:.2f} ms; {split:.0%} of requests split with the edge",
        ),
        Indicator(
            "performance",
            "latency_jitter_p99_minus_p50",
            summary["jitter_s"] * 1e3,
            targets.jitter_s * 1e3,
            " ms",
            "max",
            f"HARQ retransmissions in {summary['retransmission_share']:.1%} of the split requests",
        ),
        Indicator(
            "performance",
            "on_time_share",
            summary["on_time_share"],
            targets.on_time_share,
            "",
            "min",
            f"answered within the {targets.latency_p99_s * 1e3:.1f} ms budget",
        ),
        Indicator(
            "overhead",
            "energy_per_request",
            summary["energy_per_request_j"],
            targets.energy_per_request_j,
            " J",
            "max",
            "robot compute + radio, edge compute, downlink",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=summary["raw_share"] > 0,
            features_leave_device=split > 0,
            privacy_detail=f"raw frames leave the robot in {summary['raw_share']:.0%} of the requests, "
            f"intermediate features in {summary['feature_share']:.0%}",
        ),
    )
    notes = (
        f"requests: {int(summary['requests'])}; split points used: {summary['split_points_used']}",
        f"max latency {summary['latency_max_s'] * 1e3:.2f} ms",
    )
    return ServiceReport(service, kind, indicators, notes)
