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
    """East-west extent of the simulated area."""
    height_m: float = 1000.0
    """North-south extent of the simulated area."""
    base_stations: int = 3
    """Number of base stations (cells) placed on the grid."""
    bs_height_m: float = 25.0
    """Antenna height of every base station."""
    grid_m: float = 25.0
    """Cell size of the coverage map's grid."""

    def __post_init__(self) -> None:
        check_positive(
            "area",
            width_m=self.width_m,
            height_m=self.height_m,
            base_stations=self.base_stations,
            bs_height_m=self.bs_height_m,
            grid_m=self.grid_m,
        )
        check_range("area", "width_m", self.width_m, 1.0, 1e6)
        check_range("area", "height_m", self.height_m, 1.0, 1e6)
        check_range("area", "base_stations", self.base_stations, 1, 100_000)
        check_range("area", "bs_height_m", self.bs_height_m, 1.0, 1000.0)
        check_range("area", "grid_m", self.grid_m, 1.0, min(self.width_m, self.height_m))


@dataclass(frozen=True, slots=True)
class LinkConfig:
    """How the radio's capacity is shared and what it costs in power (the radio itself: ``radio.*``).

    ``bs_power_w`` is the base station's power while carrying traffic (Table 3-10: 636 W), so the
    network's energy per bit is ``P / R_cell`` (EE_comm = R / P, SPEC §7).
    """

    uplink_share: float = 0.25
    """Share of a cell's resources given to the uplink (the rest is downlink)."""
    bs_power_w: float = 636.0
    """Base-station power while carrying traffic (Table 3-10: 636 W)."""
    ue_radio_power_w: float = 0.2
    """A device's radio power while transmitting."""

    def __post_init__(self) -> None:
        check_positive("link", bs_power_w=self.bs_power_w, ue_radio_power_w=self.ue_radio_power_w)
        check_range("link", "uplink_share", self.uplink_share, 0.01, 0.99)


@dataclass(frozen=True, slots=True)
class FederatedConfig:
    """Federated training service: rounds, participation, local training, deadline."""

    rounds: int = 20
    """Federated rounds to run (``--rounds`` sets it too)."""
    clients_per_round: float = 1.0
    """Fraction of the devices selected each round, in (0, 1]."""
    local_epochs: int = 2
    """Passes over its local data a device makes per round."""
    batch_size: int = 16
    """Samples per local training step."""
    lr: float = 0.3
    """Learning rate of local SGD."""
    strategy: Literal["fedavg", "fedprox", "fedavgm"] = "fedavg"
    """How the network fuses the devices' models."""
    proximal_mu: float = 0.01
    """FedProx proximal term weight (used with ``strategy = fedprox``)."""
    deadline_s: float = 2.0
    """Round deadline: updates arriving later are stragglers, left out of the round."""
    round_interval_s: float = 10.0
    """Simulated time from the start of one round to the start of the next."""
    dropout_prob: float = 0.02
    """Probability that a selected device drops out of a round."""
    hidden: int = 48
    """Hidden units of the MLP every device trains."""
    wire_dtype: Literal["fp32", "fp16", "int8"] = "fp32"
    """Number format of the models sent over the bus (fp16/int8 compress them)."""

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
        check_range("fl", "rounds", self.rounds, 1, 1_000_000)
        check_range("fl", "local_epochs", self.local_epochs, 1, 10_000)
        check_range("fl", "batch_size", self.batch_size, 1, 1_000_000)
        check_range("fl", "lr", self.lr, 1e-12, 100.0)
        check_range("fl", "deadline_s", self.deadline_s, 1e-6, 1e6)
        check_range("fl", "hidden", self.hidden, 1, 1_000_000)
        check_range("fl", "clients_per_round", self.clients_per_round, 1e-9, 1.0)
        check_range("fl", "dropout_prob", self.dropout_prob, 0.0, 1.0)
        check_range("fl", "round_interval_s", self.round_interval_s, 0.0, 1e9)
        check_range("fl", "proximal_mu", self.proximal_mu, 0.0, 1e6)


MIN_CHUNK_BYTES = 1024
"""Smallest ``bus.chunk_bytes`` (and ``bus.max_payload_bytes``)."""
MAX_CHUNK_BYTES = 128 * 1024 * 1024
"""Largest ``bus.chunk_bytes``: one MQTT message, with room under the protocol's 256 MiB."""


@dataclass(frozen=True, slots=True)
class BusConfig:
    """Model exchange over MQTT: chunking, size limits, completeness barrier (wall-clock)."""

    chunk_bytes: int = 256 * 1024
    """Largest MQTT message a model is split into."""
    max_payload_bytes: int = 64 * 1024 * 1024
    """Largest model payload accepted (bigger ones are rejected)."""
    barrier_timeout_s: float = 30.0
    """Wall-clock wait for a round's messages (and for a lost broker) before aborting."""
    resend_after_s: float = 2.0
    """Wall-clock wait without progress before missing chunks are asked for again."""
    telemetry_interval_s: float = 10.0
    """Simulated time between two telemetry snapshots of every agent (0: none)."""
    pack_updates: bool = True
    """Whether a device host packs its devices' updates of a round into few messages (each device's row
    still authenticated by the device) instead of sending one message per device."""

    def __post_init__(self) -> None:
        check_positive(
            "bus",
            chunk_bytes=self.chunk_bytes,
            max_payload_bytes=self.max_payload_bytes,
            barrier_timeout_s=self.barrier_timeout_s,
            resend_after_s=self.resend_after_s,
        )
        check_range("bus", "telemetry_interval_s", self.telemetry_interval_s, 0.0, 365 * 86_400.0)
        # A chunk is one MQTT message (the protocol's limit is 256 MiB); smaller than 1 KiB, the chunk
        # digests in the manifest outweigh the chunks. The model itself must fit in max_payload_bytes:
        # checked against the model's size in twin/resources.py.
        check_range("bus", "chunk_bytes", self.chunk_bytes, MIN_CHUNK_BYTES, MAX_CHUNK_BYTES)
        check_range("bus", "max_payload_bytes", self.max_payload_bytes, MIN_CHUNK_BYTES, 1 << 32)
        check_range("bus", "barrier_timeout_s", self.barrier_timeout_s, 1e-3, 86_400.0)
        check_range("bus", "resend_after_s", self.resend_after_s, 1e-3, 86_400.0)


@dataclass(frozen=True, slots=True)
class CarbonConfig:
    """Regional carbon intensity (ECR): kg CO2-eq per kWh; 0.702 is implied by Table 3-15."""

    ecr_kg_per_kwh: float = 0.702
    """Carbon intensity of the electricity (0.702 implied by Table 3-15)."""

    def __post_init__(self) -> None:
        check_range("carbon", "ecr_kg_per_kwh", self.ecr_kg_per_kwh, 0.0, 10.0)


@dataclass(frozen=True, slots=True)
class QoAISTargets:
    """Targets a service must meet (SPEC §5-6); graded dimensions are levels 1 (low) … 5 (high)."""

    accuracy: float = 0.85
    """Target accuracy of the trained model, in [0, 1]."""
    round_latency_s: float = 2.0
    """Target duration of one federated round (at most)."""
    energy_per_round_j: float = 500.0
    """Target energy of one round, devices and network (at most)."""
    coverage: float = 0.95
    """Target share of the area with enough rate and service accuracy, in [0, 1]."""
    min_rate_bps: float = 1e5
    """Rate a spot needs to count as covered."""
    accuracy_variance_max: float = 1e-3
    """Largest variance of the accuracy over the last rounds (stability)."""
    privacy_level: int = 4
    """Target privacy level, 1 (low) … 5 (high)."""
    security_level: int = 3
    """Target transmission security level, 1 (low) … 5 (high)."""
    autonomy: Literal["full", "partial", "human"] = "partial"
    """Autonomy the service must offer."""

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
    """Target share of correctly answered requests, in [0, 1]."""
    latency_s: float = 0.02
    """Target latency of one request (at most)."""
    energy_per_request_j: float = 5.0
    """Target energy of one request (at most)."""
    privacy_level: int = 3
    """Target privacy level, 1 (low) … 5 (high)."""
    security_level: int = 2
    """Target transmission security level, 1 (low) … 5 (high)."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Autonomy the service must offer."""

    def __post_init__(self) -> None:
        check_range("qoais", "accuracy", self.accuracy, 0.0, 1.0)
        check_positive("qoais", latency_s=self.latency_s, energy_per_request_j=self.energy_per_request_j)
        check_range("qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("qoais", "security_level", self.security_level, 1, 5)
