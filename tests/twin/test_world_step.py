"""The per-step world update: cached device order, link arrays by agent id, telemetry energy."""

from __future__ import annotations

import logging
from collections.abc import Iterator
from pathlib import Path

import numpy as np
import pytest

from twin.model import TwinModel
from twin.runner import RunOptions, RunSession


@pytest.fixture
def world(tmp_path: Path) -> Iterator[TwinModel]:
    """A small home-health world on the in-process bus."""
    logging.getLogger("broker").setLevel(logging.ERROR)
    session = RunSession(
        RunOptions("home-health", seed=0, broker="local", out_dir=tmp_path, overrides={"devices.count": "12"})
    )
    model = session.open()
    try:
        yield model
    finally:
        session.close()


def test_devices_are_sorted_once_and_returned_as_a_new_list(world: TwinModel) -> None:
    """``devices`` is in id order, a fresh list each call (callers may mutate it safely)."""
    # Execute
    first, second = world.devices, world.devices
    first.clear()
    # Assert
    assert second == world.devices
    assert [d.agent_id for d in second] == sorted(d.agent_id for d in second)
    assert second is not world.devices


def test_link_arrays_match_the_per_device_attributes(world: TwinModel) -> None:
    """Every device's link attributes are its row of ``link_arrays``, as Python scalars."""
    snap = world.link_arrays
    assert snap is not None
    for device in world.devices:
        row = world.link_index[device.agent_id]
        assert device.serving_cell == snap.serving_cell_ids[row] and type(device.serving_cell) is str
        assert device.downlink_bps == snap.downlink_bps[row] and type(device.downlink_bps) is float
        assert device.uplink_bps == snap.uplink_bps[row]
        assert device.sinr_db == snap.sinr_db[row]
        assert device.reliability == snap.reliability[row]
        assert world.cell_share(device.agent_id) == int(snap.cell_share[row])
    assert world.cell_share("nobody") == 1
    served = {bs.agent_id: bs.served for bs in world.base_stations}
    assert sum(served.values()) == len(world.devices)


def test_a_moved_device_gets_new_links_in_the_next_step(world: TwinModel) -> None:
    """Moving a device (its position lives in the Mesa space's array) makes the step recompute links."""
    # Prepare
    device = world.devices[0]
    before = world.link_arrays
    world.step()
    assert world.link_arrays is before  # homes do not move: no recomputation
    original_move = device.move

    def move(dt_s: float) -> None:
        device.position = np.asarray(device.position) + 50.0

    device.move = move  # type: ignore[method-assign]
    world.mobility.invalidate()  # devices are grouped by how they move once per device list
    # Execute
    world.step()
    device.move = original_move  # type: ignore[method-assign]
    world.mobility.invalidate()
    # Assert
    assert world.link_arrays is not before
    row = world.link_index[device.agent_id]
    assert device.downlink_bps == world.link_arrays.downlink_bps[row]


def test_telemetry_reports_the_ledger_total_of_each_device(world: TwinModel) -> None:
    """A device's telemetry carries its own energy total, following new bookings."""
    # Prepare
    device = world.devices[3]
    start = world.energy.total(device.agent_id)
    # Execute
    world.energy.add(device.agent_id, "compute", 2.5, service="test")
    fields = device.telemetry()
    # Assert
    assert fields["energy_j"] == start + 2.5
    assert fields["sinr_db"] == device.sinr_db or fields["sinr_db"] == -999.0
    assert (fields["x_m"], fields["y_m"]) == tuple(device.position.tolist())
