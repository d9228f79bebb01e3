from pathlib import Path

import pandas as pd
import pytest

from broker.json_codec import encode_json
from twin.runner import RunOptions, RunSession

SMALL = {"devices.count": "12", "inference.interval_s": "4"}


def _run(tmp_path: Path, **extra: str) -> tuple[pd.DataFrame, dict]:  # type: ignore[type-arg]
    session = RunSession(
        RunOptions(
            "home-health", seed=2, overrides={**SMALL, **extra}, broker="local", out_dir=tmp_path, rounds=3
        )
    )
    model = session.open()
    while session.step():
        pass
    result = session.close()
    assert model.services and result.status == "finished"
    return pd.read_parquet(result.run_dir / "requests.parquet"), result.summary


def test_escalations_go_to_the_network_and_cost_more(tmp_path: Path) -> None:
    """Uncertain or anomalous windows are escalated: they take longer than on-device decisions, whose
    latency is exactly FLOPs ÷ device FLOP/s; every device senses once per tick."""
    requests, summary = _run(tmp_path, **{"inference.confidence_threshold": "0.5"})
    local = requests[~requests.escalated]
    escalated = requests[requests.escalated]
    assert len(escalated) > 0 and len(local) > 0
    assert local.latency_s.nunique() == 1  # same model, same device compute profile
    assert (escalated.latency_s > local.latency_s.iloc[0]).all()
    assert (escalated.energy_j > local.energy_j.iloc[0]).all()
    assert requests.groupby("tick").agent_id.nunique().eq(12).all()
    assert summary["services"]["health-alerts"]["requests"] == len(requests)


def test_no_escalation_when_threshold_is_zero_and_anomalies_stay_local(tmp_path: Path) -> None:
    """With a confidence threshold of 0 and anomaly escalation off, everything is decided on the device."""
    requests, _ = _run(
        tmp_path, **{"inference.confidence_threshold": "0", "inference.escalate_anomalies": "false"}
    )
    assert not requests.escalated.any()


def test_energy_ledger_splits_services(tmp_path: Path) -> None:
    """Energy per service adds up to the total; the inference service is booked apart from training."""
    session = RunSession(
        RunOptions("home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=2)
    )
    model = session.open()
    while session.step():
        pass
    session.close()
    by_service = model.energy.by_service()
    assert set(by_service) == {"fall-detection", "health-alerts"}
    assert sum(by_service.values()) == pytest.approx(model.energy.total())
    assert model.kpi_rows[-1]["energy_total_j"] <= model.energy.total()


def test_forged_requests_are_counted_not_served(tmp_path: Path) -> None:
    """A request from a device that did not escalate, or a malformed one, is rejected and counted."""
    session = RunSession(
        RunOptions("home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    model = session.open()
    topic = model.topics.request("health-alerts", "hh-0003")
    model.bus.publish(topic, b"{not json")
    model.bus.publish(
        topic,
        encode_json(
            {"schema": "twin.inference.request.v1", "agent_id": "hh-0003", "tick": 0, "window": [0.0] * 64}
        ),
    )
    model.pump()
    session.close()
    assert model.bus.stats.rejected["malformed"] == 1
    assert model.bus.stats.rejected["unexpected"] == 1
