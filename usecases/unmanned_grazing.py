"""``unmanned-grazing`` (paper §2.3.5): herds on a wide pasture, learned by devices often out of coverage.

**What it models.** A rural area of 10 km × 6 km (60 km²) split into paddocks. Herds graze their
paddock and move to the next one on a rotation plan; a **herding drone** follows each herd low over
the ground; **camera posts** stand at fixed places. Two rural macro cells (TR 38.901 RMa at 700 MHz,
TR 36.777 aerial path loss for the drones) cover the western, village side only; the eastern part is
reached by a **LEO satellite** (:mod:`twin.radio.satellite`: TR 38.821 geometry and round trip, low
rates, a beam footprint, passes) — and between passes, or in the gap between the cells and the
footprint, not at all. The devices learn **herd counting and sick-animal detection** (real PyTorch,
federated, :mod:`usecases.unmanned_grazing_data`); a device out of coverage **stores** its update and
**forwards** it when a cell or a satellite pass serves it again; the update is aggregated into the
round in which it arrives, discounted by its staleness, exactly once (:mod:`agents.store_forward`).

**Model sharing** (paper §2.3.5.3 (2)e, §2.4.5): every round the network publishes the global model
to a registry (:mod:`twin.services.model_sharing`) with its task, region, accuracy and size; after
the last round a second herder's farm in another region asks the registry, reuses the match and
fine-tunes it on its own devices, and the twin compares that with training from scratch on the same
devices: rounds, time, energy (SPEC §7 federated-training formulas over the farm's satellite link)
and accuracy. The farm's devices are real endpoints, held by the run's device host like the first
farm's (:func:`usecases.common.local_host`, or Ray workers with ``--workers``), and both ways are
federated services on the bus (:class:`agents.farm_federation.FarmFederation`):
``model-sharing.reuse`` publishes the registry's model as its round-1 global model — so the devices
fine-tune that model as decoded from the wire, in the wire dtype, and the fetch's bits are that
message's encoded size — and ``model-sharing.scratch`` a fresh initialisation. Each round every
device's authenticated update is aggregated in sender-id order; the rounds follow each other on the
simulated clock (one round: the modelled download, training, upload and round trip over the farm's
link) from the end of the last herd-health round until the accuracy target or ``sharing.max_rounds``,
and the run ends when both ways have.

**QoAIS targets** — the paper states needs, not numbers, for this use case (§2.3.5.3–4):

- model accuracy 0.85: *assumption* — "identify herd health and pests" asks for a useful detector;
  the same bar as the home-health scenario;
- round latency ≤ 30 s: data are collected "periodically or in real time" (周期性或实时), and the
  training is periodic — a round of seconds to tens of seconds is enough; the deadline is 20 s;
- energy per round ≤ 100 J: *assumption*, of the order a few drones' radio and compute spend;
- coverage ≥ 0.7 with ≥ 100 kbit/s, *assumption*: cells and satellite together should reach most of
  the pasture — the paper expects the satellite to serve the sparse remainder (§2.3.5.4 (2)). A place
  in the beam's footprint counts at the rate a device gets there during a pass (the beam shared by the
  devices on it; 100 kbit/s is the per-device cap), :mod:`twin.satellite_model`; the gap between the
  village cells and the footprint is not covered. At the defaults the cells alone give ≈ 0.36 and
  cells + satellite ≈ 0.75 (KPI columns ``coverage_terrestrial`` and ``coverage``);
- privacy level 4: herd health, numbers and routes are business data to be desensitised
  (§2.3.5.3 (2)a: 商业相关数据的管理与脱敏) — only models leave the devices;
- security level 3; autonomy ``partial``: drones follow the network's instructions *and the herders'
  decisions* (§2.3.5.3 (1)c);
- sharing: the consumer's accuracy ≥ 0.85, at most 2 points below training from scratch, and at
  least half the time and energy saved — the paper's promise that herders need not "spend extra time
  and effort" (无需额外花费时间精力) and that costs fall (§2.3.5.1) — *assumed* thresholds.

**What it simplifies.** Herd movement is a random walk in the paddock with straight transits; time is
compressed (herds walk 5 m/s between paddocks, passes last 2 min every 5 min). The samples are
feature vectors as on-board preprocessing would summarise them, not images. The second farm's
devices are not placed on the map: they reach the network over one constant share of a satellite
beam (no passes), all of them every round, and their rounds' time and energy are the SPEC §7 formulas
over that link (booked in the sharing records, not in the run's energy ledger); its reuse pays the
fetch (a round trip + the reused model's message) on top of its training rounds. The satellite's
capacity is shared equally by the devices on it.

**Defaults.** 20 rounds of 2 local epochs. After 12 rounds the model was still learning (seed 0:
held-out accuracy 0.81 < 0.85, and the last five rounds' variance 5.7·10⁻³ > 2·10⁻³); by round 20
it is stable and every herd-health target is met at seeds 0 and 2 (accuracy 0.95 and 0.94, coverage
0.75), and every model-sharing target at seed 0 (the second farm reuses round 19's model, one round of
fine-tuning reaches 0.94 where training from scratch needs 25 rounds for 0.90: 96 % of the time and
95 % of the energy saved). At seed 2 one round of fine-tuning reaches 0.92 but training from scratch
stops at 0.96 after 18 rounds, 4 points more than the 2 allowed (``accuracy_vs_scratch``; each way
stops at the first round that meets the 0.85 target). **Not every seed meets the accuracy target**:
at seed 1 the accuracy stays at ≈ 0.78 from round 8 on, whatever the rounds, epochs (3) or learning
rate (0.2) — the ``fever`` class, ≈ 3.5 % of the windows and held by two drones, is outvoted in the
sample-weighted average and never recalled (FedAvg under class imbalance, not a fault of the twin);
coverage falls with it (it needs the accuracy target met), and the second farm, reusing a weaker
model, needs 26 rounds against 30 from scratch and saves an eighth of the energy (< 1/2: model
sharing fails too). ``twin run unmanned-grazing`` takes 10–30 s of wall-clock time on the embedded
broker (1491 simulated seconds at seed 0, the last 35 of them the second farm's training).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field
from typing import Any

import numpy as np

from agents.farm_federation import FarmFederation, LocalTraining
from agents.herd import CameraPost, Herd, HerdFlock, HerdingDrone, Paddock
from agents.store_forward import StoreForwardTraining
from twin.config import check_positive, check_range
from twin.errors import ConfigError
from twin.kpi import ComputeProfile, federated_training_cost
from twin.learning.aggregation import make_strategy
from twin.learning.cohort import LocalData
from twin.learning.models import MLP, init_params, training_flops_per_sample
from twin.learning.round_plan import ModelSpec
from twin.map_features import MapFeature, rectangle
from twin.qoais import ServiceReport
from twin.radio import RadioConfig
from twin.radio.satellite import SatelliteConfig, footprint_outline
from twin.satellite_model import SatelliteTwinModel
from twin.services.model_sharing import (
    Match,
    ModelCard,
    ModelRegistry,
    ModelRequest,
    SharingOutcome,
    SharingTargets,
    TrainingCost,
    model_sharing_report,
    with_fetch,
)
from twin.settings import AreaConfig, BusConfig, CarbonConfig, FederatedConfig, LinkConfig, QoAISTargets
from usecases import unmanned_grazing_data as data
from usecases.common import add_base_stations, local_host
from usecases.registry import AgentScenario, BuildContext, register

SERVICE = "herd-health"
SHARING_SERVICE = "model-sharing"
WAYS = ("reuse", "scratch")
"""The second farm's two federated services, ``model-sharing.reuse`` and ``model-sharing.scratch``."""
PADDOCK_COLUMNS = 4
PADDOCK_ROWS = 2


@dataclass(frozen=True, slots=True)
class GrazingDevices:
    """Herds, the drones that follow them, camera posts, and the data they collected."""

    drones: int = 6
    """Herding drones (devices), one per herd."""
    cameras: int = 10
    """Camera posts (devices) at fixed places over the whole area."""
    animals_per_herd: int = 150
    """Animals in a herd (what the counting model counts)."""
    drone_altitude_m: float = 10.0
    """Flight altitude of a herding drone above ground."""
    drone_speed_mps: float = 12.0
    """Top speed of a herding drone."""
    camera_height_m: float = 3.0
    """Height of a camera on its post."""
    graze_speed_mps: float = 0.5
    """Speed of a herd grazing its paddock."""
    transit_speed_mps: float = 5.0
    """Speed of a herd driven to its next paddock (compressed time)."""
    rotation_s: float = 400.0
    """Time a herd stays on a paddock before the rotation plan moves it."""
    samples_min: int = 60
    """Fewest labelled windows a device holds."""
    samples_max: int = 200
    """Most labelled windows a device holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the devices' label mix (Dirichlet α; small: very non-IID)."""
    test_samples: int = 1000
    """Held-out windows the global model is evaluated on."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            drones=self.drones,
            animals_per_herd=self.animals_per_herd,
            drone_speed_mps=self.drone_speed_mps,
            graze_speed_mps=self.graze_speed_mps,
            transit_speed_mps=self.transit_speed_mps,
            rotation_s=self.rotation_s,
            samples_min=self.samples_min,
            dirichlet_alpha=self.dirichlet_alpha,
            test_samples=self.test_samples,
        )
        check_range("devices", "cameras", self.cameras, 0, 100_000)
        check_range("devices", "drone_altitude_m", self.drone_altitude_m, 1.5, 300.0)
        check_range("devices", "camera_height_m", self.camera_height_m, 0.5, 50.0)
        check_range("devices", "samples_max", self.samples_max, self.samples_min, 1e7)


@dataclass(frozen=True, slots=True)
class StoreForwardConfig:
    """How late (stored-and-forwarded) updates are aggregated."""

    staleness_exponent: float = 0.5
    """``a`` of the staleness discount ``(1 + τ)^−a`` (FedAsync; 0: late updates count fully)."""

    def __post_init__(self) -> None:
        check_range("store_forward", "staleness_exponent", self.staleness_exponent, 0.0, 10.0)


@dataclass(frozen=True, slots=True)
class SharingConfig:
    """The second herder's farm that asks the registry (paper §2.3.5.3 (2)e)."""

    enabled: bool = True
    """Whether a second farm asks the registry after the last round."""
    region: str = "valley"
    """Region of the second farm (its breed and cameras differ from the first farm's)."""
    devices: int = 4
    """Devices of the second farm (they train federated, over the satellite)."""
    samples_per_device: int = 150
    """Labelled windows each of its devices holds."""
    test_samples: int = 600
    """Its own held-out windows."""
    max_rounds: int = 30
    """Most federated rounds it trains (from scratch or fine-tuning)."""
    local_epochs: int = 1
    """Local passes per round on its devices."""
    min_accuracy: float = 0.7
    """Least accuracy a shared model must have (registry metadata) to be reused."""

    def __post_init__(self) -> None:
        check_positive(
            "sharing",
            devices=self.devices,
            samples_per_device=self.samples_per_device,
            test_samples=self.test_samples,
            max_rounds=self.max_rounds,
            local_epochs=self.local_epochs,
        )
        check_range("sharing", "min_accuracy", self.min_accuracy, 0.0, 1.0)
        if self.region not in data.REGIONS:
            raise ValueError(f"sharing.region must be one of {', '.join(data.REGIONS)}, got {self.region!r}")


def _device_compute() -> ComputeProfile:
    return ComputeProfile(flops_per_s=1e12, power_w=15.0)


def _edge() -> ComputeProfile:
    return ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@dataclass(frozen=True, slots=True)
class UnmannedGrazingConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(
            width_m=10_000.0, height_m=6_000.0, base_stations=2, bs_height_m=35.0, grid_m=200.0
        )
    )
    devices: GrazingDevices = field(default_factory=GrazingDevices)
    device_compute: ComputeProfile = field(default_factory=_device_compute)
    edge_compute: ComputeProfile = field(default_factory=_edge)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="RMa", carrier_ghz=0.7, bandwidth_hz=20e6, load_factor=0.5, ue_tx_power_dbm=23.0
        )
    )
    link: LinkConfig = field(default_factory=lambda: LinkConfig(uplink_share=0.3, ue_radio_power_w=0.5))
    satellite: SatelliteConfig = field(default_factory=SatelliteConfig)
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(rounds=20, lr=0.1, deadline_s=20.0, round_interval_s=60.0)
    )
    store_forward: StoreForwardConfig = field(default_factory=StoreForwardConfig)
    sharing: SharingConfig = field(default_factory=SharingConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.85,
            round_latency_s=30.0,
            energy_per_round_j=100.0,
            coverage=0.7,
            min_rate_bps=1e5,
            accuracy_variance_max=2e-3,
            privacy_level=4,
            security_level=3,
            autonomy="partial",
        )
    )
    sharing_qoais: SharingTargets = field(default_factory=SharingTargets)


def paddocks(area: AreaConfig) -> list[Paddock]:
    """The pasture split into ``PADDOCK_COLUMNS × PADDOCK_ROWS`` paddocks, west to east, south to north."""
    w, h = area.width_m / PADDOCK_COLUMNS, area.height_m / PADDOCK_ROWS
    return [
        (c * w, r * h, (c + 1) * w, (r + 1) * h) for r in range(PADDOCK_ROWS) for c in range(PADDOCK_COLUMNS)
    ]


def rotation_of(index: int, area: AreaConfig) -> list[Paddock]:
    """A herd's rotation plan: its home paddock and the neighbouring one east (west for the last column)."""
    all_paddocks = paddocks(area)
    column, row = index % PADDOCK_COLUMNS, (index // PADDOCK_COLUMNS) % PADDOCK_ROWS
    neighbour = column + 1 if column < PADDOCK_COLUMNS - 1 else column - 1
    return [all_paddocks[row * PADDOCK_COLUMNS + column], all_paddocks[row * PADDOCK_COLUMNS + neighbour]]


def base_station_sites(area: AreaConfig) -> list[tuple[float, float]]:
    """The village-side cells: on the western eighth of the area, spread north-south."""
    n = area.base_stations
    return [(area.width_m / 8.0, (i + 0.5) * area.height_m / n) for i in range(n)]


def build(config: UnmannedGrazingConfig, ctx: BuildContext) -> SatelliteTwinModel:
    """Create the world: pasture, herds, drones, cameras, cells, the satellite, training and sharing."""
    if config.fl.strategy not in ("fedavg", "fedprox"):
        raise ConfigError(
            f"fl.strategy {config.fl.strategy!r}: unmanned-grazing aggregates late updates as rebased "
            "deltas (FedAvg form); choose fedavg or fedprox"
        )
    model = SatelliteTwinModel(
        satellite=config.satellite,
        scenario="unmanned-grazing",
        run_id=ctx.run_id,
        seed=ctx.seed,
        bus=ctx.bus,
        area=config.area,
        radio=config.radio,
        link=config.link,
        bus_cfg=config.bus,
        carbon=config.carbon,
        edge=config.edge_compute,
        wire_dtype=config.fl.wire_dtype,
        rounds_limit=ctx.rounds_limit,
    )
    model.hosting = ctx.hosting
    add_base_stations(model, config)
    for bs, site in zip(model.base_stations, base_station_sites(config.area), strict=True):
        bs.position = np.asarray(site, dtype=float)
    fleet = config.devices
    drone_ids = [f"drone-{i:03d}" for i in range(fleet.drones)]
    camera_ids = [f"camera-{i:03d}" for i in range(fleet.cameras)]
    task, _ = data.generate(
        model.seeds.numpy("data"),
        drone_ids + camera_ids,
        drones=set(drone_ids),
        samples_min=fleet.samples_min,
        samples_max=fleet.samples_max,
        dirichlet_alpha=fleet.dirichlet_alpha,
        test_samples=fleet.test_samples,
    )
    herds = _add_herds_and_devices(model, config, task.local, drone_ids, camera_ids)
    model.finish_setup()
    model.map_features = _map_features(config)
    _schedule_herds(model, herds)
    network = _add_training(model, config, task)
    if config.sharing.enabled:
        network.sharing = HerdModelSharing(model, config, network)
    return model


def _add_herds_and_devices(
    model: SatelliteTwinModel,
    config: UnmannedGrazingConfig,
    local: dict[str, LocalData],
    drone_ids: list[str],
    camera_ids: list[str],
) -> list[Herd]:
    fleet = config.devices
    herds: list[Herd] = []
    placement = model.seeds.numpy("placement")
    for i, agent_id in enumerate(drone_ids):
        herd = Herd(
            model,
            model.space,
            agent_id=f"herd-{i:02d}",
            rotation=rotation_of(i, config.area),
            animals=fleet.animals_per_herd,
            graze_speed_mps=fleet.graze_speed_mps,
            transit_speed_mps=fleet.transit_speed_mps,
            rotation_s=fleet.rotation_s,
            rng=model.seeds.numpy(f"herd/{i}"),
        )
        herds.append(herd)
        model.add_device(
            HerdingDrone(
                model,
                model.space,
                agent_id=agent_id,
                herd=herd,
                altitude_m=fleet.drone_altitude_m,
                speed_mps=fleet.drone_speed_mps,
                orbit_m=60.0,
                phase=float(placement.uniform(0.0, 2.0 * math.pi)),
                compute=config.device_compute,
                data=local[agent_id],
            )
        )
    area = config.area
    for agent_id in camera_ids:
        xy = (
            float(placement.uniform(0.03, 0.97) * area.width_m),
            float(placement.uniform(0.05, 0.95) * area.height_m),
        )
        model.add_device(
            CameraPost(
                model,
                model.space,
                agent_id=agent_id,
                position_m=xy,
                height_m=fleet.camera_height_m,
                compute=config.device_compute,
                data=local[agent_id],
            )
        )
    return herds


def _schedule_herds(model: SatelliteTwinModel, herds: list[Herd]) -> None:
    """Herds walk one second per simulated second from t = 1 s, all at once (:meth:`HerdFlock.walk`)."""
    if herds:
        flock = HerdFlock(model, herds)
        model.mobility.hold(flock)  # Mesa holds the scheduled bound method weakly
        model.schedule_event(flock.walk, at=1.0)


def _map_features(config: UnmannedGrazingConfig) -> list[MapFeature]:
    shades = ("#6b8e23", "#9acd32")
    features = [
        MapFeature("pasture paddock", rectangle(*p), "area", shades[(i + i // PADDOCK_COLUMNS) % 2])
        for i, p in enumerate(paddocks(config.area))
    ]
    if config.satellite.enabled:
        features.append(
            MapFeature(
                f"satellite footprint ({config.satellite.orbit})",
                footprint_outline(config.satellite),
                "footprint",
                "#1f4e9c",
            )
        )
    return features


def _add_training(model: SatelliteTwinModel, config: UnmannedGrazingConfig, task: Any) -> HerdHealthTraining:
    """The network agent of federated herd-health training with store and forward (starts at t = 1 s)."""
    net = MLP(task.in_features, config.fl.hidden, task.n_classes)
    initial = init_params(net, model.seeds.torch("model/init"))
    network = HerdHealthTraining(
        model,
        staleness_exponent=config.store_forward.staleness_exponent,
        satellite_joules_per_bit=config.satellite.joules_per_bit,
        round_metrics=lambda params: data.herd_metrics(net, params, task.test_x, task.test_y),
        service=SERVICE,
        net=net,
        initial=initial,
        task=task,
        strategy=make_strategy(config.fl.strategy, config.fl.proximal_mu),
        fl=config.fl,
        bus_cfg=config.bus,
        train_flops_per_sample=training_flops_per_sample(net, task.in_features),
        targets=config.qoais,
        model_spec=ModelSpec("mlp", task.in_features, config.fl.hidden, task.n_classes),
    )
    model.network = network
    model.subscribe_service(SERVICE)
    local_host(model, config).join_federated(
        SERVICE,
        net=MLP(task.in_features, config.fl.hidden, task.n_classes),
        template=initial,
        data=dict(task.local),
    )
    network.start(at_s=1.0)
    return network


class HerdHealthTraining(StoreForwardTraining):
    """Herd-health training; after its last round the run goes on while model sharing trains farm B."""

    sharing: HerdModelSharing | None = None

    def on_rounds_limit(self) -> None:
        """The last round is over: hand over to model sharing, or end the run."""
        if self.sharing is None or not self.sharing.begin():
            super().on_rounds_limit()


class HerdModelSharing:
    """Model sharing between herders: the registry and a second farm that reuses a model (network side).

    On every round the network publishes its global model to the registry; after the last round a
    second herder's farm asks for a herd-health model for its region. Its devices are real endpoints
    (held by the run's device host, :func:`usecases.common.local_host`) and train over the bus in two
    federated services (:class:`agents.farm_federation.FarmFederation`): ``model-sharing.reuse`` starts
    from the registry's model — published as round 1's global model, so what the devices train from is
    that model as decoded from the wire — and ``model-sharing.scratch`` from a fresh initialisation, for
    comparison. Both run on the simulated clock from the end of the last herd-health round until the
    accuracy target or ``sharing.max_rounds``; the run ends when both have.
    """

    def __init__(
        self, model: SatelliteTwinModel, config: UnmannedGrazingConfig, network: StoreForwardTraining
    ) -> None:
        self.model = model
        self.config = config
        self.network = network
        self.service = SHARING_SERVICE
        self.registry = ModelRegistry()
        self.records: list[dict[str, Any]] = []
        self.outcome: SharingOutcome | None = None
        self.match: Match | None = None
        self.begun_s: float | None = None
        rng = model.seeds.numpy("sharing/farm")
        sharing = config.sharing
        farm_local, self.farm_x, self.farm_y = data.farm_data(
            rng,
            region=sharing.region,
            devices=sharing.devices,
            samples_per_device=sharing.samples_per_device,
            test_samples=sharing.test_samples,
        )
        self.farm_local = {f"farm-b-{i:03d}": d for i, d in enumerate(farm_local)}
        spec = network.model_spec
        self.scratch_start = init_params(
            MLP(spec.in_features, spec.hidden, spec.n_classes), model.seeds.torch("sharing/scratch-init")
        )
        self.federations = {
            way: FarmFederation(
                model,
                service=f"{SHARING_SERVICE}.{way}",
                net=MLP(spec.in_features, spec.hidden, spec.n_classes),
                template=self.scratch_start,
                devices={a: int(d.y.shape[0]) for a, d in self.farm_local.items()},
                test_x=self.farm_x,
                test_y=self.farm_y,
                training=LocalTraining(sharing.local_epochs, config.fl.batch_size, config.fl.lr),
                model_spec=spec,
                round_s=self._cost(1, 0.0).time_s,
                target_accuracy=config.sharing_qoais.accuracy,
                max_rounds=sharing.max_rounds,
                min_rounds=1,
                on_done=self._on_done,
            )
            for way in WAYS
        }
        host = local_host(model, config)
        for federation in self.federations.values():
            host.join_federated(
                federation.service,
                net=MLP(spec.in_features, spec.hidden, spec.n_classes),
                template=self.scratch_start,
                data=self.farm_local,
            )
        model.kpi_listeners.append(self._on_round)
        model.services.append(self)

    @property
    def architecture(self) -> tuple[Any, ...]:
        """The shared models' architecture (what a consumer's devices can run)."""
        spec = self.network.model_spec
        return (spec.kind, spec.in_features, spec.hidden, spec.n_classes)

    @property
    def match_reason(self) -> str:
        """Why the registry answered as it did (empty before the consumer asks)."""
        return self.match.reason if self.match is not None else ""

    def _on_round(self, row: dict[str, Any]) -> None:
        network = self.network
        card = ModelCard(
            model_id=f"{SERVICE}/farm-a/round-{int(row['round']):03d}",
            task=SERVICE,
            region="steppe-hills-wetland",
            accuracy=float(row["accuracy"]),
            size_bits=int(network.model_bits),
            architecture=self.architecture,
            producer="farm-a",
            training_flops=0.0,
            params={k: v.clone() for k, v in network.global_params.items()},
        )
        self.registry.publish(card)

    def request(self) -> ModelRequest:
        """What the second farm asks the registry for."""
        sharing = self.config.sharing
        return ModelRequest(
            consumer=f"farm-b-{sharing.region}",
            tasks=(SERVICE,),
            regions=("steppe-hills-wetland", sharing.region),
            min_accuracy=sharing.min_accuracy,
            max_size_bits=int(self.network.model_bits) * 4,
            architecture=self.architecture,
        )

    def begin(self) -> bool:
        """The second farm asks the registry; its devices start training: reused model and from scratch.

        Returns whether training began (the run goes on until it is over).
        """
        if self.begun_s is not None:
            return False
        self.match = self.registry.find(self.request())[0]
        now = float(self.model.time)
        self.begun_s = now
        self.federations["scratch"].begin(self.scratch_start, at_s=now)
        if self.match.card is not None:
            self.federations["reuse"].begin(self.match.card.params, at_s=now)
        return True

    def _on_done(self, _federation: FarmFederation) -> None:
        started = [f for f in self.federations.values() if f.started]
        if all(f.done for f in started):
            self._conclude()
            self.model.running = False

    def _conclude(self) -> None:
        """Both ways are trained: their costs, the outcome and one record each."""
        assert self.match is not None and self.begun_s is not None
        request = self.request()
        scratch_fed, reuse_fed = self.federations["scratch"], self.federations["reuse"]
        scratch = self._cost(scratch_fed.rounds_done, scratch_fed.accuracy)
        card = self.match.card
        if card is None:
            reuse, reused_id, reuse_fed = scratch, None, scratch_fed
        else:
            sharing, sat = self.config.sharing, self.config.satellite
            rate = min(sat.downlink_bps, sat.beam_downlink_bps / max(1, sharing.devices))
            reuse = with_fetch(
                self._cost(reuse_fed.rounds_done, reuse_fed.accuracy),
                bits=8.0 * reuse_fed.sent_bytes(1),  # the registry's model as it travelled to the devices
                rate_bps=rate,
                round_trip_s=sat.round_trip_s,
                device_power_w=self.config.link.ue_radio_power_w,
                network_j_per_bit=sat.joules_per_bit,
            )
            reused_id = card.model_id
        self.outcome = SharingOutcome(request.consumer, reused_id, reuse, scratch)
        for way, cost, federation in (("reuse", reuse, reuse_fed), ("scratch", scratch, scratch_fed)):
            self.records.append(
                {
                    "way": way,
                    "sim_time_s": self.begun_s,
                    "model_id": reused_id if way == "reuse" else None,
                    "rounds": cost.rounds,
                    "accuracy": cost.accuracy,
                    "training_s": cost.training_s,
                    "training_j": cost.training_j,
                    "transfer_bits": cost.transfer_bits,
                    "transfer_s": cost.transfer_s,
                    "transfer_j": cost.transfer_j,
                    "time_s": cost.time_s,
                    "energy_j": cost.energy_j,
                    "updates": federation.updates_accepted,
                    "finished_s": federation.finished_s,
                }
            )

    def _cost(self, rounds: int, accuracy: float) -> TrainingCost:
        """SPEC §7 federated-training time and energy of ``rounds`` on the farm's devices (via satellite)."""
        if rounds == 0:
            return TrainingCost(0, 0.0, 0.0, 0.0, accuracy)
        sharing, sat = self.config.sharing, self.config.satellite
        k = sharing.devices
        flops_per_sample = self.network.train_flops_per_sample
        cost = federated_training_cost(
            model_bits=float(self.network.model_bits),
            train_flops_per_sample=flops_per_sample,
            samples_per_user=float(sharing.samples_per_device),
            samples_per_round=float(sharing.samples_per_device * k),
            local_epochs=float(sharing.local_epochs),
            rounds=rounds,
            users_per_round=k,
            downlink_rate_bps=min(sat.downlink_bps, sat.beam_downlink_bps / k),
            uplink_rate_bps=min(sat.uplink_bps, sat.beam_uplink_bps / k),
            ue=self.config.device_compute,
            comm_efficiency_bits_per_j=1.0 / sat.joules_per_bit,
            raw_input_bits=float(data.RAW_SAMPLE_BITS),
        )
        flops = flops_per_sample * sharing.samples_per_device * k * sharing.local_epochs * rounds
        time_s = cost.latency_s + rounds * sat.round_trip_s
        return TrainingCost(rounds, float(flops), float(time_s), float(cost.energy_j), accuracy)

    def summary(self) -> dict[str, float]:
        """Headline numbers for ``summary.json``."""
        outcome = self.outcome
        if outcome is None:
            return {}
        reuse, scratch = self.federations["reuse"], self.federations["scratch"]
        return {
            "reused": float(outcome.reused_model_id is not None),
            "reuse_rounds": float(outcome.reuse.rounds),
            "scratch_rounds": float(outcome.scratch.rounds),
            "time_saved_s": outcome.time_saved_s,
            "energy_saved_j": outcome.energy_saved_j,
            "accuracy_gain": outcome.accuracy_gain,
            "registry_models": float(len(self.registry.cards)),
            "farm_devices": float(len(self.farm_local)),
            "reuse_updates": float(reuse.updates_accepted),
            "scratch_updates": float(scratch.updates_accepted),
            "fetch_bytes": outcome.reuse.transfer_bits / 8.0,
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of model sharing against ``sharing_qoais``."""
        report = model_sharing_report(
            self.service, self.outcome, self.config.sharing_qoais, tls=tls, authenticated=authenticated
        )
        if self.match_reason:
            return ServiceReport(
                report.service, report.kind, report.indicators, (*report.notes, self.match_reason)
            )
        return report


register(
    AgentScenario(
        name="unmanned-grazing",
        summary="Herds on a 60 km² pasture: drones and cameras learn herd health over cells and a satellite, "
        "store and forward, model sharing",
        paper_section="2.3.5",
        default_config=UnmannedGrazingConfig,
        build=build,
    )
)
