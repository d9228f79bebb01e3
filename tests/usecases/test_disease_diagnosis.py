"""disease-diagnosis: desensitisation on the wire, the cascade's escalations, drift → re-training."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.diagnosis import DiagnosisService, ModelManagementService
from agents.patient_terminal import TerminalHost
from broker.bus import LocalBus
from twin.config import apply_overrides
from twin.model import TwinModel
from twin.runner import RunOptions, run_scenario
from twin.services.model_management import ModelManagementConfig
from usecases import disease_diagnosis_data as dd
from usecases import registry
from usecases.registry import BuildContext

SMALL = {
    "devices.count": "20",
    "cascade.ticks": "26",
    "cascade.start_s": "40",
    "drift.at_s": "160",
    "drift.magnitude": "3",
    "management.window_cases": "160",
}


class RecordingBus(LocalBus):
    """The in-process bus, keeping every payload published on it."""

    def __init__(self) -> None:
        super().__init__()
        self.payloads: list[bytes] = []

    def publish(self, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        """Keep the payload, then deliver it."""
        self.payloads.append(bytes(payload))
        super().publish(topic, payload, qos=qos, retain=retain)


def _run(**overrides: str) -> tuple[TwinModel, RecordingBus]:
    spec = registry.get("disease-diagnosis")
    config = apply_overrides(spec.default_config(), {**SMALL, **overrides})
    bus = RecordingBus()
    model = spec.build(config, BuildContext("dd-test", 5, bus, None))  # type: ignore[union-attr]
    while model.running:
        model.step()
    return model, bus


def _service(model: TwinModel, kind: type) -> Any:
    (found,) = [s for s in model.services if isinstance(s, kind)]
    return found


@pytest.fixture(scope="module")
def drifted() -> tuple[TwinModel, RecordingBus]:
    return _run()


def test_no_identifier_value_ever_leaves_a_terminal(drifted: tuple[TwinModel, RecordingBus]) -> None:
    """Every identifier value the terminals hold is absent from every payload published during the run."""
    # Prepare
    model, bus = drifted
    (host,) = [h for h in model.hosts if isinstance(h, TerminalHost)]
    values = {str(r[f]) for c in host.cases.values() for r in c.records for f in dd.SCHEMA.identifiers}
    wire = b"\n".join(bus.payloads)
    # Assert
    assert len(values) > 500 and len(bus.payloads) > 100
    assert [v for v in values if v.encode() in wire] == []
    data = _service(model, DiagnosisService).data.ledger
    assert data.identifier_fields_seen == set() and data.privacy_level == 3


def test_cascade_escalates_exactly_the_low_confidence_cases(drifted: tuple[TwinModel, RecordingBus]) -> None:
    """A case goes to the core iff the edge's confidence is below the threshold; those take longer."""
    model, _ = drifted
    service = _service(model, DiagnosisService)
    records = service.records
    confidence = np.array([r["edge_confidence"] for r in records])
    escalated = np.array([r["escalated"] for r in records])
    # Assert
    assert 0 < escalated.sum() < len(records)
    np.testing.assert_array_equal(escalated, confidence < service.config.confidence_threshold)
    latency = np.array([r["latency_s"] for r in records])
    served = np.isfinite(latency)  # a terminal out of coverage waits for ever
    hop_s = 2 * service.config.backhaul_delay_s
    assert latency[escalated & served].min() > hop_s > latency[~escalated & served].max()
    kept = [r for r in records if not r["escalated"]]
    assert all(r["final_class"] == r["edge_class"] for r in kept)
    summary = service.summary()
    assert summary["core_tier_accuracy"] > summary["edge_accuracy_on_escalated"]


def test_drift_triggers_retraining_and_accuracy_recovers(drifted: tuple[TwinModel, RecordingBus]) -> None:
    """After the drift the monitor raises an alarm, a campaign re-trains, the monitored accuracy recovers."""
    model, _ = drifted
    rows = _service(model, ModelManagementService).records
    drift_s = 160.0
    before = [r["tick_accuracy"] for r in rows if r["sim_time_s"] < drift_s]
    after = [r for r in rows if r["sim_time_s"] >= drift_s]
    # Assert
    assert not any(r["alarm"] for r in rows if r["sim_time_s"] < drift_s)
    assert any(r["alarm"] for r in after) and any(r["retrain_started"] for r in after)
    dip = min(r["tick_accuracy"] for r in after)
    assert dip < np.mean(before) - 0.1
    assert np.mean([r["tick_accuracy"] for r in after[-4:]]) > dip + 0.1


def test_without_drift_nothing_is_retrained() -> None:
    """With drift magnitude 0 the monitor raises no alarm and the first campaign is the only one."""
    model, _ = _run(**{"drift.magnitude": "0"})
    management = _service(model, ModelManagementService)
    assert not any(r["alarm"] or r["retrain_started"] for r in management.records)
    assert management.trainer.campaigns == 1


def test_default_drift_monitor_raises_no_false_alarm_before_the_drift() -> None:
    """With the default window and threshold, no alarm precedes the drift; the drift itself is caught."""
    # Prepare: a small population, the default monitor (window, threshold), 20 ticks before the drift
    default = ModelManagementConfig()
    overrides = {
        "management.window_cases": str(default.window_cases),
        "management.drop_threshold": str(default.drop_threshold),
        "cascade.ticks": "34",
        "drift.at_s": "240",
    }
    # Execute
    model, _ = _run(**overrides)
    rows = _service(model, ModelManagementService).records
    # Assert
    before = [r for r in rows if r["sim_time_s"] < 240.0]
    compared = [r for r in before if not np.isnan(r["window_accuracy"] + r["reference_accuracy"])]
    assert len(compared) >= 5  # the monitor did compare windows with its reference before the drift
    assert not any(r["alarm"] for r in before)
    assert any(r["alarm"] for r in rows if r["sim_time_s"] >= 240.0)


def test_central_training_runs_and_reports_the_privacy_of_desensitised_cases(tmp_path: Path) -> None:
    """Central mode: the edge trains on the released cases; its report gives their privacy, not level 4."""
    # Prepare
    options = RunOptions(
        "disease-diagnosis",
        seed=5,
        overrides={**SMALL, "training.mode": "central"},
        broker="local",
        out_dir=tmp_path,
    )
    # Execute
    result = run_scenario(options)
    # Assert
    assert result.status == "finished", result.error
    reports = {r.service: r for r in result.qoais}
    training = reports["diagnosis-training"]
    privacy = next(i for i in training.indicators if i.dimension == "privacy")
    assert training.kind == "central training"
    data_privacy = next(i for i in reports["patient-data"].indicators if i.dimension == "privacy")
    assert privacy.achieved == data_privacy.achieved == 3
    assert "desensitised cases leave the terminals" in privacy.detail
    assert "stays on the devices" not in privacy.detail
    coverage = next(i for i in training.indicators if i.name == "coverage")
    assert 0.0 < float(coverage.achieved) <= 1.0  # the edge model's coverage over the terminals' links
    assert set(result.kpis["selected"]) == {0}  # no device trained: every round ran at the edge
