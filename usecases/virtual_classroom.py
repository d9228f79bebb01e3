"""``virtual-classroom`` (paper §2.3.7): VR/AR learners, a virtual teacher at the edge, three AI services.

What it models. A school floor with classrooms, one ceiling-mounted indoor cell each (3GPP TR 38.901 InH,
mixed office) with an edge server. Every seat holds a VR/AR headset (a device) whose learner's data —
gaze, head motion, blinks, facial action units, answer times and errors — stay on it.

- **Model generation** (§2.4.3, ``model-generation``): before the lesson, the learning-system developer
  hands the network a configuration (the task's inputs and classes, the QoAIS target) and desensitised
  pilot data; the network searches a bounded space of MLP sizes × learning rates, cheapest first, and
  keeps the cheapest model meeting the target (:mod:`twin.services.model_generation`). Its architecture
  and learning rate are what the terminals train.
- **Federated training** (§2.4.2, ``engagement-model``): the headsets train the engagement/emotion model on
  their learners' data (real torch, one ``vmap`` cohort) and the network fuses it (FedAvg over MQTT).
- **Engagement feedback** (``virtual-teacher``): every second each headset infers its learner's state with
  the model it holds and updates the learner's **profile locally**; only the state goes to the virtual
  teacher, which intervenes in a classroom where too many learners are not engaged.
- **Compute** (§2.4.10, ``edge-compute``): headsets offload scene-rendering bursts and adaptive exercises
  (more of them for learners whose profile drifts from ``engaged``) to the edge servers, which queue,
  schedule (EDF or FCFS, ``--set compute.policy=fcfs``) and admit them (:mod:`twin.services.compute`).

QoAIS targets and where they come from (the paper gives no numbers for §2.3.7; its needs are "high
reliability, low latency: inference data and results delivered within the prescribed time", "privacy:
desensitise the data", distributed training, uplink bandwidth):
- rendering burst ≤ 50 ms end to end: split rendering with late-stage reprojection on the headset
  (3GPP TR 26.928 §4 puts motion-to-photon at 20 ms, met locally by reprojection; the network loop
  may take longer) — an assumption, stated as such; adaptive exercise ≤ 0.5 s (interactive feedback);
- deadline misses ≤ 1 % of admitted jobs, ≥ 95 % admitted, p95 queueing ≤ 20 ms, mean utilisation ≤ 0.9;
- engagement model accuracy ≥ 0.8 (the four states; majority baseline ≈ 0.55), privacy level 4 for
  training (only models leave) and 3 for feedback and generation (results / desensitised features);
- generated model: ≤ 5 ms and ≤ 50 µJ per inference on the headset (a small share of its compute and
  battery for a window every second), search ≤ 50 J on the edge.

What it simplifies. Learners sit still (no mobility); rendering is a job of FLOPs and bits, not frames;
servers are non-preemptive single queues (a GPU slice each); the learner's true state is synthetic
(:mod:`usecases.virtual_classroom_data`).

Where the headsets run: in the run's process by default; with ``--workers N`` their whole side —
federated training and the classroom host (sensing, inference with the model each headset received,
profiles, offloaded jobs) — is split among N Ray workers (:mod:`twin.workers`, headset ``i`` in id
order on worker ``i mod N``), each worker's classroom host answering the teacher's ticks for its own
headsets; the run's tables are the same for any N.
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace

import numpy as np

from agents.base_station import BaseStation
from agents.classroom import ClassroomPart, OffloadConfig, StudentTerminal, VirtualTeacher
from agents.edge_compute import EdgeComputeService
from twin.config import check_positive, check_range
from twin.errors import ConfigError
from twin.kpi import ComputeProfile
from twin.learning.models import inference_flops_per_sample
from twin.map_features import MapFeature, rectangle
from twin.model import TwinModel
from twin.qoais import ServiceReport
from twin.radio import RadioConfig
from twin.services.compute import ComputeServiceConfig, ComputeTargets
from twin.services.model_generation import (
    GenerationConfig,
    GenerationResult,
    GenerationTargets,
    generate_model,
    generation_report,
)
from twin.settings import (
    AreaConfig,
    BusConfig,
    CarbonConfig,
    FederatedConfig,
    InferenceTargets,
    LinkConfig,
    QoAISTargets,
)
from usecases import virtual_classroom_data
from usecases.common import add_device_side, add_federated_training, new_model
from usecases.registry import AgentScenario, BuildContext, register

SERVICE = "engagement-model"
TEACHER_SERVICE = "virtual-teacher"
COMPUTE_SERVICE = "edge-compute"
GENERATION_SERVICE = "model-generation"
CLASSROOM_HOST_ID = "classroom-host-0"
LESSON_WINDOWS = 64


@dataclass(frozen=True, slots=True)
class ClassroomPopulation:
    """The classrooms, their learners, their data."""

    classrooms: int = 4
    """Classrooms on the floor (2 per row), one indoor cell and edge server each."""
    count: int = 48
    """Headsets (learners), spread evenly over the classrooms."""
    room_width_m: float = 16.0
    """Width of a classroom."""
    room_depth_m: float = 11.0
    """Depth of a classroom."""
    samples_min: int = 40
    """Fewest labelled windows a headset holds."""
    samples_max: int = 160
    """Most labelled windows a headset holds."""
    dirichlet_alpha: float = 0.5
    """Skew of the learners' state mix (Dirichlet α; small: very non-IID)."""
    test_learners: int = 40
    """Held-out learners the fused model is evaluated on."""
    test_samples: int = 40
    """Windows of each held-out learner."""
    pilot_learners: int = 24
    """Consenting pilot learners whose desensitised windows the developer gives model generation."""
    pilot_samples: int = 60
    """Windows of each pilot learner."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            classrooms=self.classrooms,
            count=self.count,
            room_width_m=self.room_width_m,
            room_depth_m=self.room_depth_m,
            samples_min=self.samples_min,
            dirichlet_alpha=self.dirichlet_alpha,
            test_learners=self.test_learners,
            test_samples=self.test_samples,
            pilot_learners=self.pilot_learners,
            pilot_samples=self.pilot_samples,
        )
        check_range("devices", "classrooms", self.classrooms, 1, 64)
        check_range("devices", "count", self.count, 1, 10_000)
        check_range("devices", "samples_max", self.samples_max, self.samples_min, 1e6)


def _headset() -> ComputeProfile:
    return ComputeProfile(flops_per_s=1e9, power_w=2.0)  # the share of a standalone headset's SoC for AI


def _edge() -> ComputeProfile:
    return ComputeProfile(flops_per_s=0.8e12, power_w=300.0)  # a GPU slice per classroom cell


@dataclass(frozen=True, slots=True)
class VirtualClassroomConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(
            width_m=40.0, height_m=30.0, base_stations=4, bs_height_m=3.0, grid_m=1.0
        )
    )
    devices: ClassroomPopulation = field(default_factory=ClassroomPopulation)
    device_compute: ComputeProfile = field(default_factory=_headset)
    edge_compute: ComputeProfile = field(default_factory=_edge)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="InH",
            carrier_ghz=28.0,
            bandwidth_hz=400e6,
            subcarrier_spacing_hz=120e3,
            tx_power_dbm=30.0,
            ue_height_m=1.2,
            load_factor=0.5,
        )
    )
    link: LinkConfig = field(default_factory=lambda: LinkConfig(bs_power_w=50.0))
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(rounds=12, deadline_s=2.0, clients_per_round=0.5, lr=0.1)
    )
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    offload: OffloadConfig = field(default_factory=OffloadConfig)
    compute: ComputeServiceConfig = field(default_factory=lambda: ComputeServiceConfig(placement="earliest"))
    compute_qoais: ComputeTargets = field(default_factory=ComputeTargets)
    generation: GenerationConfig = field(default_factory=GenerationConfig)
    generation_qoais: GenerationTargets = field(
        default_factory=lambda: GenerationTargets(
            accuracy=0.8, latency_s=0.005, energy_per_inference_j=50e-6, search_energy_j=50.0
        )
    )
    teacher_qoais: InferenceTargets = field(
        default_factory=lambda: InferenceTargets(
            accuracy=0.75, latency_s=0.05, energy_per_request_j=1.0, privacy_level=3, security_level=2
        )
    )
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.8, round_latency_s=2.0, energy_per_round_j=100.0, min_rate_bps=10e6, coverage=0.9
        )
    )


class ModelGenerationService:
    """The model-generation request of this run: its candidates as records and its QoAIS report."""

    def __init__(self, service: str, result: GenerationResult, targets: GenerationTargets) -> None:
        self.service = service
        self.result = result
        self.targets = targets
        self.records = [
            {
                "candidate": i,
                "hidden": c.hidden,
                "lr": c.lr,
                "parameters": c.params,
                "inference_flops": c.inference_flops,
                "status": c.status,
                "validation_accuracy": c.accuracy,
                "training_flops": c.training_flops if c.trained else 0.0,
            }
            for i, c in enumerate(result.candidates)
        ]

    def summary(self) -> dict[str, float]:
        """The search's figures: what was chosen and what the search cost."""
        chosen = self.result.chosen
        return {
            "chosen_hidden": float(chosen.hidden) if chosen else float("nan"),
            "chosen_lr": chosen.lr if chosen else float("nan"),
            "chosen_accuracy": chosen.accuracy if chosen else float("nan"),
            "candidates_trained": float(self.result.trained),
            "search_flops": self.result.search_flops,
            "search_time_s": self.result.search_time_s,
            "search_energy_j": self.result.search_energy_j,
        }

    def qoais(self, *, tls: bool, authenticated: bool) -> ServiceReport:
        """QoAIS of the generation request."""
        return generation_report(
            self.service, self.result, self.targets, tls=tls, authenticated=authenticated
        )


def classroom_rooms(area: AreaConfig, pop: ClassroomPopulation) -> list[tuple[float, float, float, float]]:
    """Classrooms as ``(x0, y0, width, depth)``: two per row, a corridor between the rows, inside the area."""
    cols = 2 if pop.classrooms > 1 else 1
    rows = -(-pop.classrooms // cols)
    gap_x = (area.width_m - cols * pop.room_width_m) / (cols + 1)
    gap_y = (area.height_m - rows * pop.room_depth_m) / (rows + 1)
    if gap_x < 0 or gap_y < 0:
        raise ConfigError(
            f"--set devices.classrooms={pop.classrooms}: {rows}×{cols} rooms of "
            f"{pop.room_width_m}×{pop.room_depth_m} m do not fit the {area.width_m}×{area.height_m} m area"
        )
    return [
        (
            gap_x + c * (pop.room_width_m + gap_x),
            gap_y + r * (pop.room_depth_m + gap_y),
            pop.room_width_m,
            pop.room_depth_m,
        )
        for r in range(rows)
        for c in range(cols)
        if r * cols + c < pop.classrooms
    ]


def _seats(room: tuple[float, float, float, float], n: int) -> list[tuple[float, float]]:
    """``n`` seats on a near-square grid inside a room (a metre from the walls)."""
    x0, y0, w, d = room
    cols = int(np.ceil(np.sqrt(n * w / d)))
    rows = -(-n // cols)
    xs = np.linspace(x0 + 1.0, x0 + w - 1.0, cols)
    ys = np.linspace(y0 + 1.0, y0 + d - 1.0, max(rows, 2))[:rows] if rows > 1 else [y0 + d / 2]
    return [(float(xs[i % cols]), float(ys[i // cols])) for i in range(n)]


def build(config: VirtualClassroomConfig, ctx: BuildContext) -> TwinModel:
    """Create the floor, the cells, the headsets and their data, generate the model, start the services."""
    if config.area.base_stations != config.devices.classrooms:
        config = replace(config, area=replace(config.area, base_stations=config.devices.classrooms))
    model = new_model("virtual-classroom", config, ctx)
    pop = config.devices
    rooms = classroom_rooms(config.area, pop)
    model.map_features = [  # drawn by the map (twin.viz.features)
        MapFeature("classroom", rectangle(x0, y0, x0 + w, y0 + d), colour="#4363d8") for x0, y0, w, d in rooms
    ]
    for i, (x0, y0, w, d) in enumerate(rooms):
        model.base_stations.append(
            BaseStation(
                model,
                model.space,
                agent_id=f"gnb-{i:02d}",
                position_m=(x0 + w / 2, y0 + d / 2),
                height_m=config.area.bs_height_m,
                edge=config.edge_compute,
            )
        )
    ids = [f"vr-{i:04d}" for i in range(pop.count)]
    classroom_of = {a: i % pop.classrooms for i, a in enumerate(ids)}
    difficulties = np.linspace(0.0, 1.0, pop.classrooms).tolist()
    data = virtual_classroom_data.generate(
        model.seeds.numpy("data"),
        ids,
        classroom_of,
        difficulties,
        samples_min=pop.samples_min,
        samples_max=pop.samples_max,
        dirichlet_alpha=pop.dirichlet_alpha,
        test_learners=pop.test_learners,
        test_samples_per_learner=pop.test_samples,
        pilot_learners=pop.pilot_learners,
        pilot_samples_per_learner=pop.pilot_samples,
    )
    for room_index, room in enumerate(rooms):
        members = [a for a in ids if classroom_of[a] == room_index]
        for agent_id, xy in zip(members, _seats(room, len(members)), strict=True):
            model.add_device(
                StudentTerminal(
                    model,
                    model.space,
                    agent_id=agent_id,
                    position_m=xy,
                    compute=config.device_compute,
                    data=data.task.local[agent_id],
                    classroom=room_index,
                )
            )
    model.finish_setup()
    generated = generate_model(
        data.pilot_x,
        data.pilot_y,
        data.task.n_classes,
        config=config.generation,
        targets=config.generation_qoais,
        device=config.device_compute,
        edge=config.edge_compute,
        generator=model.seeds.torch("generation"),
    )
    generation = ModelGenerationService(GENERATION_SERVICE, generated, config.generation_qoais)
    model.services.append(generation)
    if generated.chosen is not None:  # the terminals train what generation chose
        config = replace(
            config, fl=replace(config.fl, hidden=generated.chosen.hidden, lr=generated.chosen.lr)
        )
    network = add_federated_training(model, config, service=SERVICE, task=data.task)
    compute = EdgeComputeService(
        model,
        service=COMPUTE_SERVICE,
        config=config.compute,
        targets=config.compute_qoais,
        privacy_detail="pose, answers and interaction logs leave the headset; no camera image, no profile",
    )
    streams_rng = model.seeds.numpy("lesson")
    streams = {
        a: virtual_classroom_data.lesson_stream(streams_rng, data.learners[a], LESSON_WINDOWS) for a in ids
    }
    terminals = ClassroomPart(
        service=TEACHER_SERVICE,
        model_service=SERVICE,
        net=network.net,
        config=config.offload,
        windows={a: s[0] for a, s in streams.items()},
        n_classes=data.task.n_classes,
    )
    add_device_side(model, terminals, host_id=CLASSROOM_HOST_ID)
    teacher = VirtualTeacher(
        model,
        service=TEACHER_SERVICE,
        config=config.offload,
        compute=compute,
        labels={a: s[1] for a, s in streams.items()},
        classroom_of=classroom_of,
        inference_flops=inference_flops_per_sample(network.net, data.task.in_features),
        targets=config.teacher_qoais,
        members={CLASSROOM_HOST_ID: set(ids)},
    )
    teacher.start(at_s=config.offload.interval_s / 2)
    return model


register(
    AgentScenario(
        name="virtual-classroom",
        summary="VR/AR learners: generated engagement model, federated training, edge rendering (EDF/FCFS)",
        paper_section="2.3.7",
        default_config=VirtualClassroomConfig,
        build=build,
    )
)
