from collections.abc import Callable
from pathlib import Path
from typing import Any

import pandas as pd
import pytest

from broker.embedded import EmbeddedBroker
from twin.runner import RunOptions, run_scenario

SMALL = {"devices.count": "24", "fl.clients_per_round": "0.75", "fl.dropout_prob": "0.1"}


def _kpis(tmp_path: Path, broker: str, seed: int = 7) -> pd.DataFrame:
    result = run_scenario(
        RunOptions("home-health", seed=seed, overrides=SMALL, broker=broker, out_dir=tmp_path, rounds=3)
    )
    assert result.status == "finished", result.error
    return result.kpis


@pytest.mark.broker
def test_same_seed_same_kpis_on_every_bus(
    tmp_path: Path, embedded_broker: EmbeddedBroker, mosquitto_url: str
) -> None:
    """Same seed ⇒ identical KPI tables: embedded broker, Mosquitto, a repeated run, the in-process bus."""
    # Execute
    embedded = _kpis(tmp_path, "embedded")
    again = _kpis(tmp_path, embedded_broker.url)
    mosquitto = _kpis(tmp_path, mosquitto_url)
    local = _kpis(tmp_path, "local")
    # Assert
    assert len(embedded) == 3
    pd.testing.assert_frame_equal(embedded, again, check_exact=True)
    pd.testing.assert_frame_equal(embedded, mosquitto, check_exact=True)
    pd.testing.assert_frame_equal(embedded, local, check_exact=True)


def test_other_seed_other_kpis(tmp_path: Path) -> None:
    """A different seed gives a different world and so different KPIs (the seed is really used)."""
    a = _kpis(tmp_path, "local", seed=1)
    b = _kpis(tmp_path, "local", seed=2)
    assert not a.equals(b)


@pytest.mark.broker
def test_broker_gone_mid_run_aborts_and_keeps_records(tmp_path: Path) -> None:
    """When the broker vanishes mid-run, the run reconnects until its timeout, then stops as `aborted`
    with the rounds completed so far written to the run directory."""
    # Prepare
    broker = EmbeddedBroker().start()
    overrides = {**SMALL, "bus.barrier_timeout_s": "3", "bus.resend_after_s": "0.5"}
    state = {"stopped": False}

    def on_step(model: object) -> None:
        if not state["stopped"] and len(model.kpi_rows) >= 2:  # type: ignore[attr-defined]
            broker.stop()
            state["stopped"] = True

    # Execute
    result = run_scenario(
        RunOptions(
            "home-health", seed=3, overrides=overrides, broker=broker.url, out_dir=tmp_path, rounds=10
        ),
        on_step=on_step,
    )
    # Assert
    assert result.status == "aborted"
    assert "unreachable" in (result.error or "") or "incomplete" in (result.error or "")
    written = pd.read_parquet(result.run_dir / "kpi.parquet")
    assert 2 <= len(written) < 10
    assert (result.run_dir / "summary.json").read_text().count('"aborted"') >= 1


def test_moving_drones_are_deterministic_too(tmp_path: Path) -> None:
    """grid-inspection (moving drones, correlated shadowing, escalations) repeats exactly with its seed."""
    options = RunOptions(
        "grid-inspection",
        seed=11,
        overrides={"devices.count": "8"},
        broker="local",
        out_dir=tmp_path,
        rounds=2,
    )
    a = run_scenario(options)
    b = run_scenario(options)
    pd.testing.assert_frame_equal(a.kpis, b.kpis, check_exact=True)
    requests_a = pd.read_parquet(a.run_dir / "requests.parquet")
    requests_b = pd.read_parquet(b.run_dir / "requests.parquet")
    pd.testing.assert_frame_equal(requests_a, requests_b, check_exact=True)


def test_moving_taxis_are_deterministic_too(tmp_path: Path) -> None:
    """robotaxi (taxis moved as one street fleet, counter-based turns at intersections) repeats exactly."""
    options = RunOptions(
        "robotaxi", seed=4, overrides={"devices.count": "10"}, broker="local", out_dir=tmp_path, rounds=2
    )
    a = run_scenario(options)
    b = run_scenario(options)
    pd.testing.assert_frame_equal(a.kpis, b.kpis, check_exact=True)
    telemetry_a = pd.read_parquet(a.run_dir / "telemetry.parquet")
    telemetry_b = pd.read_parquet(b.run_dir / "telemetry.parquet")
    pd.testing.assert_frame_equal(telemetry_a, telemetry_b, check_exact=True)


@pytest.mark.broker
def test_chunked_models_over_a_real_broker_change_nothing(
    tmp_path: Path, embedded_broker: EmbeddedBroker
) -> None:
    """Models split into 4 kB chunks (manifest + SHA-256) over the embedded broker give the same KPIs as
    whole messages on the in-process bus."""
    chunked = {**SMALL, "bus.chunk_bytes": "4096"}
    result = run_scenario(
        RunOptions(
            "home-health", seed=7, overrides=chunked, broker=embedded_broker.url, out_dir=tmp_path, rounds=2
        )
    )
    whole = run_scenario(
        RunOptions("home-health", seed=7, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=2)
    )
    pd.testing.assert_frame_equal(result.kpis, whole.kpis, check_exact=True)
    # each model goes out as a manifest and 6 chunks instead of one message
    assert result.summary["bus"]["published"] > 1.5 * whole.summary["bus"]["published"]


BUSES = ("embedded", "mosquitto")
"""The brokers each scenario below is run on and compared with the in-process bus (Mosquitto: skipped
when there is none, unless TWIN_REQUIRE_MOSQUITTO=1)."""
_LOCAL_RUNS: dict[str, Any] = {}


def _broker_url(request: pytest.FixtureRequest, bus: str) -> str:
    """URL of ``bus``: the session's embedded broker, or the Mosquitto at 127.0.0.1:1883."""
    if bus == "embedded":
        broker: EmbeddedBroker = request.getfixturevalue("embedded_broker")
        return broker.url
    url: str = request.getfixturevalue("mosquitto_url")
    return url


def _local_run[T](scenario: str, run: Callable[[], T]) -> T:
    """The scenario's run on the in-process bus, made once for both brokers' tests to compare with."""
    if scenario not in _LOCAL_RUNS:
        _LOCAL_RUNS[scenario] = run()
    result: T = _LOCAL_RUNS[scenario]
    return result


@pytest.mark.broker
@pytest.mark.parametrize("bus", BUSES)
def test_disease_diagnosis_is_the_same_on_every_bus(
    tmp_path: Path, request: pytest.FixtureRequest, bus: str
) -> None:
    """disease-diagnosis (desensitised cases, cascade, drift re-training) repeats exactly over the embedded
    broker, Mosquitto and the in-process bus: KPIs and every per-case / per-check record."""
    overrides = {"devices.count": "10", "cascade.ticks": "12", "cascade.start_s": "30", "drift.at_s": "80"}

    def run(broker: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        result = run_scenario(
            RunOptions("disease-diagnosis", seed=3, overrides=overrides, broker=broker, out_dir=tmp_path)
        )
        assert result.status == "finished", result.error
        return result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")

    kpis_mqtt, requests_mqtt = run(_broker_url(request, bus))
    kpis_local, requests_local = _local_run("disease-diagnosis", lambda: run("local"))
    assert len(kpis_mqtt) >= 1 and len(requests_mqtt) > 0
    pd.testing.assert_frame_equal(kpis_mqtt, kpis_local, check_exact=True)
    pd.testing.assert_frame_equal(requests_mqtt, requests_local, check_exact=True)


@pytest.mark.broker
@pytest.mark.parametrize("bus", BUSES)
def test_unmanned_grazing_is_the_same_on_every_bus(
    tmp_path: Path, request: pytest.FixtureRequest, bus: str
) -> None:
    """unmanned-grazing (satellite passes, stored-and-forwarded updates, model sharing: the second farm's
    devices training over the bus) gives identical KPIs and sharing records on the embedded broker, Mosquitto
    and the in-process bus."""
    overrides = {"devices.drones": "3", "devices.cameras": "4", "sharing.max_rounds": "8"}

    def run(broker: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        result = run_scenario(
            RunOptions(
                "unmanned-grazing", seed=4, overrides=overrides, broker=broker, out_dir=tmp_path, rounds=4
            )
        )
        assert result.status == "finished", result.error
        return result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")

    brokered, brokered_sharing = run(_broker_url(request, bus))
    local, local_sharing = _local_run("unmanned-grazing", lambda: run("local"))
    assert brokered["forwarded"].sum() + brokered["stragglers"].sum() > 0
    assert (local_sharing["updates"] > 0).all()  # farm B's updates arrived over the bus in both runs
    pd.testing.assert_frame_equal(brokered, local, check_exact=True)
    pd.testing.assert_frame_equal(brokered_sharing, local_sharing, check_exact=True)


CLASSROOM = {"devices.count": "16", "fl.clients_per_round": "0.5"}


@pytest.mark.broker
@pytest.mark.parametrize("bus", BUSES)
def test_virtual_classroom_same_on_every_bus(
    tmp_path: Path, request: pytest.FixtureRequest, bus: str
) -> None:
    """virtual-classroom (generation, federated training, engagement feedback, edge compute) gives identical
    KPIs and per-request records on the embedded broker, Mosquitto and the in-process bus."""

    def run(broker: str) -> Any:
        return run_scenario(
            RunOptions(
                "virtual-classroom", seed=5, overrides=CLASSROOM, broker=broker, out_dir=tmp_path, rounds=2
            )
        )

    runs = [run(_broker_url(request, bus)), _local_run("virtual-classroom", lambda: run("local"))]
    assert all(r.status == "finished" for r in runs), [r.error for r in runs]
    pd.testing.assert_frame_equal(runs[0].kpis, runs[1].kpis, check_exact=True)
    requests = [pd.read_parquet(r.run_dir / "requests.parquet") for r in runs]
    assert set(requests[0]["service"]) == {"model-generation", "virtual-teacher", "edge-compute"}
    pd.testing.assert_frame_equal(requests[0], requests[1], check_exact=True)


@pytest.mark.broker
@pytest.mark.parametrize("bus", BUSES)
def test_industrial_robots_repeat_on_every_bus(
    tmp_path: Path, request: pytest.FixtureRequest, bus: str
) -> None:
    """industrial-robots (3 clustered FL services, live split inference) gives identical KPI tables and
    identical request records (split points, latencies) on the embedded broker, Mosquitto and the
    in-process bus."""
    small = {"devices.count": "6", "devices.test_samples": "80", "devices.samples_max": "80"}

    def run(broker: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        result = run_scenario(
            RunOptions(
                "industrial-robots", seed=9, overrides=small, broker=broker, out_dir=tmp_path, rounds=2
            )
        )
        assert result.status == "finished", result.error
        return result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")

    kpis_mqtt, requests_mqtt = run(_broker_url(request, bus))
    kpis_local, requests_local = _local_run("industrial-robots", lambda: run("local"))
    assert sorted(kpis_local["service"].unique()) == ["defects-step-1", "defects-step-2", "defects-step-3"]
    pd.testing.assert_frame_equal(kpis_mqtt, kpis_local, check_exact=True)
    pd.testing.assert_frame_equal(requests_mqtt, requests_local, check_exact=True)


@pytest.mark.broker
@pytest.mark.parametrize("bus", BUSES)
def test_food_cycle_is_the_same_on_every_bus(
    tmp_path: Path, request: pytest.FixtureRequest, bus: str
) -> None:
    """food-cycle (ledger collection, federated demand model, compressed variants over MQTT, on-device
    forecasts, plans) gives identical KPIs and per-service records on the embedded broker, Mosquitto and
    the in-process bus."""
    small = {
        "devices.shops": "6",
        "devices.households": "4",
        "devices.history_days": "28",
        "collection.days": "7",
    }

    def run(broker: str) -> tuple[pd.DataFrame, pd.DataFrame]:
        result = run_scenario(
            RunOptions("food-cycle", seed=6, overrides=small, broker=broker, out_dir=tmp_path, rounds=3)
        )
        assert result.status == "finished", result.error
        return result.kpis, pd.read_parquet(result.run_dir / "requests.parquet")

    kpis_mqtt, requests_mqtt = run(_broker_url(request, bus))
    kpis_local, requests_local = _local_run("food-cycle", lambda: run("local"))
    assert {"food-data", "route-allocation", "model-compression", "model-deployment"} <= set(
        requests_local["service"]
    )
    pd.testing.assert_frame_equal(kpis_mqtt, kpis_local, check_exact=True)
    pd.testing.assert_frame_equal(requests_mqtt, requests_local, check_exact=True)


def test_threads_never_change_a_result(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """One thread or three: the same tables (a cohort's shards, batches decoded ahead, the coverage
    evaluation's blocks all run on threads) and the same packed batches on the wire."""
    from broker.bus import LocalBus
    from twin import parallel

    shards: list[int] = []
    wire: list[tuple[str, bytes]] = []
    original, publish = parallel.map_shards, LocalBus.publish

    def counting(fn: Any, bounds: Any) -> Any:
        shards.append(len(bounds))
        return original(fn, bounds)

    def recording(bus: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if "/updates/" in topic:
            wire.append((topic, payload))
        publish(bus, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr("agents.host.map_shards", counting)
    monkeypatch.setattr(LocalBus, "publish", recording)
    tables, sent, batches = {}, {}, {}
    for threads in (1, 3):
        shards.clear()
        wire.clear()
        result = run_scenario(
            RunOptions(
                "home-health",
                seed=4,
                overrides={"devices.count": "120", "fl.clients_per_round": "0.9", "fl.dropout_prob": "0.1"},
                broker="local",
                out_dir=tmp_path / str(threads),
                rounds=3,
                threads=threads,
            )
        )
        assert result.status == "finished", result.error
        tables[threads] = {
            name: pd.read_parquet(result.run_dir / f"{name}.parquet") for name in ("kpi", "requests")
        }
        sent[threads] = max(shards)
        batches[threads] = [_batch(t, p) for t, p in wire]
    assert sent == {1: 1, 3: 3}  # the host really trained in three shards on three threads
    for name in ("kpi", "requests"):
        pd.testing.assert_frame_equal(tables[1][name], tables[3][name], check_exact=True)
    assert len(batches[1]) > 3 and batches[1] == batches[3]  # the same batches, rows and order


def _batch(topic: str, payload: bytes) -> tuple[str, dict[str, str], bytes]:
    """A packed batch without what differs between runs: the run id, the tags (per-run keys)."""
    from broker.update_batch import read_safetensors

    meta, arrays = read_safetensors(payload)
    return topic.split("/ml/")[1], {k: v for k, v in meta.items() if k != "auths"}, arrays["rows"].tobytes()
