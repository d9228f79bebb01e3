"""Standalone MQTT recorder used by the telemetry tests as a separate subscriber process.

It uses paho only (nothing of aiaas-twin), like any external tool would::

    python stream_recorder.py URL TOPIC_FILTER OUT.jsonl [--until-final S] [--idle S] [--timeout S]

It subscribes at QoS 1 to TOPIC_FILTER on URL (``mqtt[s]://[user:pass@]host:port``; TLS trusts the
system CAs or ``SSL_CERT_FILE``), prints ``ready`` once the broker has acknowledged the subscription,
and writes one JSON line per message: topic, delivered QoS, retain flag and the payload (text when
it is UTF-8, else only its size). It stops ``--until-final`` seconds after a final run status
(finished, stopped, aborted), or after ``--idle`` seconds without a message, or at ``--timeout``
(exit code 2).
"""

from __future__ import annotations

import argparse
import json
import sys
import threading
import time
import uuid
from pathlib import Path
from typing import Any
from urllib.parse import unquote, urlsplit

import paho.mqtt.client as mqtt

FINAL = ("finished", "stopped", "aborted")


def main() -> int:
    parser = argparse.ArgumentParser()
    parser.add_argument("url")
    parser.add_argument("topic_filter")
    parser.add_argument("out", type=Path)
    parser.add_argument("--until-final", type=float, default=None)
    parser.add_argument("--idle", type=float, default=None)
    parser.add_argument("--timeout", type=float, default=60.0)
    args = parser.parse_args()

    url = urlsplit(args.url)
    client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2, client_id=f"recorder-{uuid.uuid4().hex[:8]}")
    if url.username:
        client.username_pw_set(unquote(url.username), unquote(url.password or ""))
    if url.scheme == "mqtts":
        client.tls_set()
    subscribed = threading.Event()
    lock = threading.Lock()
    state: dict[str, Any] = {"last": time.monotonic(), "final_at": None}
    out = args.out.open("w", encoding="utf-8")

    def on_connect(client: mqtt.Client, userdata: Any, flags: Any, reason: Any, props: Any) -> None:
        client.subscribe(args.topic_filter, qos=1)

    def on_subscribe(client: mqtt.Client, userdata: Any, mid: int, codes: Any, props: Any) -> None:
        subscribed.set()

    def on_message(client: mqtt.Client, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        record: dict[str, Any] = {"topic": msg.topic, "qos": msg.qos, "retain": bool(msg.retain)}
        try:
            record["payload"] = msg.payload.decode("utf-8")
        except UnicodeDecodeError:
            record["binary_bytes"] = len(msg.payload)
        with lock:
            out.write(json.dumps(record) + "\n")
            state["last"] = time.monotonic()
            if msg.topic.endswith("/status") and any(
                f'"status":"{s}"' in record.get("payload", "") for s in FINAL
            ):
                state["final_at"] = time.monotonic()

    client.on_connect = on_connect
    client.on_subscribe = on_subscribe
    client.on_message = on_message
    client.connect(url.hostname or "127.0.0.1", url.port or (8883 if url.scheme == "mqtts" else 1883))
    client.loop_start()
    deadline = time.monotonic() + args.timeout
    code = 2
    if subscribed.wait(args.timeout):
        print("ready", flush=True)
        while time.monotonic() < deadline:
            time.sleep(0.05)
            with lock:
                now, final_at, last = time.monotonic(), state["final_at"], state["last"]
            if args.until_final is not None and final_at is not None and now - final_at >= args.until_final:
                code = 0
                break
            if args.idle is not None and now - last >= args.idle:
                code = 0
                break
    client.disconnect()
    client.loop_stop()
    out.close()
    return code


if __name__ == "__main__":
    sys.exit(main())
