"""KPI formulas of the paper's section 3.2.3 as pure numpy functions, SI units inside.

Sizes are bits, work is FLOPs, speeds are FLOP/s and bit/s, power is W, energy is J, time is s; CO2 is kg
(from an emission conversion rate ECR in kg CO2 per kWh). Display units (ms, Mb, g) belong to the callers
(see :mod:`twin.paper_eval`). Every function validates its inputs and raises :class:`KpiInputError`
(a :class:`ValueError` and a :class:`~twin.errors.TwinError`) with a message naming the bad value.
Functions broadcast over numpy arrays (split points, devices, grid cells).

Modules: :mod:`~twin.kpi.common` (profiles, latency, energy, CO2), :mod:`~twin.kpi.inference` (split
inference), :mod:`~twin.kpi.training` (centralized and federated training), :mod:`~twin.kpi.area`
(coverage, density), :mod:`~twin.kpi.data` (completeness, redundancy).
"""

from twin.kpi.area import (
    area_compute_capacity_bps_per_km2,
    area_traffic_capacity_bps_per_km2,
    coverage_share,
    service_coverage,
    service_density_bps_per_km2,
)
from twin.kpi.common import (
    JOULES_PER_KWH,
    ComputeProfile,
    KpiInputError,
    LinkProfile,
    co2_kg,
    comm_efficiency_bits_per_j,
    compute_efficiency_flops_per_j,
    compute_energy_j,
    compute_latency_s,
    transmission_energy_j,
    transmission_latency_s,
)
from twin.kpi.data import (
    data_completeness,
    lossless_mask,
    mutual_information_redundancy_bits,
    near_duplicate_share,
)
from twin.kpi.inference import (
    SplitInferenceCost,
    SplitObjective,
    SplitPoint,
    SplitProfile,
    choose_split,
    service_accuracy,
    split_inference_cost,
    split_objective,
)
from twin.kpi.training import (
    CentralizedTrainingCost,
    FederatedTrainingCost,
    centralized_training_cost,
    federated_training_cost,
)

__all__ = [
    "JOULES_PER_KWH",
    "CentralizedTrainingCost",
    "ComputeProfile",
    "FederatedTrainingCost",
    "KpiInputError",
    "LinkProfile",
    "SplitInferenceCost",
    "SplitObjective",
    "SplitPoint",
    "SplitProfile",
    "area_compute_capacity_bps_per_km2",
    "area_traffic_capacity_bps_per_km2",
    "centralized_training_cost",
    "choose_split",
    "co2_kg",
    "comm_efficiency_bits_per_j",
    "compute_efficiency_flops_per_j",
    "compute_energy_j",
    "compute_latency_s",
    "coverage_share",
    "data_completeness",
    "federated_training_cost",
    "lossless_mask",
    "mutual_information_redundancy_bits",
    "near_duplicate_share",
    "service_accuracy",
    "service_coverage",
    "service_density_bps_per_km2",
    "split_inference_cost",
    "split_objective",
    "transmission_energy_j",
    "transmission_latency_s",
]
