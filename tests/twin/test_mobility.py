"""Vectorised mobility (twin/mobility.py) against the agents' own move(); devices that move themselves."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pytest

from agents.device import Device
from agents.drone import InspectionDrone
from broker.bus import LocalBus
from twin.mobility import (
    HEADINGS,
    Mobility,
    OrbitFleet,
    RouteFleet,
    StreetFleet,
    counter_uniforms,
    write_positions,
)
from twin.model import TwinModel
from twin.runner import resolve_config
from usecases.registry import BuildContext


def _build(scenario: str, overrides: dict[str, str], *, seed: int = 3) -> Any:
    spec, config = resolve_config(scenario, overrides)
    return spec.build(config, BuildContext(f"mob-{scenario}", seed, LocalBus(), 2))


def _pair(scenario: str, overrides: dict[str, str], *, seed: int = 3) -> tuple[Any, Any]:
    """Two identical worlds: the first moved by fleets, the second by every device's own move()."""
    fleets, reference = _build(scenario, overrides, seed=seed), _build(scenario, overrides, seed=seed)
    reference.mobility.per_agent = True
    return fleets, reference


def _xy(model: TwinModel) -> np.ndarray:
    return np.array([d.position for d in model.devices], dtype=float)


def test_drones_and_robots_move_exactly_as_their_own_move(tmp_path: Path) -> None:
    """Route fleets (drones on shared corridors, factory robots on their lines) give bit-identical
    positions and distances to InspectionDrone.move, step after step, out and back several times."""
    for scenario, overrides in (
        ("grid-inspection", {"devices.count": "14", "devices.speed_mps": "97.0"}),
        ("industrial-robots", {}),
    ):
        fleets, reference = _pair(scenario, overrides)
        devices, ref_devices = fleets._device_list(), reference._device_list()
        for _ in range(400):
            fleets.mobility.move(devices, 1.0)
            reference.mobility.move(ref_devices, 1.0)
            np.testing.assert_array_equal(_xy(fleets), _xy(reference))
        assert [type(f) for f in fleets.mobility.fleets] == [RouteFleet]
        assert fleets.mobility.movers == []
        assert [d.travelled_m for d in devices] == [d.travelled_m for d in ref_devices]
        # several drones share a corridor: the fleet stores each route once
        assert len(fleets.mobility.fleets[0]._cum) < sum(len(d._cumulative) for d in devices)
        # far enough to have turned back at both ends of every route
        assert all(d.travelled_m > 2 * d.route_length_m for d in devices)


def test_route_fleet_is_exact_on_waypoints_and_repeated_points() -> None:
    """Distances landing exactly on waypoints, zero-length segments, one-segment and long routes: the
    fleet's shifted search, made exact, picks the segment InspectionDrone._point picks."""
    rng = np.random.default_rng(7)
    routes = [
        np.array([[0.0, 0.0], [10.0, 0.0], [10.0, 0.0], [10.0, 10.0]]),  # a repeated waypoint
        np.array([[100.0, 100.0], [100.0, 130.0]]),  # one segment
        np.array([[5.0, 5.0], [5.0, 5.0], [25.0, 5.0], [25.0, 5.0]]),  # repeated at both ends
        np.column_stack([np.linspace(50.0, 5900.0, 400), 3000 + 2000 * np.sin(np.linspace(0, 9, 400))]),
        np.cumsum(rng.uniform(0.0, 3.0, (60, 2)), axis=0) + 1000.0,
    ]
    speeds = [5.0, 2.5, 10.0, 37.3, 0.7, 1.0]
    worlds = []
    for per_agent in (False, True):
        model = _build("grid-inspection", {"devices.count": "1"})
        first = model._device_list()[0]
        for i, (route, speed) in enumerate((r, v) for r in routes for v in speeds):
            model.add_device(
                InspectionDrone(
                    model,
                    model.space,
                    agent_id=f"route-{i:03d}",
                    route_m=route,
                    start_fraction=0.0 if i % 2 else float(i % 7) / 7,
                    speed_mps=speed,
                    altitude_m=80.0,
                    compute=first.compute,
                    data=first.data,
                    landscape="forest",
                )
            )
        model.mobility.per_agent = per_agent
        worlds.append(model)
    fleets, reference = worlds
    for _ in range(500):
        for world in worlds:
            world.mobility.move(world._device_list(), 1.0)
        np.testing.assert_array_equal(_xy(fleets), _xy(reference))
    assert [len(f.agents) for f in fleets.mobility.fleets] == [1 + len(routes) * len(speeds)]


def test_route_fleet_corrects_a_search_rounded_past_a_waypoint() -> None:
    """Just below a waypoint, the shifted search may land one segment too far; the fleet steps back."""
    model = _build("grid-inspection", {"devices.count": "1"})
    first = model._device_list()[0]
    routes = {"a": np.array([[0.0, 0.0], [0.1, 0.0]]), "b": np.array([[0.0, 5.0], [0.2, 5.0], [0.2, 6.0]])}
    drones = {}
    for name, route in routes.items():
        drones[name] = InspectionDrone(
            model,
            model.space,
            agent_id=f"x-{name}",
            route_m=route,
            start_fraction=0.0,
            speed_mps=1.0,
            altitude_m=80.0,
            compute=first.compute,
            data=first.data,
            landscape="forest",
        )
        model.add_device(drones[name])
    devices = model._device_list()
    model.mobility.move(devices, 0.0)  # seat them: route b's distances are shifted by 0.1 + 1 m
    assert drones["b"]._cumulative[1] == 0.2
    just_below = float(np.nextafter(0.2, 0.0))
    assert just_below + 1.1 == 0.2 + 1.1  # the shifted search cannot tell them apart
    drones["b"].travelled_m = just_below
    model.mobility.move(devices, 0.0)
    by_fleet = np.array(drones["b"].position)
    drones["b"].move(0.0)  # the reference
    np.testing.assert_array_equal(by_fleet, drones["b"].position)
    assert by_fleet[0] < 0.2  # still on the first segment (the next one would give x = 0.2 exactly)


def test_a_seated_drone_still_moves_by_itself() -> None:
    """A drone in a fleet reads and writes the fleet's state: its own move() and the fleet's agree."""
    model = _build("grid-inspection", {"devices.count": "3"})
    devices = model._device_list()
    model.mobility.move(devices, 1.0)  # seats the drones
    drone = devices[0]
    drone.travelled_m = 0.0
    drone.move(0.0)
    np.testing.assert_allclose(drone.position, drone.route_m[0], atol=1e-6)
    model.mobility.move(devices, 1.0)
    assert drone.travelled_m == drone.speed_mps
    assert np.linalg.norm(drone.position - drone.route_m[0]) == pytest.approx(drone.speed_mps, rel=1e-6)


def test_taxis_follow_their_own_move_exactly() -> None:
    """The street fleet drives the same paths as Robotaxi.move (same counter-based turn draws), also
    when taxis pass several intersections in one second."""
    for overrides in ({"devices.count": "30"}, {"devices.count": "12", "devices.speed_mps": "420.0"}):
        fleets, reference = _pair("robotaxi", overrides)
        devices, ref_devices = fleets._device_list(), reference._device_list()
        for _ in range(300):
            fleets.mobility.move(devices, 1.0)
            reference.mobility.move(ref_devices, 1.0)
            np.testing.assert_array_equal(_xy(fleets), _xy(reference))
            assert [d.heading for d in devices] == [d.heading for d in ref_devices]
        assert [type(f) for f in fleets.mobility.fleets] == [StreetFleet]
        assert [d.turns_drawn for d in devices] == [d.turns_drawn for d in ref_devices]
        assert sum(d.turns_drawn for d in devices) > len(devices)


def test_taxis_stay_on_streets_and_turn_only_at_intersections() -> None:
    """Every taxi of the fleet stays on a street inside the map, and whenever its heading changed it
    drove straight to an intersection and on from there along its new heading."""
    model = _build("robotaxi", {"devices.count": "40"}, seed=8)
    taxis = model._device_list()
    block, speed = taxis[0].block_m, taxis[0].speed_mps
    turns = 0
    for _ in range(400):
        before = [(np.array(t.position), t.heading) for t in taxis]
        model.mobility.move(taxis, 1.0)
        for taxi, (prev, old) in zip(taxis, before, strict=True):
            x, y = taxi.position
            on_street = min(x % block, block - x % block) < 1e-6 or min(y % block, block - y % block) < 1e-6
            assert on_street, (taxi.agent_id, x, y)
            assert 0 <= x <= model.area.width_m and 0 <= y <= model.area.height_m
            new = taxi.heading
            if new == old:
                continue
            turns += 1
            corner = np.round(taxi.position / block) * block  # the intersection turned at (speed < block/2)
            to_corner, after = corner - prev, taxi.position - corner
            assert np.allclose(to_corner, HEADINGS[old] * np.abs(to_corner).sum(), atol=1e-6)
            assert np.allclose(after, HEADINGS[new] * np.abs(after).sum(), atol=1e-6)
            assert np.abs(to_corner).sum() + np.abs(after).sum() == pytest.approx(speed)
    assert turns > 100


def test_turns_are_drawn_with_their_probabilities() -> None:
    """Counter-based draws are uniform and independent per key: straight on 60 % at open crossings."""
    u = counter_uniforms(np.arange(200, dtype=np.uint64), np.zeros(200, dtype=np.uint64))
    assert ((u >= 0) & (u < 1)).all()
    stream = counter_uniforms(np.full(20000, 12345, dtype=np.uint64), np.arange(20000))
    assert stream.mean() == pytest.approx(0.5, abs=0.01)
    assert (stream < 0.6).mean() == pytest.approx(0.6, abs=0.015)
    assert counter_uniforms(12345, 7)[0] == stream[7]  # one draw equals the same draw among many


def test_herds_and_herding_drones_move_as_their_own_move() -> None:
    """The herd flock equals every herd's Herd.move (rotation and grazing targets from each herd's own
    generator); the orbit fleet equals HerdingDrone.move (cos/sin: equal to within 1e-9 m)."""
    fleets, reference = _pair("unmanned-grazing", {"devices.drones": "4", "devices.cameras": "3"}, seed=5)
    flock, ref_flock = fleets.mobility.held[0], reference.mobility.held[0]
    ref_flock.release()  # the reference herds walk one by one
    devices, ref_devices = fleets._device_list(), reference._device_list()
    for _ in range(700):  # past the first rotation (every 400 s)
        flock.move(1.0)
        for herd in ref_flock.herds:
            herd.move(1.0)
        fleets.mobility.move(devices, 1.0)
        reference.mobility.move(ref_devices, 1.0)
        np.testing.assert_array_equal(
            np.array([h.position for h in flock.herds]), np.array([h.position for h in ref_flock.herds])
        )
        np.testing.assert_allclose(_xy(fleets), _xy(reference), rtol=0, atol=1e-9)
    assert [type(f) for f in fleets.mobility.fleets] == [OrbitFleet]  # cameras are not visited at all
    assert [h.paddock_index for h in flock.herds] == [h.paddock_index for h in ref_flock.herds]
    assert any(h.paddock_index != 0 for h in flock.herds)


class _Walker(Device):
    """A user-written device: walks east 3 m a second."""

    def move(self, dt_s: float) -> None:
        self.position = self.position + np.array([3.0 * dt_s, 0.0])


class _ZigZagDrone(InspectionDrone):
    """A drone subclass with its own move(): not for the route fleet."""

    def move(self, dt_s: float) -> None:
        self.position = self.position + np.array([0.0, 1.0 * dt_s])


def test_devices_with_their_own_move_still_move(tmp_path: Path) -> None:
    """A custom device class and a drone subclass overriding move() move through their move(), after
    the fleets; the step recomputes their links."""
    model = _build("grid-inspection", {"devices.count": "4"})
    first = model._device_list()[0]
    walker = _Walker(
        model,
        model.space,
        agent_id="walker",
        position_m=(100.0, 100.0),
        height_m=1.5,
        compute=first.compute,
        data=first.data,
    )
    zigzag = _ZigZagDrone(
        model,
        model.space,
        agent_id="zigzag",
        route_m=np.array([[500.0, 500.0], [900.0, 500.0]]),
        start_fraction=0.0,
        speed_mps=10.0,
        altitude_m=80.0,
        compute=first.compute,
        data=first.data,
        landscape="forest",
    )
    model.add_device(walker)
    model.add_device(zigzag)
    step = model._user_step  # TwinModel.step's body (no service events: no round expects the newcomers)
    step()
    assert model.mobility.movers == [walker, zigzag]
    assert [len(f.agents) for f in model.mobility.fleets] == [4]
    np.testing.assert_array_equal(walker.position, [103.0, 100.0])
    np.testing.assert_array_equal(zigzag.position, [500.0, 501.0])
    row = model.link_index["walker"]
    assert walker.sinr_db == model.link_arrays.sinr_db[row]  # type: ignore[union-attr]
    step()
    np.testing.assert_array_equal(walker.position, [106.0, 100.0])


def test_leaving_the_space_is_refused_as_mesa_does() -> None:
    """Positions written at once follow Mesa's rule: outside a bounded space is a ValueError."""
    model = _build("robotaxi", {"devices.count": "2"})
    taxis = model._device_list()
    rows = np.array([model.space._agent_to_index[t] for t in taxis])
    before = model.space.agent_positions[rows].copy()
    with pytest.raises(ValueError, match="taxi-001"):
        write_positions(model.space, rows, np.array([[1.0, 1.0], [-5.0, 1.0]]), taxis)
    np.testing.assert_array_equal(model.space.agent_positions[rows], before)  # nothing stored


def test_per_agent_mode_is_the_old_loop() -> None:
    """Mobility(per_agent=True) moves every device through its move() and seats nothing in fleets."""
    model = _build("robotaxi", {"devices.count": "3"})
    mobility = Mobility(model.space, per_agent=True)
    mobility.move(model._device_list(), 1.0)
    assert mobility.fleets == [] and mobility.movers == model._device_list()
