"""Cascade inference (paper §2.3.6, §2.4.1): the edge answers, uncertain cases escalate to the core.

A case reaches the edge (MEC) server, whose model answers with a confidence (its top class
probability). Cases whose confidence is **below** ``confidence_threshold`` escalate over the backhaul
to a larger, more accurate model in the core network, whose answer is final. The latency of a case
follows SPEC §7 hop by hop: uplink ``D/R_up`` + edge compute ``O_edge/F_edge`` (+ for an escalated case
backhaul ``D/R_bh`` + twice the backhaul delay + core compute ``O_core/F_core``) + the answer's
downlink. Pure functions over arrays and records; the network side that moves messages lives in the
scenario's agents.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile
from twin.qoais import Indicator, ServiceReport, graded_indicators


@dataclass(frozen=True, slots=True)
class CascadeConfig:
    """When cases are served, when they escalate, and the edge–core hop."""

    interval_s: float = 10.0
    """Simulated time between two collection ticks (each terminal sends its new cases)."""
    start_s: float = 60.0
    """First tick (the first training campaign runs before it)."""
    ticks: int = 40
    """Collection ticks of the run (``--rounds`` sets it: the run ends after the last one)."""
    confidence_threshold: float = 0.8
    """Edge confidence below which a case escalates to the core, in [0, 1]."""
    result_bits: int = 256
    """Size of the diagnosis sent back to the terminal."""
    backhaul_bps: float = 1e9
    """Edge → core backhaul rate."""
    backhaul_delay_s: float = 0.01
    """One-way edge → core delay (propagation and switching; the core is farther away)."""
    backhaul_j_per_bit: float = 2e-8
    """Energy of one bit carried over the backhaul (both ways)."""
    core_flops_per_s: float = 100e12
    """The core server's compute rate."""
    core_power_w: float = 700.0
    """The core server's power while computing."""
    core_hidden: int = 128
    """Hidden width of the core model (the edge's is ``fl.hidden``)."""
    core_epochs: int = 40
    """Epochs of each (re-)training of the core model on the pooled desensitised cases."""

    def __post_init__(self) -> None:
        check_positive(
            "cascade",
            interval_s=self.interval_s,
            start_s=self.start_s,
            ticks=self.ticks,
            result_bits=self.result_bits,
            backhaul_bps=self.backhaul_bps,
            core_flops_per_s=self.core_flops_per_s,
            core_power_w=self.core_power_w,
            core_hidden=self.core_hidden,
            core_epochs=self.core_epochs,
        )
        check_range("cascade", "confidence_threshold", self.confidence_threshold, 0.0, 1.0)
        check_range("cascade", "backhaul_delay_s", self.backhaul_delay_s, 0.0, 10.0)
        check_range("cascade", "backhaul_j_per_bit", self.backhaul_j_per_bit, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class CascadeTargets:
    """QoAIS targets of the diagnosis service (paper §2.3.6.4: real-time, high accuracy, reliable)."""

    accuracy: float = 0.85
    """Share of cases diagnosed correctly (× link reliability), at least."""
    latency_s: float = 0.1
    """95th percentile of the end-to-end latency of a case, at most."""
    energy_per_request_j: float = 1.0
    """Energy of one case, terminal + network, at most."""
    privacy_level: int = 3
    """Data privacy level: records leave desensitised (paper §2.3.6.3 (1) a)."""
    security_level: int = 3
    """Transmission security level, 1 … 5."""
    autonomy: Literal["full", "partial", "human"] = "partial"
    """Autonomy the service must offer (a clinician confirms)."""

    def __post_init__(self) -> None:
        check_range("diagnosis_qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_positive(
            "diagnosis_qoais", latency_s=self.latency_s, energy_per_request_j=self.energy_per_request_j
        )
        check_range("diagnosis_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("diagnosis_qoais", "security_level", self.security_level, 1, 5)


def escalation_mask(confidence: np.ndarray, threshold: float) -> np.ndarray:
    """Which cases escalate to the core: exactly those whose edge confidence is below ``threshold``."""
    return np.asarray(confidence, dtype=float) < threshold


@dataclass(frozen=True, slots=True)
class CascadeCost:
    """Per-case latency and network energy of the cascade (arrays, one entry per case)."""

    latency_s: np.ndarray
    edge_compute_j: np.ndarray
    core_compute_j: np.ndarray
    backhaul_j: np.ndarray


def cascade_cost(
    *,
    escalated: np.ndarray,
    record_bits: np.ndarray,
    uplink_bps: np.ndarray,
    downlink_bps: np.ndarray,
    edge: ComputeProfile,
    edge_flops: float,
    core_flops: float,
    config: CascadeConfig,
) -> CascadeCost:
    """Latency of each case hop by hop (SPEC §7 ``T = Σ O/F + Σ D/R``) and the network's energy."""
    core = ComputeProfile(flops_per_s=config.core_flops_per_s, power_w=config.core_power_w)
    with np.errstate(divide="ignore"):
        up_s = np.where(uplink_bps > 0, record_bits / np.where(uplink_bps > 0, uplink_bps, 1.0), np.inf)
        down_s = np.where(
            downlink_bps > 0, config.result_bits / np.where(downlink_bps > 0, downlink_bps, 1.0), np.inf
        )
    edge_s = edge_flops / edge.flops_per_s
    core_s = record_bits / config.backhaul_bps + 2 * config.backhaul_delay_s + core_flops / core.flops_per_s
    latency = up_s + edge_s + np.where(escalated, core_s, 0.0) + down_s
    n = len(escalated)
    return CascadeCost(
        latency_s=latency,
        edge_compute_j=np.full(n, edge_flops / edge.efficiency_flops_per_j),
        core_compute_j=np.where(escalated, core_flops / core.efficiency_flops_per_j, 0.0),
        backhaul_j=np.where(escalated, (record_bits + config.result_bits) * config.backhaul_j_per_bit, 0.0),
    )


def _share(values: Sequence[bool]) -> float:
    return float(np.mean(values)) if len(values) else math.nan


def cascade_summary(records: Sequence[Mapping[str, Any]]) -> dict[str, float]:
    """Service-level figures of a cascade over its case records (empty when there is none).

    Accuracy per tier: the edge on the cases it kept, the core on the escalated ones, and the edge on
    the escalated ones too (what the cascade gained by escalating them).
    """
    if not records:
        return {}
    escalated = np.array([bool(r["escalated"]) for r in records])
    correct = np.array([bool(r["correct"]) for r in records])
    edge_correct = np.array([bool(r["edge_correct"]) for r in records])
    reliability = np.array([float(r["reliability"]) for r in records])
    latency = np.array([float(r["latency_s"]) for r in records])
    finite = latency[np.isfinite(latency)]
    return {
        "requests": float(len(records)),
        "escalated": float(escalated.sum()),
        "escalation_share": float(escalated.mean()),
        "accuracy": float(correct.mean()),
        "service_accuracy": float((correct * reliability).mean()),
        "edge_only_accuracy": float(edge_correct.mean()),
        "edge_tier_accuracy": _share(correct[~escalated].tolist()),
        "core_tier_accuracy": _share(correct[escalated].tolist()),
        "edge_accuracy_on_escalated": _share(edge_correct[escalated].tolist()),
        "latency_mean_s": float(finite.mean()) if len(finite) else math.inf,
        "latency_p95_s": float(np.percentile(finite, 95)) if len(finite) else math.inf,
        "latency_edge_mean_s": float(latency[~escalated].mean()) if (~escalated).any() else math.nan,
        "latency_core_mean_s": float(latency[escalated].mean()) if escalated.any() else math.nan,
        "energy_per_request_j": float(np.mean([float(r["energy_j"]) for r in records])),
    }


def cascade_report(
    service: str,
    summary: Mapping[str, float],
    targets: CascadeTargets,
    *,
    privacy_level: int,
    privacy_detail: str,
    tls: bool,
    authenticated: bool,
) -> ServiceReport:
    """QoAIS of a cascade inference service (privacy: the level of what its terminals release)."""
    if not summary:
        return ServiceReport(service, "cascade inference", (), ("no case served: nothing to assess",))
    security, _, autonomy = graded_indicators(
        targets,
        tls=tls,
        authenticated=authenticated,
        raw_data_leaves_device=False,
        features_leave_device=True,
        privacy_detail="",
    )
    indicators = (
        Indicator(
            "performance",
            "service_accuracy",
            summary["service_accuracy"],
            targets.accuracy,
            "",
            "min",
            f"edge tier {summary['edge_tier_accuracy']:.3f}, core tier {summary['core_tier_accuracy']:.3f} "
            f"(the edge alone on those: {summary['edge_accuracy_on_escalated']:.3f})",
        ),
        Indicator(
            "performance",
            "response_latency_p95",
            summary["latency_p95_s"],
            targets.latency_s,
            " s",
            "max",
            f"{summary['escalation_share']:.0%} of cases escalated to the core "
            f"(mean {summary['latency_core_mean_s'] * 1000:.1f} ms vs "
            f"{summary['latency_edge_mean_s'] * 1000:.1f} ms at the edge)",
        ),
        Indicator(
            "overhead",
            "energy_per_request",
            summary["energy_per_request_j"],
            targets.energy_per_request_j,
            " J",
            "max",
            "terminal radio + edge compute + backhaul and core compute of escalated cases + downlink",
        ),
        security,
        Indicator(
            "privacy", "data_privacy_level", privacy_level, targets.privacy_level, "", "level", privacy_detail
        ),
        autonomy,
    )
    notes = (
        f"cases: {int(summary['requests'])}; escalated: {int(summary['escalated'])}; "
        f"mean latency {summary['latency_mean_s'] * 1000:.1f} ms",
        f"accuracy with the edge alone would have been {summary['edge_only_accuracy']:.3f} "
        f"(cascade: {summary['accuracy']:.3f})",
    )
    return ServiceReport(service, "cascade inference", indicators, notes)
