"""Config sections shared by the agent-based scenarios (each validated on construction).

Units are in the field names. Defaults follow the paper where it gives numbers (Tables 3-10, 3-11;
ECR 0.702 kg CO2/kWh implied by Table 3-15).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from twin.config import check_positive, check_range


@dataclass(frozen=True, slots=True)
class AreaConfig:
    """The simulated area (metres) and its base stations on a hexagonal-ish grid."""

    width_m: float = 1000.0
    height_m: float = 1000.0
    base_stations: int = 3
    bs_height_m: float = 25.0
    grid_m: float = 25.0

    def __post_init__(self) -> None:
        check_positive(
            "area",
            width_m=self.width_m,
            height_m=self.height_m,
            base_stations=self.base_stations,
            bs_height_m=self.bs_height_m,
            grid_m=self.grid_m,
        )


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How the radio's capacity is shared and what it costs in power (the radio itself: ``radio.*``).

    ``bs_power_w`` is the base station's power while carrying traffic (Table 3-10: 636 W), so the
    network's energy per bit is ``P / R_cell`` (EE_comm = R / P, SPEC §7).
    """

    uplink_share: float = 0.25
    bs_power_w: float = 636.0
    ue_radio_power_w: float = 0.2

    def __post_init__(self) -> None:
        check_positive("link", bs_power_w=self.bs_power_w, ue_radio_power_w=self.ue_radio_power_w)
        check_range("link", "uplink_share", self.uplink_share, 0.01, 0.99)


@dataclass(frozen=True, slots=True)
class FederatedConfig:
    """Federated training service: rounds, participation, local training, deadline."""

    rounds: int = 20
    clients_per_round: float = 1.0
    local_epochs: int = 2
    batch_size: int = 16
    lr: float = 0.3
    strategy: Literal["fedavg", "fedprox", "fedavgm"] = "fedavg"
    proximal_mu: float = 0.01
    deadline_s: float = 2.0
    round_interval_s: float = 10.0
    dropout_prob: float = 0.02
    hidden: int = 48
    wire_dtype: Literal["fp32", "fp16", "int8"] = "fp32"

    def __post_init__(self) -> None:
        check_positive(
            "fl",
            rounds=self.rounds,
            local_epochs=self.local_epochs,
            batch_size=self.batch_size,
            lr=self.lr,
            deadline_s=self.deadline_s,
            hidden=self.hidden,
        )
        check_range("fl", "clients_per_round", self.clients_per_round, 1e-9, 1.0)
        check_range("fl", "dropout_prob", self.dropout_prob, 0.0, 1.0)
        check_range("fl", "round_interval_s", self.round_interval_s, 0.0, 1e9)
        check_range("fl", "proximal_mu", self.proximal_mu, 0.0, 1e6)


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Model exchange over MQTT: chunking, size limits, completeness barrier (wall-clock)."""

    chunk_bytes: int = 256 * 1024
    max_payload_bytes: int = 64 * 1024 * 1024
    barrier_timeout_s: float = 30.0
    resend_after_s: float = 2.0
    telemetry_interval_s: float = 10.0

    def __post_init__(self) -> None:
        check_positive(
            "bus",
            chunk_bytes=self.chunk_bytes,
            max_payload_bytes=self.max_payload_bytes,
            barrier_timeout_s=self.barrier_timeout_s,
            resend_after_s=self.resend_after_s,
            telemetry_interval_s=self.telemetry_interval_s,
        )


@dataclass(frozen=True, slots=True)
class CarbonConfig:
    """Regional carbon intensity (ECR): kg CO2-eq per kWh; 0.702 is implied by Table 3-15."""

    ecr_kg_per_kwh: float = 0.702

    def __post_init__(self) -> None:
        check_range("carbon", "ecr_kg_per_kwh", self.ecr_kg_per_kwh, 0.0, 10.0)


@dataclass(frozen=True, slots=True)
class QoAISTargets:
    """Targets a service must meet (SPEC §5-6); graded dimensions are levels 1 (low) … 5 (high)."""

    accuracy: float = 0.85
    round_latency_s: float = 2.0
    energy_per_round_j: float = 500.0
    coverage: float = 0.95
    min_rate_bps: float = 1e5
    accuracy_variance_max: float = 1e-3
    privacy_level: int = 4
    security_level: int = 3
    autonomy: Literal["full", "partial", "human"] = "partial"

    def __post_init__(self) -> None:
        check_range("qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_range("qoais", "coverage", self.coverage, 0.0, 1.0)
        check_positive(
            "qoais",
            round_latency_s=self.round_latency_s,
            energy_per_round_j=self.energy_per_round_j,
            min_rate_bps=self.min_rate_bps,
            accuracy_variance_max=self.accuracy_variance_max,
        )
        check_range("qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("qoais", "security_level", self.security_level, 1, 5)


@dataclass(frozen=True, slots=True)
class InferenceTargets:
    """Targets of an inference service: per-request accuracy, latency and energy; graded levels."""

    accuracy: float = 0.7
    latency_s: float = 0.02
    energy_per_request_j: float = 5.0
    privacy_level: int = 3
    security_level: int = 2
    autonomy: Literal["full", "partial", "human"] = "full"

    def __post_init__(self) -> None:
        check_range("qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_positive("qoais", latency_s=self.latency_s, energy_per_request_j=self.energy_per_request_j)
        check_range("qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("qoais", "security_level", self.security_level, 1, 5)
