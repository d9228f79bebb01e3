"""``grid-inspection`` (paper §2.3.8): drones patrol power-line corridors and learn fault detection.

Inspection drones fly their corridors at altitude through rural macro cells (3GPP RMa, with the
TR 36.777 aerial path-loss model above 10 m), so their links change as they fly. On board they
pre-process what they see and run a **preliminary fault detection**; uncertain spans and detected
faults are escalated to the network, which refines the decision with the latest global model. The
drones also train locally on the spans they collected and the network fuses their models by federated
learning, then redistributes them.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.drone import InspectionDrone
from agents.inference import InferenceConfig, SensorStream
from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile
from twin.model import TwinModel
from twin.radio import RadioConfig
from twin.settings import (
    AreaConfig,
    BusConfig,
    CarbonConfig,
    FederatedConfig,
    InferenceTargets,
    LinkConfig,
    QoAISTargets,
)
from usecases import grid_inspection_data
from usecases.common import add_base_stations, add_federated_training, add_two_stage_inference, new_model
from usecases.registry import AgentScenario, BuildContext, register

SERVICE = "fault-detection"
ALERT_SERVICE = "fault-alerts"
STREAM_SPANS = 64


@dataclass(frozen=True, slots=True)
class DroneFleet:
    """The drones: how many, their flight, and the data they collected."""

    count: int = 24
    """Inspection drones (devices)."""
    corridors: int = 6
    """Power-line corridors the drones patrol."""
    altitude_m: float = 80.0
    """Flight altitude above ground."""
    speed_mps: float = 12.0
    """Flight speed along the corridor."""
    samples_min: int = 60
    """Fewest labelled spans a drone holds."""
    samples_max: int = 240
    """Most labelled spans a drone holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the drones' label mix (Dirichlet α; small: very non-IID)."""
    test_samples: int = 1000
    """Held-out spans the fused model is evaluated on."""
    external: tuple[str, ...] = ()
    """Device ids served by clients outside the run (``twin device``)."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            count=self.count,
            corridors=self.corridors,
            speed_mps=self.speed_mps,
            samples_min=self.samples_min,
            dirichlet_alpha=self.dirichlet_alpha,
            test_samples=self.test_samples,
        )
        check_range("devices", "altitude_m", self.altitude_m, 1.5, 300.0)
        check_range("devices", "samples_max", self.samples_max, self.samples_min, 1e7)


def _drone_compute() -> ComputeProfile:
    return ComputeProfile(flops_per_s=1e12, power_w=15.0)


def _edge() -> ComputeProfile:
    return ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@dataclass(frozen=True, slots=True)
class GridInspectionConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(
            width_m=6000.0, height_m=6000.0, base_stations=4, bs_height_m=35.0, grid_m=100.0
        )
    )
    devices: DroneFleet = field(default_factory=DroneFleet)
    device_compute: ComputeProfile = field(default_factory=_drone_compute)
    edge_compute: ComputeProfile = field(default_factory=_edge)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="RMa", carrier_ghz=3.5, bandwidth_hz=40e6, load_factor=0.5, ue_tx_power_dbm=23.0
        )
    )
    link: LinkConfig = field(default_factory=lambda: LinkConfig(uplink_share=0.3, ue_radio_power_w=0.5))
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(deadline_s=3.0, round_interval_s=20.0)
    )
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    inference: InferenceConfig = field(default_factory=lambda: InferenceConfig(interval_s=5.0))
    inference_qoais: InferenceTargets = field(
        default_factory=lambda: InferenceTargets(
            accuracy=0.85, latency_s=1.0, energy_per_request_j=5.0, privacy_level=1, security_level=2
        )
    )
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.9,
            round_latency_s=3.0,
            energy_per_round_j=500.0,
            coverage=0.8,
            min_rate_bps=1e6,
            privacy_level=4,
            security_level=3,
        )
    )


def corridors(rng: np.random.Generator, area: AreaConfig, n: int, waypoints: int = 6) -> list[np.ndarray]:
    """Power-line corridors: gently bending polylines crossing the area from one side to the other."""
    routes = []
    for _ in range(n):
        xs = np.linspace(0.05, 0.95, waypoints) * area.width_m
        y0 = rng.uniform(0.1, 0.9) * area.height_m
        ys = y0 + np.cumsum(rng.normal(0.0, 0.06 * area.height_m, waypoints))
        route = np.column_stack([xs, np.clip(ys, 0.02 * area.height_m, 0.98 * area.height_m)])
        routes.append(route[:, ::-1] if rng.random() < 0.5 else route)  # north-south or east-west
    return routes


def build(config: GridInspectionConfig, ctx: BuildContext) -> TwinModel:
    """Create the world: rural cells, drones on their corridors with their data, training and alerts."""
    model = new_model("grid-inspection", config, ctx)
    add_base_stations(model, config)
    fleet = config.devices
    ids = [f"drone-{i:03d}" for i in range(fleet.count)]
    task, assigned = grid_inspection_data.generate(
        model.seeds.numpy("data"),
        ids,
        samples_min=fleet.samples_min,
        samples_max=fleet.samples_max,
        dirichlet_alpha=fleet.dirichlet_alpha,
        test_samples=fleet.test_samples,
    )
    flight = model.seeds.numpy("flight")
    routes = corridors(flight, config.area, fleet.corridors)
    for i, agent_id in enumerate(ids):
        drone = InspectionDrone(
            model,
            model.space,
            agent_id=agent_id,
            route_m=routes[i % len(routes)],
            start_fraction=float(flight.uniform()),
            speed_mps=fleet.speed_mps,
            altitude_m=fleet.altitude_m,
            compute=config.device_compute,
            data=task.local[agent_id],
            landscape=assigned[agent_id].landscape,
        )
        model.add_device(drone)
    model.finish_setup()
    network = add_federated_training(model, config, service=SERVICE, task=task)
    rng = model.seeds.numpy("sensor-streams")
    streams = {
        agent_id: SensorStream(*grid_inspection_data.sensor_stream(rng, assigned[agent_id], STREAM_SPANS))
        for agent_id in ids
    }
    add_two_stage_inference(model, config, service=ALERT_SERVICE, network=network, streams=streams)
    return model


register(
    AgentScenario(
        name="grid-inspection",
        summary="Drones patrol power lines: on-board fault detection, escalation, federated learning",
        paper_section="2.3.8",
        default_config=GridInspectionConfig,
        build=build,
    )
)
