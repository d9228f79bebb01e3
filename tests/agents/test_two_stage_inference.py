from pathlib import Path

import pandas as pd
import pytest

from broker.json_codec import encode_json
from twin.auth import sign_document
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


def _signed(model: object, host_id: str, topic: str, doc: dict) -> bytes:  # type: ignore[type-arg]
    """A batch signed with ``host_id``'s own key, as that host would send it."""
    credentials = model.keys.credentials([host_id])  # type: ignore[attr-defined]
    return encode_json(sign_document(doc, topic, lambda t, d: credentials.sign(host_id, t, d)))


def test_forged_requests_are_counted_not_served(tmp_path: Path) -> None:
    """An unsigned or wrongly signed batch is forged; a signed one outside a tick is unexpected."""
    session = RunSession(
        RunOptions("home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    model = session.open()
    batch = {"schema": "twin.inference.request.v1", "tick": 0, "results": []}
    mine, other = (model.topics.request("health-alerts", h) for h in ("host-0", "host-9"))
    model.bus.publish(mine, b"{not json")
    model.bus.publish(other, encode_json({**batch, "host": "host-9"}))
    model.bus.publish(mine, encode_json({**batch, "host": "host-0", "auth": "00" * 32}))
    model.bus.publish(mine, _signed(model, "host-9", mine, {**batch, "host": "host-0"}))  # another's key
    model.bus.publish(mine, _signed(model, "host-0", mine, {**batch, "host": "host-0"}))  # no tick now
    model.pump()
    session.close()
    assert model.bus.stats.rejected["malformed"] == 1
    assert model.bus.stats.rejected["forged"] == 3
    assert model.bus.stats.rejected["unexpected"] == 1


def test_a_batch_that_misses_a_device_or_lies_about_one_is_refused(tmp_path: Path) -> None:
    """During a tick, a host's (signed) batch must hold exactly its devices with well-formed fields."""
    session = RunSession(
        RunOptions("home-health", seed=2, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=1)
    )
    model = session.open()
    alerts = model.services[0]
    alerts._waiting = True
    host = model.hosts[0]
    good = host.sense_and_infer("health-alerts", 0)
    topic = model.topics.request("health-alerts", "host-0")
    doc = {"schema": "twin.inference.request.v1", "host": "host-0", "tick": 0}
    bad_class = [{**good[0], "prelim_class": 99}, *good[1:]]
    strings = [{**good[0], "escalate": True, "window_f32": "not base64!"}, *good[1:]]
    for results in (good[1:], bad_class, strings, [*good, good[0]]):
        model.bus.publish(topic, _signed(model, "host-0", topic, {**doc, "results": results}))
    model.pump()
    assert model.bus.stats.rejected["malformed"] == 4 and not alerts._batches
    model.bus.publish(topic, _signed(model, "host-0", topic, {**doc, "results": good}))
    model.pump()
    assert set(alerts._batches) == {"host-0"}
    alerts._waiting = False
    session.close()
