"""``smart-farm``: soil probes on farms learn when a plot needs water, by federated learning.

The example of docs/tutorial-own-usecase.md: a use case written from scratch in one file. Run it,
check it, see its keys and watch it with::

    twin run examples/my_usecase.py --rounds 3
    twin check examples/my_usecase.py
    twin config examples/my_usecase.py
    twin viz examples/my_usecase.py
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import ClassVar

import numpy as np
import torch

from agents.device import Device
from twin.config import check_positive
from twin.kpi import ComputeProfile
from twin.learning.cohort import LocalData
from twin.learning.task import TaskData
from twin.model import TwinModel
from twin.radio import RadioConfig
from twin.settings import AreaConfig, BusConfig, CarbonConfig, FederatedConfig, LinkConfig, QoAISTargets
from usecases.common import add_base_stations, add_federated_training, new_model
from usecases.registry import AgentScenario, BuildContext, register

CLASSES = ("fine", "irrigate", "drain")
FEATURES = 8  # soil moisture at 4 depths, soil temperature, air temperature, humidity, rain forecast


@dataclass(frozen=True, slots=True)
class Farms:
    """The soil probes: how many, and the data each one labelled."""

    count: int = 20
    """Soil probes, one per plot (the devices)."""
    samples_min: int = 40
    """Fewest labelled readings a probe holds."""
    samples_max: int = 160
    """Most labelled readings a probe holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the plots' label mix (Dirichlet α; small: very non-IID)."""
    test_samples: int = 600
    """Held-out readings the fused model is evaluated on."""

    def __post_init__(self) -> None:
        check_positive(
            "devices", count=self.count, samples_min=self.samples_min, test_samples=self.test_samples
        )


@dataclass(frozen=True, slots=True)
class SmartFarmConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(width_m=2500.0, height_m=2500.0, base_stations=4)
    )
    devices: Farms = field(default_factory=Farms)
    device_compute: ComputeProfile = field(
        default_factory=lambda: ComputeProfile(flops_per_s=1e9, power_w=0.5)
    )
    edge_compute: ComputeProfile = field(
        default_factory=lambda: ComputeProfile(flops_per_s=19.5e12, power_w=400.0)
    )
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(scenario="RMa", carrier_ghz=0.7, bandwidth_hz=20e6)
    )
    link: LinkConfig = field(default_factory=LinkConfig)
    fl: FederatedConfig = field(default_factory=lambda: FederatedConfig(rounds=10, hidden=16, deadline_s=5.0))
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.8, round_latency_s=5.0, coverage=0.5, min_rate_bps=1e4
        )
    )


class SoilProbe(Device):
    """A soil probe buried in a plot: it does not move; it reads the soil and trains locally."""

    kind: ClassVar[str] = "soil-probe"


def readings(rng: np.random.Generator, label_mix: np.ndarray, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """``n`` labelled readings: each class has its own mean reading, blurred by noise."""
    means = np.array(
        [
            [0.0] * FEATURES,
            [-1.5, -1.2, -0.8, -0.4, 0.8, 1.0, -0.6, -0.5],
            [1.4, 1.2, 1.0, 0.8, -0.3, -0.2, 0.9, 1.0],
        ]
    )
    y = rng.choice(len(CLASSES), size=n, p=label_mix)
    x = means[y] + rng.normal(0.0, 0.8, size=(n, FEATURES))
    return torch.from_numpy(x.astype(np.float32)), torch.from_numpy(y.astype(np.int64))


def build(config: SmartFarmConfig, ctx: BuildContext) -> TwinModel:
    """Create the world: rural cells, probes scattered over the area with their data, training."""
    model = new_model("smart-farm", config, ctx)
    add_base_stations(model, config)
    farms = config.devices
    data_rng, placement = model.seeds.numpy("data"), model.seeds.numpy("placement")  # never global RNG
    local = {}
    for i in range(farms.count):
        agent_id = f"probe-{i:03d}"
        mix = data_rng.dirichlet(np.full(len(CLASSES), farms.dirichlet_alpha))
        x, y = readings(data_rng, mix, int(data_rng.integers(farms.samples_min, farms.samples_max + 1)))
        local[agent_id] = LocalData(x, y)
        xy = placement.uniform([1.0, 1.0], [config.area.width_m - 1.0, config.area.height_m - 1.0])
        model.add_device(
            SoilProbe(
                model,
                model.space,
                agent_id=agent_id,
                position_m=(float(xy[0]), float(xy[1])),
                height_m=0.5,
                compute=config.device_compute,
                data=local[agent_id],
            )
        )
    model.finish_setup()
    test_x, test_y = readings(data_rng, np.full(len(CLASSES), 1 / len(CLASSES)), farms.test_samples)
    task = TaskData(local, test_x, test_y, CLASSES, raw_sample_bits=FEATURES * 32)
    add_federated_training(model, config, service="irrigation-model", task=task)
    return model


register(
    AgentScenario(
        name="smart-farm",
        summary="Soil probes on farms learn when a plot needs water, by federated learning",
        paper_section="—",
        default_config=SmartFarmConfig,
        build=build,
    )
)
