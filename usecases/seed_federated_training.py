"""``seed-federated-training`` (paper §3.2.4.2, Tables 3-14/3-15): federated VGG-16 training KPIs.

Per-sample-round time and energy, training efficiency, per-round and total energy and CO2, computed
from the inputs (model size and training FLOPs, samples, rounds, users, link, device compute, ECR),
each overridable with ``--set``.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from twin.config import check_positive
from twin.kpi import ComputeProfile, LinkProfile
from twin.paper_eval import (
    PAPER_DEFAULTS,
    FederatedSpec,
    ModelSpec,
    compare_to_paper,
    federated_training_kpis,
)
from twin.qoais import Indicator, ServiceReport, graded_indicators
from twin.settings import CarbonConfig, QoAISTargets
from usecases.paper_reference import paper_reference
from usecases.registry import CalculationResult, CalculationScenario, ComparedValue, register

_M = PAPER_DEFAULTS.model
_F = PAPER_DEFAULTS.federated


@dataclass(frozen=True, slots=True)
class TrainedModelConfig:
    """The model being trained (Tables 3-12, 3-14)."""

    params_m: float = _M.params / 1e6
    """[Mparam] Trainable parameters of the model, in millions (VGG-16: 138)."""
    bits_per_param: int = _M.bits_per_param
    """[bit] Bits of one parameter on the wire."""
    train_gflops_per_sample: float = _M.train_flops_per_sample / 1e9
    """[GFLOP] Training work per sample (forward and backward)."""
    accuracy: float = _M.accuracy
    """Accuracy the trained model reaches, in [0, 1]."""
    raw_input_mb: float = _M.raw_input_bits / 1e6
    """Size of one raw input sample."""

    def __post_init__(self) -> None:
        check_positive(
            "model",
            params_m=self.params_m,
            bits_per_param=self.bits_per_param,
            train_gflops_per_sample=self.train_gflops_per_sample,
            raw_input_mb=self.raw_input_mb,
        )


@dataclass(frozen=True, slots=True)
class FederationConfig:
    """Samples, rounds and users (Table 3-14)."""

    samples_m: float = _F.total_samples / 1e6
    """[Msample] Training samples of all users together, in millions."""
    rounds: int = _F.rounds
    """Federated rounds."""
    active_users: int = _F.active_users
    """Users that train in each round."""
    users: int = _F.users
    """Users holding data."""
    local_epochs: float = _F.local_epochs
    """Passes over its data an active user makes per round."""

    def __post_init__(self) -> None:
        check_positive(
            "fl",
            samples_m=self.samples_m,
            rounds=self.rounds,
            active_users=self.active_users,
            users=self.users,
            local_epochs=self.local_epochs,
        )
        if self.active_users > self.users:
            raise ValueError(f"fl.active_users ({self.active_users}) cannot exceed fl.users ({self.users})")


@dataclass(frozen=True, slots=True)
class TrainingLinkConfig:
    """Link (Table 3-10); optional distinct up/downlink rates for the training time."""

    rate_bps: float = PAPER_DEFAULTS.link.rate_bps
    """Rate of the device-network link, both directions unless set below."""
    power_w: float = PAPER_DEFAULTS.link.power_w
    """Transmit power of the link."""
    uplink_rate_bps: float | None = None
    """Uplink rate, when it differs from ``rate_bps``."""
    downlink_rate_bps: float | None = None
    """Downlink rate, when it differs from ``rate_bps``."""

    def __post_init__(self) -> None:
        check_positive("link", rate_bps=self.rate_bps, power_w=self.power_w)
        for name in ("uplink_rate_bps", "downlink_rate_bps"):
            value = getattr(self, name)
            if value is not None and value <= 0:
                raise ValueError(f"link.{name} must be > 0 or none, got {value}")


def _user() -> ComputeProfile:
    return PAPER_DEFAULTS.user


def _targets() -> QoAISTargets:
    return QoAISTargets(
        accuracy=0.7, round_latency_s=3600.0, energy_per_round_j=3e6, coverage=0.0, security_level=2
    )


@dataclass(frozen=True, slots=True)
class FederatedTrainingConfig:
    """Every input of the federated-training evaluation."""

    model: TrainedModelConfig = field(default_factory=TrainedModelConfig)
    fl: FederationConfig = field(default_factory=FederationConfig)
    link: TrainingLinkConfig = field(default_factory=TrainingLinkConfig)
    ue: ComputeProfile = field(default_factory=_user)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    qoais: QoAISTargets = field(default_factory=_targets)


COLUMNS = (
    "per_sample_round_time_ms",
    "per_sample_round_energy_j",
    "training_efficiency_mb_per_j",
    "per_round_energy_j",
    "total_energy_j",
    "co2_g",
    "training_efficiency_with_comm_mb_per_j",
    "total_time_s",
)


def compute(config: FederatedTrainingConfig) -> CalculationResult:
    """Table 3-15 from the inputs, compared with the paper, and the service's QoAIS."""
    m = config.model
    model = ModelSpec(
        name="VGG-16",
        params=m.params_m * 1e6,
        forward_flops=_M.forward_flops,
        train_flops_per_sample=m.train_gflops_per_sample * 1e9,
        accuracy=m.accuracy,
        raw_input_bits=m.raw_input_mb * 1e6,
        bits_per_param=m.bits_per_param,
    )
    fl = config.fl
    federation = FederatedSpec(
        total_samples=fl.samples_m * 1e6,
        rounds=fl.rounds,
        active_users=fl.active_users,
        users=fl.users,
        local_epochs=fl.local_epochs,
    )
    link = LinkProfile(rate_bps=config.link.rate_bps, power_w=config.link.power_w)
    kpis = federated_training_kpis(
        model,
        federation,
        link,
        config.ue,
        config.carbon.ecr_kg_per_kwh,
        uplink_rate_bps=config.link.uplink_rate_bps,
        downlink_rate_bps=config.link.downlink_rate_bps,
    )
    values = kpis.as_dict()
    comparison = tuple(
        ComparedValue("table 3-15", c.column, c.ours, c.paper, c.diff, c.within_tolerance)
        for c in compare_to_paper([kpis], [paper_reference().federated])
    )
    per_round_s = kpis.total_time_s / fl.rounds
    per_round_j = kpis.total_energy_j / fl.rounds
    targets = config.qoais
    indicators = (
        Indicator(
            "performance",
            "model_accuracy",
            m.accuracy,
            targets.accuracy,
            "",
            "min",
            "nominal accuracy of the trained model (Table 3-12)",
        ),
        Indicator(
            "performance",
            "round_latency",
            per_round_s,
            targets.round_latency_s,
            " s",
            "max",
            "download + upload of the model + local training of a user's samples",
        ),
        Indicator(
            "overhead",
            "energy_per_round",
            per_round_j,
            targets.energy_per_round_j,
            " J",
            "max",
            f"compute {kpis.per_round_energy_j:.4g} J + transmission "
            f"{per_round_j - kpis.per_round_energy_j:.4g} J",
        ),
        *graded_indicators(
            targets,
            tls=False,
            authenticated=False,
            raw_data_leaves_device=False,
            features_leave_device=False,
            privacy_detail="federated: raw data stays on the devices",
            security_detail="link security is not part of the paper's example",
        ),
    )
    report = ServiceReport(
        "federated-training",
        "federated training",
        indicators,
        (
            f"total: {kpis.total_time_s / 3600:.2f} h, {kpis.total_energy_j / 3.6e6:.1f} kWh, "
            f"{kpis.co2_g / 1000:.1f} kg CO2-eq",
        ),
    )
    return CalculationResult(
        title=f"Federated training of a {m.params_m:g} M-parameter model, "
        f"{fl.rounds} rounds × {fl.active_users} users",
        columns=COLUMNS,
        rows=(values,),
        comparison=comparison,
        highlights={
            "per_round_time_s": per_round_s,
            "per_round_energy_j": per_round_j,
            "ecr_kg_per_kwh": config.carbon.ecr_kg_per_kwh,
        },
        qoais=(report,),
        inputs_match_paper=config == FederatedTrainingConfig(),
    )


register(
    CalculationScenario(
        name="seed-federated-training",
        summary="Paper Tables 3-14/3-15: federated VGG-16 training time, energy and CO2",
        paper_section="3.2.4.2",
        default_config=FederatedTrainingConfig,
        compute=compute,
    )
)
