import json

import pytest

from twin.qoais import (
    Indicator,
    ServiceReport,
    autonomy_indicator,
    privacy_level,
    security_level,
    to_markdown,
)
from twin.service_reports import federated_training_report
from twin.settings import QoAISTargets


def test_indicator_directions_and_margins() -> None:
    """min/max/level indicators pass on the right side of the target; margins are relative headroom."""
    assert Indicator("performance", "acc", 0.9, 0.8, "", "min").passed
    assert not Indicator("performance", "acc", 0.7, 0.8, "", "min").passed
    assert Indicator("overhead", "energy", 90.0, 100.0, " J", "max").margin == pytest.approx(0.1)
    assert not Indicator("overhead", "energy", 120.0, 100.0, " J", "max").passed
    assert Indicator("security", "level", 3, 3, "", "level").passed
    assert not Indicator("performance", "acc", float("nan"), 0.5, "", "min").passed


def test_autonomy_is_a_mode_the_service_offers() -> None:
    """The autonomy target passes only if the service offers that control mode."""
    assert autonomy_indicator(("full", "partial"), "partial").passed
    assert not autonomy_indicator(("full",), "human").passed


def test_graded_levels() -> None:
    """Security rises with integrity, authentication and TLS; privacy falls when data leaves the device."""
    assert security_level(tls=False, authenticated=False) == 2
    assert security_level(tls=True, authenticated=True) == 4
    assert privacy_level(raw_data_leaves_device=True, features_leave_device=True) == 1
    assert privacy_level(raw_data_leaves_device=False, features_leave_device=True) == 3
    assert privacy_level(raw_data_leaves_device=False, features_leave_device=False) == 4


def test_limiting_factor_is_the_worst_miss() -> None:
    """The limiting factor names the missed indicator with the most negative margin."""
    report = ServiceReport(
        "svc",
        "training",
        (
            Indicator("performance", "acc", 0.79, 0.8, "", "min"),
            Indicator("overhead", "energy", 300.0, 100.0, " J", "max", "base station dominates"),
        ),
    )
    assert not report.passed
    assert (
        report.limiting_factor.startswith("overhead.energy: 300 J")
        and "base station" in report.limiting_factor
    )
    document = json.loads(json.dumps(report.to_dict()))
    assert document["passed"] is False and len(document["indicators"]) == 2
    assert "| overhead | energy | 300 J | ≤ 100 J | no |" in to_markdown([report])


def _row(round_index: int, accuracy: float, latency: float = 1.0, energy: float = 50.0) -> dict[str, float]:
    return {
        "round": round_index,
        "accuracy": accuracy,
        "service_accuracy": accuracy * 0.99,
        "link_reliability": 0.99,
        "round_latency_s": latency,
        "energy_round_j": energy,
        "energy_device_j": 5.0,
        "energy_network_j": 45.0,
        "energy_total_j": energy * round_index,
        "co2_total_g": 0.01,
        "coverage": 0.97,
        "stragglers": 1,
        "selected": 10,
        "offline": 0,
        "bits_up": 1e6,
        "bits_down": 1e6,
        "device_download_s": 0.1,
        "device_compute_s": 0.01,
        "device_upload_s": 0.8,
    }


def test_training_report_reads_the_kpis() -> None:
    """The training report uses the last accuracy, mean latency and energy, and names upload as dominant."""
    rows = [_row(i, 0.80 + 0.02 * i) for i in range(1, 5)]
    report = federated_training_report(
        "svc",
        rows,
        QoAISTargets(accuracy=0.85, round_latency_s=2.0, energy_per_round_j=100.0),
        tls=False,
        authenticated=False,
        baseline_accuracy=0.5,
    )
    by_name = {i.name: i for i in report.indicators}
    assert by_name["model_accuracy"].achieved == pytest.approx(0.88)
    assert by_name["round_latency"].passed and "upload dominates" in by_name["round_latency"].detail
    assert by_name["energy_per_round"].achieved == pytest.approx(50.0)
    assert not by_name["transmission_security_level"].passed  # plain MQTT: level 2 < 3
    tighter = federated_training_report(
        "svc",
        rows,
        QoAISTargets(energy_per_round_j=40.0),
        tls=True,
        authenticated=True,
        baseline_accuracy=0.5,
    )
    assert not {i.name: i for i in tighter.indicators}["energy_per_round"].passed
    assert {i.name: i for i in tighter.indicators}["transmission_security_level"].passed


def test_training_report_without_rounds() -> None:
    """A run that completed no round gets a report that says so instead of failing."""
    report = federated_training_report(
        "svc", [], QoAISTargets(), tls=False, authenticated=False, baseline_accuracy=0.5
    )
    assert report.indicators == () and "no round" in report.notes[0]


def test_a_report_with_nothing_assessed_or_an_unfinished_run_never_passes() -> None:
    """No indicator is "not assessed", not PASS; an aborted run's report is incomplete, not PASS."""
    from dataclasses import replace

    from twin.qoais import ServiceReport

    empty = ServiceReport("svc", "federated_training", ())
    assert not empty.passed and empty.verdict == "not assessed"
    rows = [_row(i, 0.9) for i in range(1, 5)]
    report = federated_training_report(
        "svc", rows, QoAISTargets(security_level=1), tls=True, authenticated=True, baseline_accuracy=0.5
    )
    assert report.verdict in ("PASS", "FAIL")
    aborted = replace(report, incomplete="run aborted")
    assert not aborted.passed and aborted.verdict == "incomplete (run aborted)"
    assert aborted.to_dict()["verdict"] == "incomplete (run aborted)"
