"""unmanned-grazing: store and forward delivers every update once; the registry's reuse is cheaper."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pytest
import torch

from agents.host import DeviceHost
from broker.bus import LocalBus
from broker.codec import decode_model, encode_model
from broker.json_codec import encode_json
from broker.model_exchange import ReceivedModel
from twin.radio.satellite import in_footprint
from twin.runner import RunOptions, run_scenario
from twin.satellite_model import SatelliteTwinModel

SMALL = {
    "devices.drones": "3",
    "devices.cameras": "5",
    "devices.test_samples": "300",
    "sharing.max_rounds": "12",
}


SHARING_SERVICES = ("model-sharing.reuse", "model-sharing.scratch")


class Wire:
    """What a run's device hosts received as the sharing services' global models, and what was published."""

    def __init__(self) -> None:
        self.received: dict[tuple[str, int], dict[str, Any]] = {}
        self.published: dict[str, int] = {}

    def watch(self, monkeypatch: pytest.MonkeyPatch) -> None:
        """Spy (without changing anything) on the hosts' received global models and the bus's publishes."""
        on_global, publish = DeviceHost._on_global, LocalBus.publish
        wire = self

        def spy_global(self: DeviceHost, received: ReceivedModel) -> None:
            if received.service in SHARING_SERVICES:
                wire.received[(received.service, received.round_index)] = dict(received.payload.tensors)
            on_global(self, received)

        def spy_publish(
            self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False
        ) -> None:
            wire.published[topic] = len(payload)
            publish(self, topic, payload, qos=qos, retain=retain)

        monkeypatch.setattr(DeviceHost, "_on_global", spy_global)
        monkeypatch.setattr(LocalBus, "publish", spy_publish)


def _run_grazing(
    out: Path, *, overrides: dict[str, str] = SMALL, rounds: int = 6
) -> tuple[Any, SatelliteTwinModel]:
    held: dict[str, SatelliteTwinModel] = {}
    result = run_scenario(
        RunOptions(
            "unmanned-grazing", seed=3, overrides=overrides, broker="local", out_dir=out, rounds=rounds
        ),
        on_model=lambda m: held.setdefault("model", m),  # type: ignore[arg-type]
    )
    assert result.status == "finished", result.error
    return result, held["model"]


@pytest.fixture(scope="module")
def wire_and_run(tmp_path_factory: pytest.TempPathFactory) -> tuple[Wire, Any, SatelliteTwinModel]:
    """One small run on the in-process bus, with its model kept and its sharing traffic watched."""
    wire = Wire()
    with pytest.MonkeyPatch.context() as monkeypatch:
        wire.watch(monkeypatch)
        result, model = _run_grazing(tmp_path_factory.mktemp("grazing"))
    return wire, result, model


@pytest.fixture(scope="module")
def grazing_run(wire_and_run: tuple[Wire, Any, SatelliteTwinModel]) -> tuple[Any, SatelliteTwinModel]:
    """The small run and its model."""
    return wire_and_run[1], wire_and_run[2]


def _sharing(model: SatelliteTwinModel) -> Any:
    return next(s for s in model.services if s.service == "model-sharing")


def test_stored_updates_are_forwarded_and_aggregated_exactly_once(grazing_run: tuple[Any, Any]) -> None:
    """Some updates arrive in a later round; none is aggregated twice; every trained one is accounted for."""
    # Prepare
    result, model = grazing_run
    network = model.network
    kpis = result.kpis
    # Assert: late updates exist and were forwarded into later rounds
    assert kpis["forwarded"].sum() > 0
    assert kpis["stragglers"].sum() > 0
    late = {k: r for k, r in network.aggregated.items() if r > k[1]}
    assert late
    # exactly once: each (device, round) key once; counts in the KPIs agree with the log
    assert len(network.aggregated) == int(kpis["accepted"].sum())
    assert int(kpis["fresh"].sum()) + int(kpis["forwarded"].sum()) == len(network.aggregated)
    # nothing lost: everything trained was aggregated or is still in flight at the end (the same host
    # also holds the second farm's devices: their updates are the sharing services')
    farm_b = sum(f.updates_accepted for f in _sharing(model).federations.values())
    trained = network.model.local_device_host.updates_sent - farm_b
    assert (
        trained
        == len(network.aggregated) + len(network.pending)
        == len(network.aggregated) + int(kpis["in_flight"].iloc[-1])
    )


def test_a_forwarded_update_arrives_when_the_twin_says_not_before(grazing_run: tuple[Any, Any]) -> None:
    """A late update's modelled arrival is after its round's deadline and no later than the round it joins."""
    # Prepare
    result, model = grazing_run
    network = model.network
    ends = dict(zip(result.kpis["round"], result.kpis["sim_time_s"], strict=True))
    starts = {
        r: ends[r] - lat for r, lat in zip(result.kpis["round"], result.kpis["round_latency_s"], strict=True)
    }
    deadline = network.fl.deadline_s
    # Assert
    for (agent_id, origin), joined in network.aggregated.items():
        arrival = network.delivered_s[(agent_id, origin)]
        assert arrival <= ends[joined] + 1e-9
        if joined > origin:
            assert arrival > min(ends[origin], starts[origin] + deadline) - 1e-9


def test_devices_use_three_bearers_over_the_run(grazing_run: tuple[Any, Any]) -> None:
    """Terrestrial cells serve the west, the satellite serves passes, some devices have no link at all."""
    result, _ = grazing_run
    kpis = result.kpis
    assert kpis["devices_terrestrial"].max() > 0
    assert kpis["devices_satellite"].max() > 0
    assert kpis["devices_no_link"].max() > 0


def test_registry_reuse_skips_training_and_is_cheaper(grazing_run: tuple[Any, Any]) -> None:
    """The second farm reuses the registry's model: fewer rounds, less time and energy than from scratch."""
    # Prepare
    result, model = grazing_run
    sharing = _sharing(model)
    outcome = sharing.outcome
    # Assert
    assert outcome is not None and outcome.reused_model_id is not None
    assert outcome.reuse.rounds < outcome.scratch.rounds
    assert outcome.reuse.transfer_bits > 0  # the shared model was fetched
    assert outcome.reuse.time_s < outcome.scratch.time_s
    assert outcome.reuse.energy_j < outcome.scratch.energy_j
    requests = pd.read_parquet(Path(result.run_dir) / "requests.parquet")
    assert set(requests["way"]) == {"reuse", "scratch"}
    services = {r.service for r in result.qoais}
    assert services == {"herd-health", "model-sharing"}


def test_coverage_counts_the_satellite_footprint_where_no_cell_serves(grazing_run: tuple[Any, Any]) -> None:
    """The satellite adds coverage only inside its footprint and only where no terrestrial cell serves."""
    # Prepare
    result, model = grazing_run
    terrestrial = model.coverage_grid()
    merged = model.satellite_grid()
    xs, ys = np.meshgrid(merged.xs, merged.ys)
    inside = in_footprint(model.satellite, np.column_stack((xs.ravel(), ys.ravel()))).reshape(xs.shape)
    # Assert
    gained = merged.uplink_bps != terrestrial.uplink_bps
    assert gained.any()
    assert not (gained & ~inside).any()
    assert ((terrestrial.uplink_bps <= 0) | (terrestrial.downlink_bps <= 0))[gained].all()
    assert (merged.uplink_bps[gained] <= model.satellite.uplink_bps).all()
    kpis = result.kpis
    assert (kpis["coverage"] >= kpis["coverage_terrestrial"]).all()


def test_herds_walk_every_second_of_the_run(grazing_run: tuple[Any, Any]) -> None:
    """Each herd moves once per simulated second from t = 1 s to the end (its walk is never dropped)."""
    # Prepare
    _, model = grazing_run
    herds = [a for a in model.agents if getattr(a, "kind", "") == "herd"]
    # Assert
    assert len(herds) == 3
    for herd in herds:
        assert float(model.time) - 2.0 <= herd.clock_s <= float(model.time)


def test_the_second_farm_trains_as_device_endpoints_over_the_bus(grazing_run: tuple[Any, Any]) -> None:
    """Farm B's rounds are federated services on the bus: one authenticated update per device and round
    arrives from the device host (which trained them), none is refused, and the rounds follow each other
    on the simulated clock after the last herd-health round."""
    # Prepare
    result, model = grazing_run
    sharing = _sharing(model)
    services = result.summary["services"]["model-sharing"]
    devices = int(services["farm_devices"])
    requests = pd.read_parquet(Path(result.run_dir) / "requests.parquet").set_index("way")
    # Assert: every round of both ways aggregated one update per farm device, counted in summary.json
    assert devices == len(sharing.farm_local) == 4
    assert services["reuse_updates"] == services["reuse_rounds"] * devices
    assert services["scratch_updates"] == services["scratch_rounds"] * devices > services["reuse_updates"]
    for way in ("reuse", "scratch"):
        federation = sharing.federations[way]
        assert federation.service in model.networks
        assert [r.updates for r in federation.rounds] == [devices] * federation.rounds_done
        assert requests.loc[way, "updates"] == federation.updates_accepted
        # the clock: from the end of herd-health's last round, one modelled round after the other
        assert federation.started_s == pytest.approx(float(result.kpis["sim_time_s"].iloc[-1]))
        assert federation.finished_s - federation.started_s == pytest.approx(
            requests.loc[way, "training_s"], rel=1e-9
        )
    # the device host trained them (its updates: farm A's and farm B's), the network only aggregated
    farm_a = len(model.network.aggregated) + len(model.network.pending)
    farm_b = services["reuse_updates"] + services["scratch_updates"]
    assert model.local_device_host.updates_sent == farm_a + farm_b
    assert set(model.local_device_host.federated) == {"herd-health", *SHARING_SERVICES}
    assert not {k for k in result.summary["bus"] if k.startswith("rejected")} - {"rejected_late"}
    assert model.time == pytest.approx(max(f.finished_s for f in sharing.federations.values()), abs=1.0)


def test_the_second_farm_starts_from_the_registry_model_as_received(
    wire_and_run: tuple[Wire, Any, SatelliteTwinModel],
) -> None:
    """Round 1's global model of the reuse service is the registry card's model, decoded from the wire;
    the fetch's bits are that message's size as it was published."""
    # Prepare
    wire, result, model = wire_and_run
    sharing = _sharing(model)
    outcome = sharing.outcome
    card = next(c for c in sharing.registry.cards if c.model_id == outcome.reused_model_id)
    received = wire.received[("model-sharing.reuse", 1)]
    topic = model.topics.global_model("model-sharing.reuse", 1)
    # Assert: fp32 on the wire: exactly the card's tensors; the scratch way starts from its own init
    assert set(received) == set(card.params)
    assert all(torch.equal(received[k], card.params[k]) for k in card.params)
    scratch = wire.received[("model-sharing.scratch", 1)]
    assert all(torch.equal(scratch[k], sharing.scratch_start[k]) for k in scratch)
    assert not all(torch.equal(scratch[k], card.params[k]) for k in scratch)
    assert outcome.reuse.transfer_bits == 8 * wire.published[topic]
    assert result.summary["services"]["model-sharing"]["fetch_bytes"] == wire.published[topic]


def test_the_reused_model_travels_in_the_wire_dtype(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With fp16 on the wire farm B's devices start from the card's model rounded to fp16, and the fetch
    is the (smaller) fp16 message."""
    # Prepare
    wire = Wire()
    wire.watch(monkeypatch)
    overrides = {**SMALL, "fl.wire_dtype": "fp16", "sharing.max_rounds": "2", "sharing.min_accuracy": "0"}
    # Execute
    result, model = _run_grazing(tmp_path, overrides=overrides, rounds=2)
    # Assert
    sharing = _sharing(model)
    card = next(c for c in sharing.registry.cards if c.model_id == sharing.outcome.reused_model_id)
    received = wire.received[("model-sharing.reuse", 1)]
    rounded = {k: v.to(torch.float16).to(torch.float32) for k, v in card.params.items()}
    assert all(torch.equal(received[k], rounded[k]) for k in card.params)
    assert not all(torch.equal(received[k], card.params[k]) for k in card.params)
    fp32_bytes = 4 * sum(v.numel() for v in card.params.values())
    fetched = wire.published[model.topics.global_model("model-sharing.reuse", 1)]
    assert sharing.outcome.reuse.transfer_bits == 8 * fetched
    assert fetched < 0.6 * fp32_bytes


def test_forged_messages_on_the_sharing_services_are_refused(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, grazing_run: tuple[Any, Any]
) -> None:
    """Forged farm-B updates raced ahead of the real ones, a genuine global model re-labelled for the next
    round, an unsigned plan and global model of a round to come: all refused as forged, tables unchanged."""
    # Prepare
    clean, _ = grazing_run
    original = LocalBus.publish
    state: dict[str, Any] = {"sent": 0, "first_global": {}}

    def attack(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if "/ml/model-sharing." in topic and topic.endswith("/global"):
            root, rest = topic.split("/ml/")
            service, rnd = rest.split("/")[0], int(rest.split("/")[1])
            genuine = decode_model(payload, max_bytes=1 << 26)
            evil = {k: -3 * v for k, v in genuine.tensors.items()}
            for i in range(4):  # the farm's devices, ahead of their real updates
                agent = f"farm-b-{i:03d}"
                meta = {"round": rnd, "service": service, "agent_id": agent, "auth": "00" * 32}
                original(self, f"{root}/ml/{service}/{rnd}/update/{agent}", encode_model(evil, meta))
                state["sent"] += 1
            if rnd == 1:
                state["first_global"][service] = genuine
            elif rnd == 2:  # round 1's genuine, signed global model re-labelled as round 2's, ahead of it
                first = state["first_global"][service]
                relabelled = encode_model(first.tensors, {**first.metadata, "round": 2})
                original(self, topic, relabelled, retain=True)
                state["sent"] += 1
            future = {"round": rnd + 1, "service": service, "sender": "network"}
            original(self, f"{root}/ml/{service}/{rnd + 1}/global", encode_model(evil, future), retain=True)
            plan = {"schema": "twin.fl.round.v1", "run_id": root.rsplit("/", 1)[-1], "round": rnd + 1}
            original(self, f"{root}/ml/{service}/{rnd + 1}/select", encode_json(plan), retain=True)
            state["sent"] += 2
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", attack)
    # Execute
    attacked, _ = _run_grazing(tmp_path)
    # Assert: the same tables, every forgery counted (the last round's "future" plan and model may be unread)
    pd.testing.assert_frame_equal(attacked.kpis, clean.kpis, check_exact=True)
    tables = [pd.read_parquet(Path(r.run_dir) / "requests.parquet") for r in (attacked, clean)]
    pd.testing.assert_frame_equal(*tables, check_exact=True)
    assert attacked.summary["services"] == clean.summary["services"]
    assert state["sent"] > 40 and "model-sharing.scratch" in state["first_global"]
    assert attacked.summary["bus"].get("rejected_forged", 0) >= state["sent"] - 4
    assert "rejected_forged" not in clean.summary["bus"]
