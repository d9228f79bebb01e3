"""``seed-split-inference`` (paper §3.2.4.1, Tables 3-10 … 3-13): VGG-16 split between device and network.

Latency, energy, efficiency and CO2 of every split point, and the best one.

Every input can be changed with ``--set`` (link rate and power, compute profiles, the split profile,
accuracy, ECR); with ``--set model.source=vgg16`` the split profile is measured from a real torch
VGG-16 (FLOPs with ``FlopCounterMode``, activation sizes) instead of the table's input columns.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Literal

import torch

from twin.config import check_positive, check_range
from twin.kpi import ComputeProfile, LinkProfile, SplitPoint, SplitProfile
from twin.paper_eval import PAPER_DEFAULTS, compare_to_paper, split_inference_table
from twin.qoais import Indicator, ServiceReport, graded_indicators
from twin.settings import CarbonConfig, InferenceTargets
from usecases.paper_reference import paper_reference
from usecases.registry import CalculationResult, CalculationScenario, ComparedValue, register

_PROFILE = PAPER_DEFAULTS.split_profile
COLUMNS = (
    "split_point",
    "ue_gflops",
    "ue_latency_ms",
    "ue_energy_j",
    "tx_data_mb",
    "tx_latency_ms",
    "tx_energy_j",
    "net_gflops",
    "net_latency_ms",
    "net_energy_j",
    "response_latency_ms",
    "system_efficiency_mb_per_j",
    "total_energy_j",
    "co2_g",
)


@dataclass(frozen=True, slots=True)
class SplitLinkConfig:
    """The device-to-network link (Table 3-10): rate, power, reliability."""

    rate_bps: float = PAPER_DEFAULTS.link.rate_bps
    """Rate of the device-to-network link."""
    power_w: float = PAPER_DEFAULTS.link.power_w
    """Transmit power of the link."""
    reliability: float = 1.0
    """Probability that a transmission gets through, in [0, 1]."""

    def __post_init__(self) -> None:
        check_positive("link", rate_bps=self.rate_bps, power_w=self.power_w)
        check_range("link", "reliability", self.reliability, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class SplitModelConfig:
    """The split model: the table's input columns, or a profiled torch VGG-16."""

    source: Literal["table", "vgg16"] = "table"
    """Where the split points come from: the paper's table or a profiled torch VGG-16."""
    ue_gflops: tuple[float, ...] = tuple(p.ue_flops / 1e9 for p in _PROFILE.points)
    """[GFLOP] Device-side work at each split point."""
    tx_data_mb: tuple[float, ...] = tuple(p.tx_bits / 1e6 for p in _PROFILE.points)
    """Data sent to the network at each split point."""
    net_gflops: tuple[float, ...] = tuple(p.net_flops / 1e9 for p in _PROFILE.points)
    """[GFLOP] Network-side work at each split point."""
    raw_input_mb: float = _PROFILE.raw_input_bits / 1e6
    """Size of one raw input (an image)."""
    accuracy: float = PAPER_DEFAULTS.model.accuracy
    """Accuracy of the model, in [0, 1]."""
    bits_per_value: int = 32
    """[bit] Bits of one activation value sent over the link."""

    def __post_init__(self) -> None:
        n = len(self.ue_gflops)
        if n < 2 or len(self.tx_data_mb) != n or len(self.net_gflops) != n:
            raise ValueError(
                "model.ue_gflops, model.tx_data_mb and model.net_gflops need the same length (≥ 2), got "
                f"{len(self.ue_gflops)}, {len(self.tx_data_mb)}, {len(self.net_gflops)}"
            )
        if min(*self.ue_gflops, *self.tx_data_mb, *self.net_gflops) < 0:
            raise ValueError("model.ue_gflops, model.tx_data_mb and model.net_gflops must be >= 0")
        check_positive("model", raw_input_mb=self.raw_input_mb, bits_per_value=self.bits_per_value)
        check_range("model", "accuracy", self.accuracy, 0.0, 1.0)


def _user() -> ComputeProfile:
    return PAPER_DEFAULTS.user


def _network() -> ComputeProfile:
    return PAPER_DEFAULTS.network


@dataclass(frozen=True, slots=True)
class SplitInferenceConfig:
    """Every input of the split-inference evaluation."""

    link: SplitLinkConfig = field(default_factory=SplitLinkConfig)
    ue: ComputeProfile = field(default_factory=_user)
    net: ComputeProfile = field(default_factory=_network)
    model: SplitModelConfig = field(default_factory=SplitModelConfig)
    carbon: CarbonConfig = field(default_factory=CarbonConfig)
    objective: Literal["latency", "energy", "weighted"] = "latency"
    """What the best split point minimises: latency, energy or a weighted mix."""
    latency_weight: float = 0.5
    """Weight of latency against energy with ``objective = weighted``, in [0, 1]."""
    qoais: InferenceTargets = field(default_factory=InferenceTargets)

    def __post_init__(self) -> None:
        check_range("config", "latency_weight", self.latency_weight, 0.0, 1.0)


def split_profile(config: SplitModelConfig) -> SplitProfile:
    """The split profile the evaluation uses (table columns or measured from torch VGG-16)."""
    if config.source == "vgg16":
        from twin.split_profile import profile_split_points, vgg16

        model = vgg16(device="meta")
        example = torch.empty(1, 3, 224, 224, device="meta")
        return profile_split_points(
            model, example, bits_per_value=config.bits_per_value, name="VGG-16 (torch)"
        )
    points = tuple(
        SplitPoint(ue * 1e9, tx * 1e6, net * 1e9)
        for ue, tx, net in zip(config.ue_gflops, config.tx_data_mb, config.net_gflops, strict=True)
    )
    return SplitProfile(points=points, raw_input_bits=config.raw_input_mb * 1e6, name="VGG-16 (Table 3-13)")


def compute(config: SplitInferenceConfig) -> CalculationResult:
    """Table 3-13 from the inputs, compared with the paper, plus best splits and the service's QoAIS."""
    profile = split_profile(config.model)
    link = LinkProfile(rate_bps=config.link.rate_bps, power_w=config.link.power_w)
    table = split_inference_table(
        profile,
        link,
        config.ue,
        config.net,
        config.model.accuracy,
        config.link.reliability,
        config.carbon.ecr_kg_per_kwh,
        latency_weight=config.latency_weight,
    )
    rows = tuple(r.as_dict() for r in table.rows)
    reference = paper_reference().split_rows
    comparison: tuple[ComparedValue, ...] = ()
    if len(rows) == len(reference):
        comparison = tuple(
            ComparedValue(str(c.row), c.column, c.ours, c.paper, c.diff, c.within_tolerance)
            for c in compare_to_paper(table.rows, reference)
        )
    chosen = {
        "latency": table.best_latency_split,
        "energy": table.best_energy_split,
        "weighted": table.best_weighted_split,
    }[config.objective]
    highlights = {
        "best_split_latency": table.best_latency_split,
        "best_split_energy": table.best_energy_split,
        "best_split_weighted": table.best_weighted_split,
        "operating_split": chosen,
        "objective": config.objective,
        "service_accuracy": table.service_accuracy,
        "profile": profile.name,
    }
    report = _qoais(config, rows[chosen], chosen, len(rows) - 1, table.service_accuracy)
    return CalculationResult(
        title=f"Split inference of {profile.name} at {config.link.rate_bps / 1e9:.3g} Gb/s",
        columns=COLUMNS,
        rows=rows,
        comparison=comparison,
        highlights=highlights,
        qoais=(report,),
        inputs_match_paper=config == SplitInferenceConfig(),
    )


def _qoais(
    config: SplitInferenceConfig, row: dict[str, float], split: int, last: int, accuracy: float
) -> ServiceReport:
    targets = config.qoais
    indicators = (
        Indicator(
            "performance",
            "service_accuracy",
            accuracy,
            targets.accuracy,
            "",
            "min",
            "model accuracy × link reliability",
        ),
        Indicator(
            "performance",
            "response_latency",
            row["response_latency_ms"] / 1e3,
            targets.latency_s,
            " s",
            "max",
            f"split point {split} ({config.objective}-optimal)",
        ),
        Indicator(
            "overhead",
            "energy_per_request",
            row["total_energy_j"],
            targets.energy_per_request_j,
            " J",
            "max",
            f"device {row['ue_energy_j']:.2f} J, link {row['tx_energy_j']:.2f} J, "
            f"network {row['net_energy_j']:.2f} J",
        ),
        *graded_indicators(
            targets,
            tls=False,
            authenticated=False,
            raw_data_leaves_device=split == 0,
            features_leave_device=0 < split < last,
            privacy_detail="raw input sent"
            if split == 0
            else "features sent"
            if split < last
            else "nothing leaves",
            security_detail="link security is not part of the paper's example",
        ),
    )
    return ServiceReport("split-inference", "inference", indicators)


register(
    CalculationScenario(
        name="seed-split-inference",
        summary="Paper Table 3-13: split inference of VGG-16, latency/energy of every split point",
        paper_section="3.2.4.1",
        default_config=SplitInferenceConfig,
        compute=compute,
    )
)
