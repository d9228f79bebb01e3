import time
from pathlib import Path

import paho.mqtt.client as mqtt
import pandas as pd
import pytest

from broker.codec import encode_model
from broker.embedded import EmbeddedBroker
from twin.runner import RunOptions, run_scenario

SMALL = {"devices.count": "16", "bus.max_payload_bytes": "200000"}


@pytest.mark.broker
def test_hostile_messages_are_counted_and_do_not_change_results(
    tmp_path: Path, embedded_broker: EmbeddedBroker
) -> None:
    """Garbage, oversized, unknown-topic and replayed model messages injected into a live run are
    rejected and counted; the KPI table equals that of an undisturbed run with the same seed."""
    # Prepare
    clean = run_scenario(
        RunOptions("home-health", seed=5, overrides=SMALL, broker="local", out_dir=tmp_path, rounds=3)
    )
    attacker = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id="attacker")
    attacker.connect("127.0.0.1", embedded_broker.port)
    attacker.loop_start()
    deadline = time.monotonic() + 10
    while not attacker.is_connected() and time.monotonic() < deadline:
        time.sleep(0.01)
    assert attacker.is_connected()
    replay: dict[str, bytes] = {}

    def capture(client: mqtt.Client, userdata: object, msg: mqtt.MQTTMessage) -> None:
        genuine = 1000 < len(msg.payload) < 300_000  # not one of the messages injected below
        update = "/update/" in msg.topic or "/updates/" in msg.topic  # one device's, or a host's packed
        if update and genuine and not replay and not msg.topic.endswith("/hh-0004"):
            replay[msg.topic] = bytes(msg.payload)

    attacker.on_message = capture
    injected = {"done": False}

    def on_step(model: object) -> None:
        root = model.topics.root  # type: ignore[attr-defined]
        if not injected["done"]:
            attacker.subscribe(f"{root}/ml/#", qos=1)
            forged = encode_model(
                {k: -3 * v for k, v in model.network.global_params.items()},  # type: ignore[attr-defined]
                {
                    "round": 2,
                    "service": "fall-detection",
                    "agent_id": "hh-0004",
                    "n_samples": 7,
                    "auth": "0" * 64,
                },
            )
            infos = [
                attacker.publish(f"{root}/ml/fall-detection/2/update/hh-0004", forged, qos=1),
                attacker.publish(f"{root}/ml/fall-detection/2/update/hh-0001", b"not safetensors", qos=1),
                attacker.publish(f"{root}/ml/fall-detection/2/update/hh-0002", b"\0" * 300_000, qos=1),
                attacker.publish(f"{root}/ml/fall-detection/2/update/hh-0003/sideways", b"?", qos=1),
            ]
            for info in infos:
                info.wait_for_publish(5)
            injected["done"] = True
        elif replay and not injected.get("replayed"):
            for topic, payload in replay.items():
                attacker.publish(topic, payload, qos=1).wait_for_publish(5)
            injected["replayed"] = True
            model.pump(1.0)  # type: ignore[attr-defined]  # let the replay arrive before the run can end

    # Execute
    try:
        result = run_scenario(
            RunOptions(
                "home-health", seed=5, overrides=SMALL, broker=embedded_broker.url, out_dir=tmp_path, rounds=3
            ),
            on_step=on_step,
        )
    finally:
        attacker.loop_stop()
        attacker.disconnect()
    # Assert
    assert result.status == "finished"
    pd.testing.assert_frame_equal(result.kpis, clean.kpis, check_exact=True)
    bus = result.summary["bus"]
    assert bus.get("rejected_malformed", 0) >= 1
    assert bus.get("rejected_oversized", 0) >= 1
    assert bus.get("rejected_unknown", 0) >= 1
    assert bus.get("rejected_forged", 0) >= 1
    assert bus.get("rejected_duplicate", 0) + bus.get("rejected_late", 0) >= 1
