"""industrial-robots' split inference and virtual-classroom on the wire: every JSON message they publish
matches its shipped schema, and a forged message of each kind is refused without changing the run.

The forgeries have a valid shape (each validates against its schema) but a made-up ``auth``: a tick and
answers that do not carry the network's signature, a batch without the host's HMAC.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import jsonschema
import pandas as pd
import pytest

from broker.bus import LocalBus
from broker.json_codec import encode_json
from twin.runner import RunOptions, run_scenario
from twin.schemas import schema_by_id

RUNS = {
    "industrial-robots": {"devices.count": "6", "devices.test_samples": "80", "devices.samples_max": "80"},
    "virtual-classroom": {"devices.count": "12", "fl.clients_per_round": "0.5"},
}
EXPECTED = {
    "industrial-robots": {"twin.split.tick.v1", "twin.split.request.v1", "twin.split.response.v1"},
    "virtual-classroom": {"twin.classroom.request.v1", "twin.classroom.response.v1"},
}


def _forgeries(scenario: str, topic: str, doc: dict[str, Any]) -> list[tuple[str, dict[str, Any]]]:
    """Schema-valid messages of each kind of ``scenario``, none signed by whom it claims, for a tick."""
    root = topic.rsplit("/", 1)[0]
    base = {"run_id": doc["run_id"], "tick": doc["tick"]}
    if scenario == "industrial-robots":
        host = "host-0"
        return [
            (topic, {**doc, "tick": doc["tick"] + 1, "auth": "cd" * 64}),
            (
                f"{root}/request/{host}",
                {
                    **base,
                    "schema": "twin.split.request.v1",
                    "host": host,
                    "results": [
                        {
                            "agent_id": "robot-000",
                            "model_version": 0,
                            "split_point": 5,
                            "class": 0,
                            "confidence": 0.9,
                        }
                    ],
                    "auth": "ab" * 32,
                },
            ),
            (
                f"{root}/response/{host}",
                {
                    **base,
                    "schema": "twin.split.response.v1",
                    "host": host,
                    "answers": [{"agent_id": "robot-000", "final_class": 1}],
                    "auth": "ef" * 64,
                },
            ),
        ]
    host = "classroom-host-0"
    return [
        (
            f"{root}/request/{host}",
            {
                **base,
                "schema": "twin.classroom.request.v1",
                "host": host,
                "results": [{"agent_id": "vr-0000", "state": 0, "confidence": 0.9}],
                "jobs": [{"agent_id": "vr-0000", "kind": "render", "offset_s": 0.1, "flops": 1e9}],
                "auth": "ab" * 32,
            },
        ),
        (
            f"{root}/response/{host}",
            {
                **base,
                "schema": "twin.classroom.response.v1",
                "host": host,
                "interventions": [0],
                "auth": "ef" * 64,
            },
        ),
    ]


def _run(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch, *, hostile: bool
) -> tuple[Any, list[tuple[str, dict[str, Any]]], list[tuple[str, dict[str, Any]]]]:
    seen: list[tuple[str, dict[str, Any]]] = []
    forged: list[tuple[str, dict[str, Any]]] = []
    original = LocalBus.publish

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        if "/svc/" in topic:
            doc = json.loads(payload)
            seen.append((topic, doc))
            if hostile and not forged and topic.endswith("/tick") and doc["tick"] == 1:
                forged.extend(_forgeries(scenario, topic, doc))
                for t, d in forged:
                    original(self, t, encode_json(d))
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    name = f"{scenario}-{'hostile' if hostile else 'clean'}"
    result = run_scenario(
        RunOptions(
            scenario, seed=2, overrides=RUNS[scenario], broker="local", out_dir=tmp_path / name, rounds=1
        )
    )
    monkeypatch.setattr(LocalBus, "publish", original)
    assert result.status == "finished", result.error
    return result, seen, forged


@pytest.mark.parametrize("scenario", sorted(RUNS))
def test_every_message_matches_its_schema_and_forgeries_are_refused(
    scenario: str, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    # Execute
    clean, seen, _ = _run(scenario, tmp_path, monkeypatch, hostile=False)
    attacked, _, forged = _run(scenario, tmp_path, monkeypatch, hostile=True)
    # Assert: the real messages, and the forgeries' shapes
    assert EXPECTED[scenario] <= {doc["schema"] for _, doc in seen}
    for _, doc in seen + forged:
        jsonschema.validate(doc, schema_by_id(doc["schema"]))
    # Assert: each forgery refused as forged, the run's tables unchanged
    assert len(forged) == len(EXPECTED[scenario])
    assert attacked.summary["bus"].get("rejected_forged", 0) >= len(forged)
    assert "rejected_forged" not in clean.summary["bus"]
    pd.testing.assert_frame_equal(attacked.kpis, clean.kpis, check_exact=True)
    requests = [pd.read_parquet(r.run_dir / "requests.parquet") for r in (attacked, clean)]
    pd.testing.assert_frame_equal(*requests, check_exact=True)
