"""The paper's evaluation examples (3.2.4, Tables 3-10 … 3-15), computed from their inputs by :mod:`twin.kpi`.

Only the inputs are ever read (link, compute, model and federated parameters and the per-split FLOPs and
bits); every derived number is computed. :data:`PAPER_DEFAULTS` holds those inputs so that the package
works without the reference files; :func:`load_paper_inputs` reads them from ``seed_tables.json``.
The paper's printed outputs are only used for comparison (:func:`load_paper_reference`,
:func:`compare_to_paper`).

Display units here follow the paper: ms, Mb (1e6 bits), GFLOPs (1e9 FLOPs), g CO2.
"""

from __future__ import annotations

import json
import math
from collections.abc import Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

from twin.kpi import (
    ComputeProfile,
    KpiInputError,
    LinkProfile,
    SplitPoint,
    SplitProfile,
    choose_split,
    co2_kg,
    compute_energy_j,
    compute_latency_s,
    federated_training_cost,
    service_accuracy,
    split_inference_cost,
)

__all__ = [
    "PAPER_DEFAULTS",
    "PAPER_ECR_KG_PER_KWH",
    "PRINTED_DECIMALS",
    "Comparison",
    "ComputeProfile",
    "FederatedSpec",
    "FederatedTrainingKpis",
    "LinkProfile",
    "ModelSpec",
    "PaperInputs",
    "PaperReference",
    "SplitInferenceRow",
    "SplitInferenceTable",
    "SplitProfile",
    "compare_to_paper",
    "federated_training_kpis",
    "load_paper_inputs",
    "load_paper_reference",
    "split_inference_table",
]

MS_PER_S = 1e3
BITS_PER_MB = 1e6
FLOPS_PER_GFLOP = 1e9
G_PER_KG = 1e3

PAPER_ECR_KG_PER_KWH = 0.702
"""Emission conversion rate implied by Table 3-15 (105 100.58 g for 538 977 336.3 J)."""


@dataclass(frozen=True, slots=True)
class ModelSpec:
    """A nominal model (Tables 3-12 and 3-14): size, work per sample, accuracy and raw input size."""

    name: str
    params: float
    forward_flops: float
    train_flops_per_sample: float
    accuracy: float
    raw_input_bits: float
    bits_per_param: int = 32

    def __post_init__(self) -> None:
        for name in ("params", "forward_flops", "train_flops_per_sample", "raw_input_bits", "bits_per_param"):
            if getattr(self, name) <= 0:
                raise KpiInputError(f"ModelSpec.{name} must be > 0, got {getattr(self, name)}")
        if not 0 <= self.accuracy <= 1:
            raise KpiInputError(f"ModelSpec.accuracy must be in [0, 1], got {self.accuracy}")

    @property
    def model_bits(self) -> float:
        """``D_m``: parameters times bits per parameter."""
        return self.params * self.bits_per_param


@dataclass(frozen=True, slots=True)
class FederatedSpec:
    """Federated training setup (Table 3-14)."""

    total_samples: float
    rounds: int
    active_users: int
    users: int
    local_epochs: float = 1.0

    def __post_init__(self) -> None:
        if self.total_samples <= 0 or self.rounds < 1 or self.local_epochs <= 0:
            raise KpiInputError(
                "FederatedSpec needs total_samples > 0, rounds >= 1, local_epochs > 0, got "
                f"{self.total_samples}, {self.rounds}, {self.local_epochs}"
            )
        if not 1 <= self.active_users <= self.users:
            raise KpiInputError(f"need 1 <= active_users <= users, got {self.active_users} of {self.users}")


@dataclass(frozen=True, slots=True)
class PaperInputs:
    """Every input of the paper's evaluation (3.2.4)."""

    carrier_hz: float
    bandwidth_hz: float
    link: LinkProfile
    network: ComputeProfile
    user: ComputeProfile
    model: ModelSpec
    split_profile: SplitProfile
    federated: FederatedSpec
    ecr_kg_per_kwh: float = PAPER_ECR_KG_PER_KWH


_TABLE_3_13_INPUTS: tuple[tuple[float, float, float], ...] = (
    (0.0, 4.8, 31.0),
    (3.9, 24.0, 27.1),
    (9.4, 12.0, 21.6),
    (18.7, 6.4, 12.3),
    (27.9, 4.0, 3.1),
    (30.7, 0.8, 0.3),
    (31.0, 0.0, 0.0),
)
"""Table 3-13 input columns: (ue_gflops, tx_data_mb, net_gflops) for split points 0..6."""


def _split_profile(rows: Sequence[Sequence[float]], raw_input_mb: float) -> SplitProfile:
    return SplitProfile(
        points=tuple(
            SplitPoint(ue * FLOPS_PER_GFLOP, tx * BITS_PER_MB, net * FLOPS_PER_GFLOP) for ue, tx, net in rows
        ),
        raw_input_bits=raw_input_mb * BITS_PER_MB,
        name="VGG-16 (Table 3-13)",
    )


PAPER_DEFAULTS = PaperInputs(
    carrier_hz=3.5e9,
    bandwidth_hz=100e6,
    link=LinkProfile(rate_bps=1.95e9, power_w=636.0),
    network=ComputeProfile(flops_per_s=19.5e12, power_w=400.0),
    user=ComputeProfile(flops_per_s=1.4e12, power_w=30.0),
    model=ModelSpec(
        name="VGG-16",
        params=138e6,
        forward_flops=31e9,
        train_flops_per_sample=93e9,
        accuracy=0.7159,
        raw_input_bits=4.8e6,
    ),
    split_profile=_split_profile(_TABLE_3_13_INPUTS, raw_input_mb=4.8),
    federated=FederatedSpec(total_samples=1.28e6, rounds=200, active_users=100, users=100),
)
"""The paper's inputs (Tables 3-10, 3-11, 3-12, 3-14 and the input columns of 3-13)."""


def load_paper_inputs(path: str | Path) -> PaperInputs:
    """Read the paper's inputs, and nothing else, from ``seed_tables.json``.

    Bits per parameter (32) and the ECR (0.702 kg/kWh) are not input columns of the file; they come from
    :data:`PAPER_DEFAULTS`.
    """
    tables: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    comm = tables["table_3_10_communication"]
    compute = tables["table_3_11_compute"]
    vgg = tables["table_3_12_vgg16"]
    fed = tables["table_3_14_federated_training_params"]
    split = tables["table_3_13_split_inference"]
    columns: list[str] = split["columns"]
    picks = [columns.index(name) for name in ("ue_gflops", "tx_data_mb", "net_gflops")]
    return PaperInputs(
        carrier_hz=comm["carrier_ghz"] * 1e9,
        bandwidth_hz=comm["bandwidth_mhz"] * 1e6,
        link=LinkProfile(rate_bps=comm["rate_gbps"] * 1e9, power_w=comm["power_w"]),
        network=ComputeProfile(
            flops_per_s=compute["network"]["flops_tflops"] * 1e12, power_w=compute["network"]["power_w"]
        ),
        user=ComputeProfile(
            flops_per_s=compute["user"]["flops_tflops"] * 1e12, power_w=compute["user"]["power_w"]
        ),
        model=ModelSpec(
            name="VGG-16",
            params=vgg["params_m"] * 1e6,
            forward_flops=vgg["forward_gflops"] * FLOPS_PER_GFLOP,
            train_flops_per_sample=fed["train_gflops_per_sample"] * FLOPS_PER_GFLOP,
            accuracy=vgg["accuracy_pct"] / 100,
            raw_input_bits=vgg["input_size_mb"] * BITS_PER_MB,
            bits_per_param=PAPER_DEFAULTS.model.bits_per_param,
        ),
        split_profile=_split_profile(
            [[row[i] for i in picks] for row in split["rows"]], vgg["input_size_mb"]
        ),
        federated=FederatedSpec(
            total_samples=fed["samples_m"] * 1e6,
            rounds=fed["rounds"],
            active_users=fed["active_users"],
            users=fed["users"],
        ),
        ecr_kg_per_kwh=PAPER_DEFAULTS.ecr_kg_per_kwh,
    )


@dataclass(frozen=True, slots=True)
class PaperReference:
    """The paper's printed outputs, for comparison only: Table 3-13 rows and Table 3-15 KPIs."""

    split_rows: tuple[dict[str, float], ...]
    federated: dict[str, float]


def load_paper_reference(path: str | Path) -> PaperReference:
    """Read the paper's printed Table 3-13 rows and Table 3-15 KPIs from ``seed_tables.json``."""
    tables: dict[str, Any] = json.loads(Path(path).read_text(encoding="utf-8"))
    split = tables["table_3_13_split_inference"]
    kpis = tables["table_3_15_federated_training_kpis"]
    return PaperReference(
        split_rows=tuple(dict(zip(split["columns"], map(float, row), strict=True)) for row in split["rows"]),
        federated={k: float(v) for k, v in kpis.items() if not k.startswith("note")},
    )


@dataclass(frozen=True, slots=True)
class SplitInferenceRow:
    """One row of Table 3-13 in the paper's display units, plus its CO2."""

    split_point: int
    ue_gflops: float
    ue_latency_ms: float
    ue_energy_j: float
    tx_data_mb: float
    tx_latency_ms: float
    tx_energy_j: float
    net_gflops: float
    net_latency_ms: float
    net_energy_j: float
    response_latency_ms: float
    system_efficiency_mb_per_j: float
    total_energy_j: float
    co2_g: float

    def as_dict(self) -> dict[str, float]:
        """Column name → value."""
        return asdict(self)


@dataclass(frozen=True, slots=True)
class SplitInferenceTable:
    """Table 3-13 computed from its inputs, with the best split points."""

    rows: tuple[SplitInferenceRow, ...]
    best_latency_split: int
    best_energy_split: int
    best_weighted_split: int
    latency_weight: float
    service_accuracy: float


def split_inference_table(
    profile: SplitProfile,
    link: LinkProfile,
    ue: ComputeProfile,
    net: ComputeProfile,
    model_accuracy: float,
    reliability: float = 1.0,
    ecr_kg_per_kwh: float = PAPER_ECR_KG_PER_KWH,
    *,
    latency_weight: float = 0.5,
) -> SplitInferenceTable:
    """Table 3-13: latency, energy and efficiency of every split point (3.2.4.1, formulas of 3.2.3.1).

    Args:
        profile: FLOPs and bits per split point, raw input size (Table 3-13 inputs or a profiled model).
        link: rate and power of the device-to-network link (Table 3-10).
        ue: device compute (Table 3-11, user).
        net: network compute (Table 3-11, network).
        model_accuracy: ``a_m`` in [0, 1] (Table 3-12: 0.7159).
        reliability: link reliability ``r_c`` in [0, 1]; service accuracy is ``a_m * r_c``.
        ecr_kg_per_kwh: emission conversion rate for the CO2 column.
        latency_weight: weight of latency in the weighted objective (see :func:`twin.kpi.split_objective`).

    """
    cost = split_inference_cost(profile, link=link, ue=ue, net=net)
    co2 = co2_kg(cost.total_energy_j, ecr_kg_per_kwh) * G_PER_KG
    columns = (
        profile.ue_flops / FLOPS_PER_GFLOP,
        cost.ue_latency_s * MS_PER_S,
        cost.ue_energy_j,
        profile.tx_bits / BITS_PER_MB,
        cost.tx_latency_s * MS_PER_S,
        cost.tx_energy_j,
        profile.net_flops / FLOPS_PER_GFLOP,
        cost.net_latency_s * MS_PER_S,
        cost.net_energy_j,
        cost.total_latency_s * MS_PER_S,
        cost.efficiency_bits_per_j / BITS_PER_MB,
        cost.total_energy_j,
        co2,
    )
    rows = tuple(
        SplitInferenceRow(k, *(float(column[k]) for column in columns)) for k in range(len(profile.points))
    )
    return SplitInferenceTable(
        rows=rows,
        best_latency_split=choose_split(cost, "latency"),
        best_energy_split=choose_split(cost, "energy"),
        best_weighted_split=choose_split(cost, "weighted", latency_weight=latency_weight),
        latency_weight=latency_weight,
        service_accuracy=float(service_accuracy(model_accuracy, reliability)),
    )


@dataclass(frozen=True, slots=True)
class FederatedTrainingKpis:
    """Table 3-15 computed from its inputs, plus what the paper's formulas give beyond the table."""

    per_sample_round_time_ms: float
    per_sample_round_energy_j: float
    training_efficiency_mb_per_j: float
    per_round_energy_j: float
    total_energy_j: float
    co2_g: float
    training_efficiency_with_comm_mb_per_j: float
    total_time_s: float

    def as_dict(self) -> dict[str, float]:
        """KPI name → value."""
        return asdict(self)


def federated_training_kpis(
    model: ModelSpec,
    federated: FederatedSpec,
    link: LinkProfile,
    ue: ComputeProfile,
    ecr_kg_per_kwh: float = PAPER_ECR_KG_PER_KWH,
    *,
    uplink_rate_bps: float | None = None,
    downlink_rate_bps: float | None = None,
) -> FederatedTrainingKpis:
    """Table 3-15: federated VGG-16 training KPIs (3.2.4.2, formulas of 3.2.3.2).

    As the table does: per-sample-round time and energy are ``O / F_UE`` and ``O / EE_UE``; the training
    efficiency is ``D0`` per joule of local training (2.41 Mb/J; with the model transfers included the
    paper's own formula gives ``training_efficiency_with_comm_mb_per_j``); the per-round energy is the
    compute of all samples of a round; the total adds ``K * D_m / EE_comm`` per round, over ``M_g`` rounds.

    Args:
        model: the trained model (Tables 3-12/3-14).
        federated: samples, rounds and users (Table 3-14); samples are spread evenly over the users.
        link: rate and power of the link (Table 3-10); ``EE_comm = R / P``.
        ue: device compute (Table 3-11, user).
        ecr_kg_per_kwh: emission conversion rate.
        uplink_rate_bps: ``R_u`` for the training time; ``link.rate_bps`` when ``None``.
        downlink_rate_bps: ``R_d`` for the training time; ``link.rate_bps`` when ``None``.

    """
    samples_per_user = federated.total_samples / federated.users
    cost = federated_training_cost(
        model_bits=model.model_bits,
        train_flops_per_sample=model.train_flops_per_sample,
        samples_per_user=samples_per_user,
        samples_per_round=samples_per_user * federated.active_users,
        local_epochs=federated.local_epochs,
        rounds=federated.rounds,
        users_per_round=federated.active_users,
        downlink_rate_bps=link.rate_bps if downlink_rate_bps is None else downlink_rate_bps,
        uplink_rate_bps=link.rate_bps if uplink_rate_bps is None else uplink_rate_bps,
        ue=ue,
        comm_efficiency_bits_per_j=link.efficiency_bits_per_j,
        raw_input_bits=model.raw_input_bits,
    )
    return FederatedTrainingKpis(
        per_sample_round_time_ms=float(compute_latency_s(model.train_flops_per_sample, ue.flops_per_s))
        * MS_PER_S,
        per_sample_round_energy_j=float(
            compute_energy_j(model.train_flops_per_sample, ue.efficiency_flops_per_j)
        ),
        training_efficiency_mb_per_j=cost.compute_efficiency_bits_per_j / BITS_PER_MB,
        per_round_energy_j=cost.comp_energy_per_round_j,
        total_energy_j=cost.energy_j,
        co2_g=float(co2_kg(cost.energy_j, ecr_kg_per_kwh)) * G_PER_KG,
        training_efficiency_with_comm_mb_per_j=cost.efficiency_bits_per_j / BITS_PER_MB,
        total_time_s=cost.latency_s,
    )


PRINTED_DECIMALS: dict[str, int] = {"per_sample_round_time_ms": 0}
"""Columns the paper prints with fewer than 2 decimals where it matters (Table 3-15: "66" ms for 66.43)."""


@dataclass(frozen=True, slots=True)
class Comparison:
    """One computed value next to the paper's."""

    row: int
    column: str
    ours: float
    paper: float
    diff: float
    within_tolerance: bool


def _tolerance(paper: float, decimals: int) -> float:
    return max(0.01, 0.005 * abs(paper), 0.5 * 10.0**-decimals)


def compare_to_paper(
    ours: Sequence[Mapping[str, float] | SplitInferenceRow | FederatedTrainingKpis],
    paper: Sequence[Mapping[str, float]],
    *,
    printed_decimals: Mapping[str, int] = PRINTED_DECIMALS,
) -> list[Comparison]:
    """Compare computed rows with the paper's, column by column, row by row (in order).

    Every column of a paper row except ``split_point`` is compared. The tolerance is the one stated in
    ``seed_tables.json``: 0.01 absolute in the printed unit or 0.5 % relative, whichever is larger; for a
    value the paper prints with fewer decimals (:data:`PRINTED_DECIMALS`) half a unit of its last digit is
    also accepted, since that is all the print tells.
    """
    if len(ours) != len(paper):
        raise KpiInputError(f"need as many computed rows as paper rows, got {len(ours)} and {len(paper)}")
    result: list[Comparison] = []
    for index, (mine, theirs) in enumerate(zip(ours, paper, strict=True)):
        values = mine if isinstance(mine, Mapping) else mine.as_dict()
        row = int(theirs.get("split_point", index))
        for column, expected in theirs.items():
            if column == "split_point":
                continue
            if column not in values:
                raise KpiInputError(f"computed row {row} has no column {column!r}; it has {sorted(values)}")
            got = float(values[column])
            diff = got - float(expected)
            ok = math.isfinite(diff) and abs(diff) <= _tolerance(expected, printed_decimals.get(column, 2))
            result.append(Comparison(row, column, got, float(expected), diff, ok))
    return result
