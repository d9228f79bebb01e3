"""``home-health`` (paper §2.3.4): home sensor hubs learn fall / arrhythmia / apnea detection together.

Low-capability devices in homes spread over a few neighbourhoods of a city, served by macro cells
(3GPP UMa), each holding its household's own skewed data. The network fuses their models with
federated learning (FedAvg by default, FedProx or FedAvgM with ``--set fl.strategy=…``) and evaluates
the fused model on held-out households of the region.
"""

from __future__ import annotations

from dataclasses import dataclass, field

import numpy as np

from agents.home_health import HomeHealthDevice
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
from usecases import home_health_data
from usecases.common import add_base_stations, add_federated_training, add_two_stage_inference, new_model
from usecases.registry import AgentScenario, BuildContext, register

SERVICE = "fall-detection"
ALERT_SERVICE = "health-alerts"
STREAM_WINDOWS = 64


@dataclass(frozen=True, slots=True)
class HomeHealthPopulation:
    """The homes: how many, how much data each holds, how skewed it is, where they are."""

    count: int = 60
    """Homes, each with one sensor hub (a device)."""
    samples_min: int = 40
    """Fewest labelled windows a home holds."""
    samples_max: int = 200
    """Most labelled windows a home holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the homes' label mix (Dirichlet α; small: very non-IID)."""
    neighbourhoods: int = 5
    """Neighbourhoods the homes cluster in."""
    neighbourhood_radius_m: float = 200.0
    """Spread of the homes around their neighbourhood's centre."""
    test_households: int = 40
    """Held-out households the fused model is evaluated on."""
    test_samples_per_household: int = 50
    """Windows of each held-out household."""
    external: tuple[str, ...] = ()
    """Device ids served by clients outside the run (``twin device``)."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            count=self.count,
            samples_min=self.samples_min,
            dirichlet_alpha=self.dirichlet_alpha,
            neighbourhoods=self.neighbourhoods,
            test_households=self.test_households,
            test_samples_per_household=self.test_samples_per_household,
        )
        check_range("devices", "samples_max", self.samples_max, self.samples_min, 1e7)


@dataclass(frozen=True, slots=True)
class HomeHealthTask:
    """The learning task's shape: the model's input and output sizes (the MLP's first and last layer)."""

    features: int = home_health_data.IN_FEATURES
    """Model input width (64: the 16 × 4-channel window as sensed).

    Another width resamples each window in time to ceil(features / 4) steps (linear interpolation) and
    crops the flattened readings to ``features``. Deterministic: the random draws are the same at any width.
    """
    classes: int = len(home_health_data.CLASSES)
    """Model output units, ≥ 4 (4: normal, fall, arrhythmia, apnea).

    More adds classes that no sample ever has (``unused-4``, …), for matching another workload's output
    layer.
    """

    def __post_init__(self) -> None:
        check_positive("task", features=self.features)
        check_range("task", "classes", self.classes, len(home_health_data.CLASSES), 1e6)


def _hub() -> ComputeProfile:
    return ComputeProfile(flops_per_s=0.5e9, power_w=1.0)


def _edge() -> ComputeProfile:
    return ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@dataclass(frozen=True, slots=True)
class HomeHealthConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(width_m=1200.0, height_m=1200.0, base_stations=4)
    )
    devices: HomeHealthPopulation = field(default_factory=HomeHealthPopulation)
    task: HomeHealthTask = field(default_factory=HomeHealthTask)
    device_compute: ComputeProfile = field(default_factory=_hub)
    edge_compute: ComputeProfile = field(default_factory=_edge)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="UMa", carrier_ghz=2.1, bandwidth_hz=20e6, load_factor=0.5
        )
    )
    link: LinkConfig = field(default_factory=LinkConfig)
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(deadline_s=2.0, clients_per_round=0.5)
    )
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    inference: InferenceConfig = field(default_factory=InferenceConfig)
    inference_qoais: InferenceTargets = field(
        default_factory=lambda: InferenceTargets(
            accuracy=0.85, latency_s=0.5, energy_per_request_j=1.0, privacy_level=1, security_level=2
        )
    )
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(accuracy=0.85, round_latency_s=2.0, energy_per_round_j=150.0)
    )


def build(config: HomeHealthConfig, ctx: BuildContext) -> TwinModel:
    """Create the world: base stations, homes with their data, the network agent, the alert service."""
    model = new_model("home-health", config, ctx)
    add_base_stations(model, config)
    pop = config.devices
    ids = [f"hh-{i:04d}" for i in range(pop.count)]
    task, homes = home_health_data.generate(
        model.seeds.numpy("data"),
        ids,
        samples_min=pop.samples_min,
        samples_max=pop.samples_max,
        dirichlet_alpha=pop.dirichlet_alpha,
        test_households=pop.test_households,
        test_samples_per_household=pop.test_samples_per_household,
        features=config.task.features,
        classes=config.task.classes,
    )
    positions = _home_positions(model.seeds.numpy("placement"), config.area, pop)
    for agent_id, xy in zip(ids, positions, strict=True):
        device = HomeHealthDevice(
            model,
            model.space,
            agent_id=agent_id,
            position_m=(float(xy[0]), float(xy[1])),
            compute=config.device_compute,
            data=task.local[agent_id],
            resting_hr_bpm=homes[agent_id].resting_hr,
        )
        model.add_device(device)
    model.finish_setup()
    network = add_federated_training(model, config, service=SERVICE, task=task)
    streams_rng = model.seeds.numpy("sensor-streams")
    width = config.task.features
    streams = {
        agent_id: SensorStream(
            *home_health_data.sensor_stream(streams_rng, homes[agent_id], STREAM_WINDOWS, width)
        )
        for agent_id in ids
    }
    add_two_stage_inference(model, config, service=ALERT_SERVICE, network=network, streams=streams)
    return model


def _home_positions(rng: np.random.Generator, area: AreaConfig, pop: HomeHealthPopulation) -> np.ndarray:
    """Homes clustered in neighbourhoods (Gaussian around random centres), kept inside the area."""
    margin = 0.1
    centres = rng.uniform(
        [area.width_m * margin, area.height_m * margin],
        [area.width_m * (1 - margin), area.height_m * (1 - margin)],
        size=(pop.neighbourhoods, 2),
    )
    which = rng.integers(0, pop.neighbourhoods, size=pop.count)
    xy = centres[which] + rng.normal(0.0, pop.neighbourhood_radius_m / 2, size=(pop.count, 2))
    return np.clip(xy, [1.0, 1.0], [area.width_m - 1.0, area.height_m - 1.0])


register(
    AgentScenario(
        name="home-health",
        summary="Home sensor hubs learn fall/arrhythmia/apnea detection by federated learning over MQTT",
        paper_section="2.3.4",
        default_config=HomeHealthConfig,
        build=build,
    )
)
