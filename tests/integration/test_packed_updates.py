"""Packed updates in a run: the same results as one message per device, far fewer messages, resends work."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import pytest

from broker.bus import LocalBus
from twin.runner import RunOptions, run_scenario

SMALL = {"devices.count": "40", "inference.enabled": "false"}


def _run(tmp_path: Path, **extra: str):  # type: ignore[no-untyped-def]
    return run_scenario(
        RunOptions(
            "home-health", seed=2, overrides={**SMALL, **extra}, broker="local", out_dir=tmp_path, rounds=3
        )
    )


def _record(monkeypatch: pytest.MonkeyPatch, drop_first: str | None = None) -> list[str]:
    topics: list[str] = []
    dropped: list[str] = []
    original = LocalBus.publish

    def record(self: LocalBus, topic: str, payload: bytes, *, qos: int = 1, retain: bool = False) -> None:
        topics.append(topic)
        if drop_first is not None and drop_first in topic and not dropped:
            dropped.append(topic)  # lost on the way, once
            return
        original(self, topic, payload, qos=qos, retain=retain)

    monkeypatch.setattr(LocalBus, "publish", record)
    return topics


@pytest.mark.parametrize("wire", ["fp32", "int8"])
def test_packed_and_single_updates_give_identical_tables(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, wire: str
) -> None:
    topics = _record(monkeypatch)
    packed = _run(tmp_path / "packed", **{"fl.wire_dtype": wire})
    n_packed = sum("/updates/" in t for t in topics)
    topics.clear()
    single = _run(tmp_path / "single", **{"fl.wire_dtype": wire, "bus.pack_updates": "false"})
    n_single = sum("/update/" in t for t in topics)
    assert packed.status == single.status == "finished"
    assert (packed.kpis["accepted"] > 0).all()
    pd.testing.assert_frame_equal(packed.kpis, single.kpis, check_exact=True)
    uploads = int((single.kpis["selected"] - single.kpis["offline"]).sum())
    assert n_single == uploads > 3 * 10 and 3 <= n_packed <= 3 * 2  # ≤ 40 rows: one or two messages a round


def test_a_lost_batch_is_asked_for_again_and_counted_once(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    clean = _run(tmp_path / "clean", **{"bus.resend_after_s": "0.2"})
    topics = _record(monkeypatch, drop_first="/updates/")
    lossy = _run(tmp_path / "lossy", **{"bus.resend_after_s": "0.2"})
    assert lossy.status == "finished"
    pd.testing.assert_frame_equal(lossy.kpis, clean.kpis, check_exact=True)
    batch = next(t for t in topics if "/updates/" in t)
    assert topics.count(batch) == 2  # the lost one and its resend (once, though every device asked)
    assert lossy.summary["bus"].get("rejected_duplicate", 0) == 0
