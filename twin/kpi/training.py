"""Training services (3.2.3.2): centralized and distributed (federated) training time, energy, efficiency."""

from __future__ import annotations

from dataclasses import dataclass

from twin.kpi.common import (
    ComputeProfile,
    KpiInputError,
    LinkProfile,
    check_non_negative,
    check_positive,
    compute_energy_j,
    compute_latency_s,
    transmission_energy_j,
    transmission_latency_s,
)


@dataclass(frozen=True, slots=True)
class CentralizedTrainingCost:
    """Time and energy of centralized training: collect the data, train in the network (3.2.3.2)."""

    comm_latency_s: float
    comp_latency_s: float
    comm_energy_j: float
    comp_energy_j: float
    efficiency_bits_per_j: float

    @property
    def latency_s(self) -> float:
        """``T = D * N1 / R + (O / F_NET) * N_sample * M_epoch``."""
        return self.comm_latency_s + self.comp_latency_s

    @property
    def energy_j(self) -> float:
        """``E = D * N_sample / EE_comm + (O / EE_NET) * N_sample * M_epoch``."""
        return self.comm_energy_j + self.comp_energy_j


def centralized_training_cost(
    *,
    sample_bits: float,
    samples_per_user: float,
    total_samples: float,
    epochs: float,
    train_flops_per_sample: float,
    link: LinkProfile,
    net: ComputeProfile,
    raw_input_bits: float | None = None,
) -> CentralizedTrainingCost:
    """Centralized training KPIs (3.2.3.2).

    Args:
        sample_bits: ``D``, bits uploaded per sample.
        samples_per_user: ``N1``; users upload in parallel, so the upload takes ``D * N1 / R``.
        total_samples: ``N_sample`` over all users.
        epochs: ``M_epoch``, passes over the training set.
        train_flops_per_sample: ``O``, forward + backward FLOPs of one sample.
        link: per-user rate ``R`` and link power (``EE_comm = R / P``).
        net: the network's training compute.
        raw_input_bits: ``D0`` for the efficiency ``EE = D0 * N_sample / E``; defaults to ``sample_bits``.

    """
    d0 = sample_bits if raw_input_bits is None else raw_input_bits
    n_sample = float(check_non_negative("total_samples", total_samples))
    passes = n_sample * float(check_positive("epochs", epochs))
    comm_energy = float(
        transmission_energy_j(
            check_non_negative("sample_bits", sample_bits) * n_sample, link.efficiency_bits_per_j
        )
    )
    comp_energy = float(compute_energy_j(train_flops_per_sample, net.efficiency_flops_per_j)) * passes
    total = comm_energy + comp_energy
    if total <= 0:
        raise KpiInputError(f"centralized training needs samples and work, got total energy {total} J")
    return CentralizedTrainingCost(
        comm_latency_s=float(
            transmission_latency_s(
                sample_bits * check_non_negative("samples_per_user", samples_per_user), link.rate_bps
            )
        ),
        comp_latency_s=float(compute_latency_s(train_flops_per_sample, net.flops_per_s)) * passes,
        comm_energy_j=comm_energy,
        comp_energy_j=comp_energy,
        efficiency_bits_per_j=float(check_non_negative("raw_input_bits", d0)) * n_sample / total,
    )


@dataclass(frozen=True, slots=True)
class FederatedTrainingCost:
    """Time and energy of distributed (federated) training over ``M_g`` rounds (3.2.3.2)."""

    comm_latency_per_round_s: float
    comp_latency_per_round_s: float
    comm_energy_per_round_j: float
    comp_energy_per_round_j: float
    rounds: int
    processed_bits: float

    @property
    def round_latency_s(self) -> float:
        """``D_m/R_d + D_m/R_u + (O/F_UE) * N1 * M_epoch``."""
        return self.comm_latency_per_round_s + self.comp_latency_per_round_s

    @property
    def latency_s(self) -> float:
        """``T = (D_m/R_d + D_m/R_u + (O/F_UE) * N1 * M_epoch) * M_g``."""
        return self.round_latency_s * self.rounds

    @property
    def energy_per_round_j(self) -> float:
        """``K * D_m / EE_comm + E_comp``."""
        return self.comm_energy_per_round_j + self.comp_energy_per_round_j

    @property
    def energy_j(self) -> float:
        """``E = (K * D_m / EE_comm + E_comp) * M_g``."""
        return self.energy_per_round_j * self.rounds

    @property
    def efficiency_bits_per_j(self) -> float:
        """Data processed per joule, communication included: ``D0 * N_samples * M_epoch * M_g / E``."""
        return self.processed_bits / self.energy_j

    @property
    def compute_efficiency_bits_per_j(self) -> float:
        """Data processed per joule of local training only (the figure Table 3-15 prints as 2.41 Mb/J)."""
        return self.processed_bits / (self.comp_energy_per_round_j * self.rounds)


def federated_training_cost(
    *,
    model_bits: float,
    train_flops_per_sample: float,
    samples_per_user: float,
    samples_per_round: float,
    local_epochs: float,
    rounds: int,
    users_per_round: int,
    downlink_rate_bps: float,
    uplink_rate_bps: float,
    ue: ComputeProfile,
    comm_efficiency_bits_per_j: float,
    raw_input_bits: float,
    model_transfers_per_user: int = 1,
) -> FederatedTrainingCost:
    """Federated training KPIs (3.2.3.2, the five steps: local training, upload, aggregate, download, update).

    Aggregation and model update are neglected, as in the paper.

    Args:
        model_bits: ``D_m``, parameters times bits per parameter.
        train_flops_per_sample: ``O``, forward + backward FLOPs of one sample.
        samples_per_user: ``N1``, local samples of one user (users train in parallel).
        samples_per_round: ``N_samples``, all samples of the participating users in a round.
        local_epochs: ``M_epoch``, local passes per round.
        rounds: ``M_g``, aggregation rounds.
        users_per_round: ``K``, participating users per round.
        downlink_rate_bps: ``R_d``.
        uplink_rate_bps: ``R_u``.
        ue: the devices' compute (``F_UE``, ``EE_UE``).
        comm_efficiency_bits_per_j: ``EE_comm``.
        raw_input_bits: ``D0`` of one sample, for the efficiencies.
        model_transfers_per_user: model transfers charged per user and round. The paper's
            ``E_comm = K * D_m / EE_comm`` charges one (and Table 3-15 follows it) although its time
            counts both directions; pass 2 to charge upload and download.

    """
    if rounds < 1 or users_per_round < 1 or model_transfers_per_user < 1:
        raise KpiInputError(
            "rounds, users_per_round and model_transfers_per_user must be >= 1, got "
            f"{rounds}, {users_per_round}, {model_transfers_per_user}"
        )
    passes = float(check_non_negative("samples_per_round", samples_per_round)) * float(
        check_positive("local_epochs", local_epochs)
    )
    sent_bits = check_non_negative("model_bits", model_bits) * users_per_round * model_transfers_per_user
    return FederatedTrainingCost(
        comm_latency_per_round_s=float(
            transmission_latency_s(model_bits, downlink_rate_bps)
            + transmission_latency_s(model_bits, uplink_rate_bps)
        ),
        comp_latency_per_round_s=float(compute_latency_s(train_flops_per_sample, ue.flops_per_s))
        * float(check_non_negative("samples_per_user", samples_per_user))
        * local_epochs,
        comm_energy_per_round_j=float(transmission_energy_j(sent_bits, comm_efficiency_bits_per_j)),
        comp_energy_per_round_j=float(compute_energy_j(train_flops_per_sample, ue.efficiency_flops_per_j))
        * passes,
        rounds=rounds,
        processed_bits=float(check_positive("raw_input_bits", raw_input_bits)) * passes * rounds,
    )
