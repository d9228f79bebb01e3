"""``disease-diagnosis`` (paper §2.3.6): desensitised cases, edge re-training, cascade to the core, drift.

What it models: patient terminals in clinics and homes around a few sites (3GPP UMi cells) collect
cases — identifiable records with vital signs and blood tests. The **data-management service** (§2.4.9,
:mod:`twin.services.data_management`) runs on the terminals: identifiers are removed and
quasi-identifiers generalised before anything leaves; completeness, near-duplicate redundancy,
k-anonymity and the privacy level are reported. The edge (MEC) medical server trains the diagnosis
model — federated across the terminals (default) or centrally on the desensitised cases it received
(``--set training.mode=central``) — and infers; when its confidence is below
``cascade.confidence_threshold`` the case escalates to a larger core-network model
(:mod:`twin.services.cascade`), further away over the backhaul. Halfway through, the patient
population drifts (``drift.at_s``, ``drift.magnitude``); **model management** (§2.4.7,
:mod:`twin.services.model_management`) sees the accuracy drop on recent labelled cases, collects fresh
cases and re-trains edge and core.

What it simplifies: a clinician's confirmation of a diagnosis arrives with the case (no delay); the
core model is trained by the twin's network side on the edge's pooled cases (the edge→core hop is
modelled — rate, delay, energy — not carried over MQTT); features are ten numbers, not images; the
terminals do not infer (the paper's devices may).

Where the terminals run: their side (desensitisation, the batches of cases, their training windows and
federated training) is one host in the run's process, or, with ``--workers N``, split among N Ray
device hosts (:mod:`twin.workers`), each holding its terminals' cases, collectors and training windows
beside the device host that trains them; the diagnosis service is told which worker holds which
terminals. Every table is the same for any number of workers.

QoAIS targets — the paper gives needs, not numbers (§2.3.6.3-4): desensitised before upload → privacy
level 3 (data, diagnosis and training services: the paper's own design trains at the edge on the
desensitised samples); "real-time, high-accuracy" network inference → 85 % accuracy, 95th-percentile
latency 100 ms (our numbers); completeness 90 %, redundancy ≤ 10 % (ours); model management: detect
drift within 60 s and recover to 80 % (ours). Drift monitor (240-case window, 0.12 drop): at the
defaults no alarm precedes the drift (checked in ``tests/usecases/test_disease_diagnosis.py``).

Training modes. ``federated`` (default): only model updates leave the terminals (privacy level 4).
``central``: the desensitised cases the terminals send for diagnosis are pooled at the edge, which
trains on them (the terminals' past cases are taken as already pooled there); the training's privacy
level is the data-management service's (3 when the released records are k-anonymous), and its report
says so. At the defaults central training is more accurate (≈ 0.88 vs 0.87 held-out) and more robust
to the drift: its monitored accuracy drops ≈ 0.10–0.12, about the alarm threshold, so the drift may go
undetected — then nothing is re-trained, the core model keeps its pre-drift training and the cascade's
service accuracy ends just under its target. That is the monitor's threshold meeting a smaller drop,
not a fault; lower ``management.drop_threshold`` to catch it.

Default verdicts (seed 0): after the drift at 300 s the six re-training rounds climb back past the
target (held-out 0.756, 0.781, 0.807, 0.845, 0.856, then 0.885 in the last round; the re-trained model
0.902 on recent cases), so model management passes, while the training misses its robustness target: its
accuracy is still climbing over the last five rounds (variance 0.0013 > 0.001). Seeds 1–4 miss targets
too, each its own (seeds 1 and 3: the monitor never catches the drift; seed 4: the training ends at
0.788).
"""

from __future__ import annotations

from dataclasses import dataclass, field, replace
from typing import Any, Literal

import numpy as np
import torch

from agents.diagnosis import (
    CampaignTrainer,
    DataManagementService,
    DiagnosisService,
    ModelManagementService,
    train_central,
)
from agents.patient_terminal import PatientTerminal, TerminalCases, TerminalPart, TrainingWindow
from twin.config import check_positive, check_range
from twin.errors import ConfigError
from twin.kpi import ComputeProfile
from twin.learning.aggregation import make_strategy
from twin.learning.cohort import LocalData
from twin.learning.models import MLP, inference_flops_per_sample, init_params, training_flops_per_sample
from twin.learning.round_plan import ModelSpec
from twin.learning.task import TaskData
from twin.model import TwinModel
from twin.radio import RadioConfig
from twin.services.cascade import CascadeConfig, CascadeTargets
from twin.services.data_management import (
    DataServiceConfig,
    DataServiceLedger,
    DataServiceTargets,
    encode_features,
)
from twin.services.model_management import ModelManagementConfig, ModelManagementTargets
from twin.settings import AreaConfig, BusConfig, CarbonConfig, FederatedConfig, LinkConfig, QoAISTargets
from usecases import disease_diagnosis_data as dd
from usecases.common import add_base_stations, add_device_side, local_host, new_model
from usecases.registry import AgentScenario, BuildContext, register

TRAINING = "diagnosis-training"
DIAGNOSIS = "diagnosis"
DATA = "patient-data"
MANAGEMENT = "model-management"
TERMINAL_HOST = "terminals-0"


@dataclass(frozen=True, slots=True)
class TerminalPopulation:
    """The terminals and the cases they collect."""

    count: int = 30
    """Patient terminals (devices), spread over the sites."""
    sites: int = 3
    """Clinics the terminals cluster around (each with its postcode area)."""
    site_radius_m: float = 150.0
    """Spread of the terminals around their site."""
    history_cases: int = 60
    """Labelled cases each terminal holds before the run."""
    cases_per_tick: int = 2
    """New cases a terminal collects per tick."""
    labelled_share: float = 1.0
    """Share of cases whose diagnosis a clinician confirms (labelled cases)."""
    missing_prob: float = 0.08
    """Probability that a case misses one or two measurements."""
    duplicate_prob: float = 0.05
    """Probability that a case is a re-measurement of the terminal's previous patient."""
    training_window: int = 200
    """Most recent labelled cases a terminal (and the edge's pool, × terminals) trains on."""
    test_samples: int = 1000
    """Held-out cases the edge model is evaluated on (of the population at that time)."""

    def __post_init__(self) -> None:
        check_positive(
            "devices",
            count=self.count,
            sites=self.sites,
            history_cases=self.history_cases,
            cases_per_tick=self.cases_per_tick,
            training_window=self.training_window,
            test_samples=self.test_samples,
        )
        check_range("devices", "labelled_share", self.labelled_share, 0.0, 1.0)
        check_range("devices", "missing_prob", self.missing_prob, 0.0, 1.0)
        check_range("devices", "duplicate_prob", self.duplicate_prob, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class DriftConfig:
    """When and how much the patient population drifts."""

    at_s: float = 300.0
    """Simulated time of the drift (past the run's end: no drift)."""
    magnitude: float = 2.0
    """Shift of every presentation's centre, in reference standard deviations (0: no drift)."""

    def __post_init__(self) -> None:
        check_range("drift", "at_s", self.at_s, 0.0, 1e9)
        check_range("drift", "magnitude", self.magnitude, 0.0, 100.0)


@dataclass(frozen=True, slots=True)
class TrainingConfig:
    """Where the edge model is (re-)trained."""

    mode: Literal["federated", "central"] = "federated"
    """``federated``: across the terminals; ``central``: at the edge on the desensitised cases."""

    def __post_init__(self) -> None:
        if self.mode not in ("federated", "central"):
            raise ConfigError(f"training.mode must be 'federated' or 'central', got {self.mode!r}")


def _terminal() -> ComputeProfile:
    return ComputeProfile(flops_per_s=2e9, power_w=2.0)


def _mec() -> ComputeProfile:
    return ComputeProfile(flops_per_s=19.5e12, power_w=400.0)


@dataclass(frozen=True, slots=True)
class DiseaseDiagnosisConfig:
    """Every parameter of the scenario (``--set section.field=value``)."""

    area: AreaConfig = field(
        default_factory=lambda: AreaConfig(width_m=900.0, height_m=900.0, base_stations=4)
    )
    devices: TerminalPopulation = field(default_factory=TerminalPopulation)
    device_compute: ComputeProfile = field(default_factory=_terminal)
    edge_compute: ComputeProfile = field(default_factory=_mec)
    radio: RadioConfig = field(
        default_factory=lambda: RadioConfig(
            scenario="UMi", carrier_ghz=3.5, bandwidth_hz=40e6, load_factor=0.5
        )
    )
    link: LinkConfig = field(default_factory=LinkConfig)
    fl: FederatedConfig = field(
        default_factory=lambda: FederatedConfig(
            rounds=6, deadline_s=2.0, round_interval_s=4.0, hidden=24, lr=0.2
        )
    )
    training: TrainingConfig = field(default_factory=TrainingConfig)
    cascade: CascadeConfig = field(default_factory=CascadeConfig)
    drift: DriftConfig = field(default_factory=DriftConfig)
    data: DataServiceConfig = field(default_factory=DataServiceConfig)
    management: ModelManagementConfig = field(default_factory=ModelManagementConfig)
    bus: BusConfig = field(default_factory=BusConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    qoais: QoAISTargets = field(
        default_factory=lambda: QoAISTargets(
            accuracy=0.8, round_latency_s=3.0, energy_per_round_j=100.0, coverage=0.9, privacy_level=3
        )
    )
    diagnosis_qoais: CascadeTargets = field(default_factory=CascadeTargets)
    data_qoais: DataServiceTargets = field(default_factory=DataServiceTargets)
    management_qoais: ModelManagementTargets = field(default_factory=ModelManagementTargets)


def _features(records: list[dict[str, object]]) -> torch.Tensor:
    return torch.from_numpy(np.stack([encode_features(r, dd.SCHEMA)[0] for r in records]))


def build(config: DiseaseDiagnosisConfig, ctx: BuildContext) -> TwinModel:
    """Create the world: cells, terminals with their cases, the edge trainer, the services."""
    model = new_model("disease-diagnosis", config, replace(ctx, rounds_limit=None))
    add_base_stations(model, config)
    pop, cascade = config.devices, config.cascade
    rng = model.seeds.numpy("data")
    population = dd.population(rng, drift_magnitude=config.drift.magnitude)
    tick_times = cascade.start_s + cascade.interval_s * np.arange(cascade.ticks)
    stream_drifted = np.repeat(tick_times >= config.drift.at_s, pop.cases_per_tick)
    ids = [f"pt-{i:04d}" for i in range(pop.count)]
    sites = [i % pop.sites for i in range(pop.count)]
    positions = _positions(model.seeds.numpy("placement"), config.area, pop, sites)
    streams: dict[str, TerminalCases] = {}
    history: dict[str, LocalData] = {}
    for agent_id, site in zip(ids, sites, strict=True):
        common: dict[str, Any] = {
            "site": agent_id[3:],
            "postcode_prefix": f"{21 + site:02d}",
            "missing_prob": pop.missing_prob,
            "duplicate_prob": pop.duplicate_prob,
            "labelled_share": pop.labelled_share,
        }
        past = dd.cases(
            model.seeds.numpy(f"history/{agent_id}"),
            population,
            n=pop.history_cases,
            drifted=np.zeros(pop.history_cases, dtype=bool),
            **common,
        )
        history[agent_id] = LocalData(_features(past.records), torch.from_numpy(past.labels))
        now = dd.cases(
            model.seeds.numpy(f"stream/{agent_id}"),
            population,
            n=len(stream_drifted),
            drifted=stream_drifted,
            first_index=pop.history_cases,
            **common,
        )
        streams[agent_id] = TerminalCases(now.records, now.labels, now.labelled, pop.cases_per_tick)
    for agent_id, xy, site in zip(ids, positions, sites, strict=True):
        model.add_device(
            PatientTerminal(
                model,
                model.space,
                agent_id=agent_id,
                position_m=(float(xy[0]), float(xy[1])),
                compute=config.device_compute,
                data=history[agent_id],
                site=f"site-{site}",
            )
        )
    model.finish_setup()
    test = {
        drifted: dd.cases(
            model.seeds.numpy(f"test/{drifted}"),
            population,
            site="test",
            postcode_prefix="00",
            n=pop.test_samples,
            drifted=np.full(pop.test_samples, drifted),
            missing_prob=0.0,
            duplicate_prob=0.0,
            labelled_share=1.0,
        )
        for drifted in (False, True)
    }
    tasks = {
        k: TaskData(
            history,
            _features(v.records),
            torch.from_numpy(v.labels),
            dd.CLASSES,
            raw_sample_bits=32 * len(dd.FEATURES),
        )
        for k, v in test.items()
    }
    task = tasks[False]
    width, n_classes = task.in_features, task.n_classes
    edge_net = MLP(width, config.fl.hidden, n_classes)
    initial = init_params(edge_net, model.seeds.torch("model/init"))
    trainer = CampaignTrainer(
        model,
        service=TRAINING,
        net=edge_net,
        initial=initial,
        task=task,
        strategy=make_strategy(config.fl.strategy, config.fl.proximal_mu),
        fl=config.fl,
        bus_cfg=config.bus,
        train_flops_per_sample=training_flops_per_sample(edge_net, width),
        targets=config.qoais,
        model_spec=ModelSpec("mlp", width, config.fl.hidden, n_classes),
        mode=config.training.mode,
        pool=lambda: service.pool_data(management.since_tick, history_pool, pop.training_window * pop.count),
    )
    model.network = trainer
    model.subscribe_service(TRAINING)
    device_host = local_host(model, config)
    if config.training.mode == "federated":
        device_host.join_federated(
            TRAINING, net=MLP(width, config.fl.hidden, n_classes), template=initial, data=history
        )
    history_pool = LocalData(torch.cat([history[a].x for a in ids]), torch.cat([history[a].y for a in ids]))
    core_net = MLP(width, cascade.core_hidden, n_classes)
    core_params = train_central(
        core_net,
        init_params(core_net, model.seeds.torch("model/core")),
        history_pool,
        epochs=cascade.core_epochs,
        batch_size=64,
        lr=0.2,
        rng=model.seeds.numpy("core/0"),
    )
    ledger = DataServiceLedger(dd.SCHEMA, config.data)
    data_service = DataManagementService(DATA, ledger, config.data_qoais)
    trainer.data_ledger = ledger
    service = DiagnosisService(
        model,
        service=DIAGNOSIS,
        trainer=trainer,
        core_net=core_net,
        core_params=core_params,
        config=cascade,
        targets=config.diagnosis_qoais,
        labels={a: s.labels for a, s in streams.items()},
        per_tick=pop.cases_per_tick,
        members={TERMINAL_HOST: set(ids)},
        edge_flops=inference_flops_per_sample(edge_net, width),
        core_flops=inference_flops_per_sample(core_net, width),
        data=data_service,
        windows={a: TrainingWindow(history[a], pop.training_window) for a in ids},
    )
    retrains = [0]

    def retrain_core(since_tick: int | None) -> None:
        if trainer.campaigns <= 1:
            return
        retrains[0] += 1
        pool = service.pool_data(since_tick, history_pool, pop.training_window * pop.count)
        service.core_params = train_central(
            core_net,
            service.core_params,
            pool,
            epochs=cascade.core_epochs,
            batch_size=64,
            lr=0.2,
            rng=model.seeds.numpy(f"core/{retrains[0]}"),
        )

    drift_at = config.drift.at_s if config.drift.magnitude > 0 else None
    management = ModelManagementService(
        model,
        service=MANAGEMENT,
        trainer=trainer,
        config=config.management,
        targets=config.management_qoais,
        drift_at_s=drift_at,
        retrain_core=retrain_core,
    )
    service.management = management
    model.services += [data_service, management]
    if drift_at is not None:
        trainer.drifted_task = tasks[True]
        model.schedule_event(trainer.population_drifted, at=drift_at)
    terminals = TerminalPart(
        service=DIAGNOSIS,
        policy_topic=management.policy_topic,
        schema=dd.SCHEMA,
        data=config.data,
        cases=streams,
        history=history,
        training_window=pop.training_window,
        federated_service=TRAINING if config.training.mode == "federated" else None,
    )
    add_device_side(model, terminals, host_id=TERMINAL_HOST)
    trainer.begin_campaign(1.0)
    service.start()
    return model


def _positions(
    rng: np.random.Generator, area: AreaConfig, pop: TerminalPopulation, sites: list[int]
) -> np.ndarray:
    """Terminals around their site's clinic (Gaussian), kept inside the area."""
    centres = rng.uniform(
        [area.width_m * 0.2, area.height_m * 0.2],
        [area.width_m * 0.8, area.height_m * 0.8],
        size=(pop.sites, 2),
    )
    xy = centres[sites] + rng.normal(0.0, pop.site_radius_m / 2, size=(pop.count, 2))
    return np.clip(xy, [1.0, 1.0], [area.width_m - 1.0, area.height_m - 1.0])


register(
    AgentScenario(
        name="disease-diagnosis",
        summary="Terminals desensitise cases; the edge re-trains, infers, escalates to the core; drift",
        paper_section="2.3.6",
        default_config=DiseaseDiagnosisConfig,
        build=build,
        rounds_key="cascade.ticks",
    )
)
