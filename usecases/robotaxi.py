"""``robotaxi`` (paper §2.3.1): a robotaxi fleet learns the city's regional demand model together.

Robotaxis cruise a Manhattan street grid under 3GPP UMi street-canyon small cells, so they hand over
between cells as they drive. Each learns from the pickups it observes in the zones it crosses (its
district's mix, its shift's hours) and the network fuses the fleet's models by federated learning —
riders' trip data never leave the vehicles (the paper's privacy need).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from agents.robotaxi import Robotaxi
from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile
from twin.model import TwinModel
from twin.radio import RadioConfig
from twin.settings import AreaConfig, BusConfig, CarbonConfig, FederatedConfig, LinkConfig, QoAISTargets
from usecases import robotaxi_data
from usecases.common import add_base_stations, add_federated_training, new_model
from usecases.registry import AgentScenario, BuildContext, register

SERVICE = "demand-model"


@dataclass(frozen=True, slots=True)
class Fleet:
    """The robotaxis: how many, how they drive, what they observed."""

    count: int = 40
    """Robotaxis (devices)."""
    block_m: float = 150.0
    """Side of a street block of the grid they drive."""
    speed_mps: float = 10.0
    """Driving speed."""
    samples_min: int = 60
    """Fewest observed pickups a robotaxi holds."""
    samples_max: int = 240
    """Most observed pickups a robotaxi holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the robotaxis' data mix (Dirichlet α; small: very non-IID)."""
    test_samples: int = 2000
    """Held-out pickups the fused model is evaluated on."""
    external: tuple[str, ...] = ()
    """Device ids served by clients outside the run (``twin device``)."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            count=self.count,
            block_m=self.block_m,
            speed_mps=self.speed_mps,
            samples_min=self.samples_min,
            dirichlet_alpha=self.dirichlet_alpha,
            test_samples=self.test_samples,
        )
        check_range("devices", "samples_max", self.samples_max, self.samples_min, 1e7)


def _vehicle_computer() -> ComputeProfile:
    return ComputeProfile(flops_per_s=30e12, power_w=60.0)


def _edge() -> ComputeProfile:
    return ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@dataclass(frozen=True, slots=True)
class RobotaxiConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(
            width_m=1200.0, height_m=1200.0, base_stations=9, bs_height_m=10.0, grid_m=50.0
        )
    )
    devices: Fleet = field(default_factory=Fleet)
    device_compute: ComputeProfile = field(default_factory=_vehicle_computer)
    edge_compute: ComputeProfile = field(default_factory=_edge)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="UMi", carrier_ghz=3.5, bandwidth_hz=100e6, load_factor=0.5, tx_power_dbm=44.0
        )
    )
    link: LinkConfig = field(default_factory=lambda: LinkConfig(uplink_share=0.3, ue_radio_power_w=0.4))
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(deadline_s=1.0, clients_per_round=0.5, local_epochs=4)
    )
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.65,
            round_latency_s=1.0,
            energy_per_round_j=200.0,
            coverage=0.9,
            min_rate_bps=1e6,
            privacy_level=4,
            security_level=3,
        )
    )


def build(config: RobotaxiConfig, ctx: BuildContext) -> TwinModel:
    """Create the city: small cells, robotaxis with their observations, the network agent."""
    model = new_model("robotaxi", config, ctx)
    add_base_stations(model, config)
    fleet = config.devices
    ids = [f"taxi-{i:03d}" for i in range(fleet.count)]
    task, _ = robotaxi_data.generate(
        model.seeds.numpy("data"),
        ids,
        samples_min=fleet.samples_min,
        samples_max=fleet.samples_max,
        dirichlet_alpha=fleet.dirichlet_alpha,
        test_samples=fleet.test_samples,
    )
    for agent_id in ids:
        model.add_device(
            Robotaxi(
                model,
                model.space,
                agent_id=agent_id,
                block_m=fleet.block_m,
                speed_mps=fleet.speed_mps,
                rng=model.seeds.numpy(f"mobility/{agent_id}"),
                compute=config.device_compute,
                data=task.local[agent_id],
            )
        )
    model.finish_setup()
    add_federated_training(model, config, service=SERVICE, task=task)
    return model


register(
    AgentScenario(
        name="robotaxi",
        summary="Robotaxis cruising a street grid learn the regional demand model by federated learning",
        paper_section="2.3.1",
        default_config=RobotaxiConfig,
        build=build,
    )
)
