import numpy as np

from broker.bus import LocalBus
from twin.runner import resolve_config
from usecases.registry import BuildContext


def _model():  # type: ignore[no-untyped-def]
    spec, config = resolve_config("robotaxi", {"devices.count": "10"})
    return spec.build(config, BuildContext("rt-test", 1, LocalBus(), 2))


def test_taxis_stay_on_streets_inside_the_city() -> None:
    """After many steps every taxi is on a street (x or y a multiple of the block) and inside the map."""
    model = _model()
    block = model.devices[0].block_m
    for _ in range(200):
        for taxi in model.devices:
            taxi.move(1.0)
            x, y = taxi.position
            on_street = min(x % block, block - x % block) < 1e-6 or min(y % block, block - y % block) < 1e-6
            assert on_street, (taxi.agent_id, x, y)
            assert 0 <= x <= model.area.width_m and 0 <= y <= model.area.height_m


def test_taxis_drive_at_their_speed() -> None:
    """Mid-block, one second of driving east moves a taxi exactly speed × 1 s east."""
    model = _model()
    taxi = model.devices[0]
    block = taxi.block_m
    taxi.position = np.array([2 * block + 1.0, 2 * block])
    taxi.heading = 0  # east
    taxi.move(1.0)
    np.testing.assert_allclose(taxi.position, [2 * block + 1.0 + taxi.speed_mps, 2 * block])


def test_taxis_hand_over_between_cells() -> None:
    """Driving across the small cells changes some taxis' serving cell."""
    model = _model()
    first = {d.agent_id: d.serving_cell for d in model.devices}
    for _ in range(120):
        model.step()
    assert any(d.serving_cell != first[d.agent_id] for d in model.devices)
