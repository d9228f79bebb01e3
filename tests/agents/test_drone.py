import numpy as np
import pytest

from broker.bus import LocalBus
from twin.runner import resolve_config
from usecases.registry import BuildContext


def _model(**overrides: str):  # type: ignore[no-untyped-def]
    spec, config = resolve_config("grid-inspection", {"devices.count": "6", **overrides})
    return spec.build(config, BuildContext("gi-test", 4, LocalBus(), 2))


def test_drones_fly_their_corridor_out_and_back() -> None:
    """A drone advances along its route and turns back at the far end, never leaving the route."""
    model = _model()
    drone = model.devices[0]
    drone.travelled_m = 0.0
    drone.move(0.0)
    np.testing.assert_allclose(drone.position, drone.route_m[0], atol=1e-6)
    drone.move(1.0)
    assert np.linalg.norm(drone.position - drone.route_m[0]) == pytest.approx(drone.speed_mps, rel=1e-6)
    drone.travelled_m = drone.route_length_m
    drone.move(0.0)
    np.testing.assert_allclose(drone.position, drone.route_m[-1], atol=1e-6)
    drone.travelled_m = 2 * drone.route_length_m - drone.speed_mps
    drone.move(1.0)  # back home after a full loop
    np.testing.assert_allclose(drone.position, drone.route_m[0], atol=1e-6)


def test_moving_drones_change_their_links() -> None:
    """As drones fly, their SINR changes step to step (links are recomputed with correlated shadowing)."""
    model = _model()
    before = np.array([d.sinr_db for d in model.devices])
    for _ in range(30):
        model.step()
    after = np.array([d.sinr_db for d in model.devices])
    assert not np.allclose(before, after)
    assert all(d.height_m == 80.0 for d in model.devices)


def test_bad_route_is_refused() -> None:
    """A route with fewer than two waypoints is refused with a message naming the problem."""
    from agents.drone import InspectionDrone

    model = _model()
    with pytest.raises(ValueError, match="two"):
        InspectionDrone(
            model,
            model.space,
            agent_id="x",
            route_m=np.zeros((1, 2)),
            start_fraction=0.0,
            speed_mps=10.0,
            altitude_m=80.0,
            compute=model.devices[0].compute,
            data=model.devices[0].data,
            landscape="forest",
        )
