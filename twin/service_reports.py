"""QoAIS reports of the emulator's services, from their recorded KPIs (pure: rows in, report out)."""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import Any

import numpy as np

from twin.qoais import Indicator, ServiceReport, graded_indicators
from twin.settings import InferenceTargets, QoAISTargets

ROBUSTNESS_WINDOW = 5


def federated_training_report(
    service: str,
    rows: Sequence[Mapping[str, Any]],
    targets: QoAISTargets,
    *,
    tls: bool,
    authenticated: bool,
    baseline_accuracy: float,
) -> ServiceReport:
    """QoAIS of a federated-training service (Table 3-1 dimensions) over its recorded rounds."""
    if not rows:
        return ServiceReport(service, "federated training", (), ("no round completed: nothing to assess",))
    last = rows[-1]
    accuracies = np.array([float(r["accuracy"]) for r in rows])
    window = accuracies[-ROBUSTNESS_WINDOW:]
    latency = float(np.mean([r["round_latency_s"] for r in rows]))
    energy = float(np.mean([r["energy_round_j"] for r in rows]))
    stragglers = sum(int(r["stragglers"]) for r in rows)
    selected = sum(int(r["selected"]) for r in rows)
    indicators = (
        Indicator(
            "performance",
            "model_accuracy",
            float(last["accuracy"]),
            targets.accuracy,
            "",
            "min",
            f"held-out, last round; majority-class baseline {baseline_accuracy:.3f}",
        ),
        Indicator(
            "performance",
            "service_accuracy",
            float(last["service_accuracy"]),
            targets.accuracy,
            "",
            "min",
            f"model accuracy × link reliability {float(last['link_reliability']):.3f}",
        ),
        Indicator(
            "performance",
            "round_latency",
            latency,
            targets.round_latency_s,
            " s",
            "max",
            _latency_detail(last, stragglers, selected),
        ),
        Indicator(
            "performance",
            "robustness_accuracy_variance",
            float(np.var(window)),
            targets.accuracy_variance_max,
            "",
            "max",
            f"variance over the last {len(window)} rounds",
        ),
        Indicator(
            "performance",
            "coverage",
            _number(last.get("coverage")),
            targets.coverage,
            "",
            "min",
            f"rate ≥ {targets.min_rate_bps:.3g} bit/s and service accuracy ≥ {targets.accuracy}",
        ),
        Indicator(
            "overhead",
            "energy_per_round",
            energy,
            targets.energy_per_round_j,
            " J",
            "max",
            _energy_detail(rows),
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=False,
            features_leave_device=False,
            privacy_detail="raw data stays on the devices; only model updates travel",
        ),
    )
    notes = (
        f"rounds: {len(rows)}; devices selected: {selected}; stragglers: {stragglers}; "
        f"offline: {sum(int(r['offline']) for r in rows)}",
        f"transmission: {sum(float(r['bits_up']) for r in rows) / 8e6:.2f} MB up, "
        f"{sum(float(r['bits_down']) for r in rows) / 8e6:.2f} MB down",
        f"energy: {float(last['energy_total_j']):.1f} J in all, {float(last['co2_total_g']):.3f} g CO2-eq",
    )
    return ServiceReport(service, "federated training", indicators, notes)


def _latency_detail(last: Mapping[str, Any], stragglers: int, selected: int) -> str:
    parts = {k: _number(last.get(f"device_{k}_s")) for k in ("download", "compute", "upload")}
    finite = {k: v for k, v in parts.items() if math.isfinite(v)}
    share = f"{stragglers / selected:.0%} of participants missed the deadline" if selected else ""
    if not finite:
        return share
    dominant = max(finite, key=lambda k: finite[k])
    total = sum(finite.values())
    return f"{dominant} dominates the device round ({finite[dominant] / total:.0%} of median time); {share}"


def _number(value: Any) -> float:
    """A KPI value as float (missing or null → NaN)."""
    return math.nan if value is None else float(value)


def _energy_detail(rows: Sequence[Mapping[str, Any]]) -> str:
    device = float(np.mean([r["energy_device_j"] for r in rows]))
    network = float(np.mean([r["energy_network_j"] for r in rows]))
    total = device + network
    if total <= 0:
        return ""
    return f"network {network / total:.0%} (base-station transmission), devices {device / total:.0%}"


def two_stage_inference_report(
    service: str, summary: Mapping[str, float], targets: InferenceTargets, *, tls: bool, authenticated: bool
) -> ServiceReport:
    """QoAIS of a two-stage (device → network) inference service from its request summary."""
    if not summary:
        return ServiceReport(service, "two-stage inference", (), ("no request served: nothing to assess",))
    escalation = summary["escalation_share"]
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
            "response_latency_p95",
            summary["latency_p95_s"],
            targets.latency_s,
            " s",
            "max",
            f"{escalation:.0%} of requests escalated to the network",
        ),
        Indicator(
            "overhead",
            "energy_per_request",
            summary["energy_per_request_j"],
            targets.energy_per_request_j,
            " J",
            "max",
            "device + radio at both ends + edge compute",
        ),
        *graded_indicators(
            targets,
            tls=tls,
            authenticated=authenticated,
            raw_data_leaves_device=escalation > 0,
            features_leave_device=False,
            privacy_detail="raw sensor windows of escalated requests leave the device"
            if escalation > 0
            else "no data leaves the device",
        ),
    )
    notes = (
        f"requests: {int(summary['requests'])}; mean latency {summary['latency_mean_s'] * 1000:.1f} ms",
        f"service accuracy over the last quarter of the requests (models trained longer): "
        f"{summary['service_accuracy_last_quarter']:.3f}",
    )
    return ServiceReport(service, "two-stage inference", indicators, notes)
