"""QoAIS: targets vs achieved for every service, per dimension, with pass/fail and the limiting factor.

Five dimensions (paper §3.1, Table 3-1): **performance** and **overhead** are measured numbers;
**security**, **privacy** (levels 1 = weakest … 5 = strongest) and **autonomy** (full / partial /
human) are graded. Pure functions: the numbers come in, a report comes out (no I/O).
"""

from __future__ import annotations

import math
from collections.abc import Iterable, Sequence
from dataclasses import asdict, dataclass, field
from typing import Any, Literal

Dimension = Literal["performance", "overhead", "security", "privacy", "autonomy"]
Comparator = Literal["min", "max", "level", "mode"]
AUTONOMY_MODES = ("full", "partial", "human")
_OPS = {"min": "≥", "max": "≤", "level": "≥", "mode": "∈"}


@dataclass(frozen=True, slots=True)
class Indicator:
    """One QoAIS indicator of a service.

    ``min``: achieved ≥ target; ``max``: achieved ≤ target; ``level``: graded achieved ≥ target;
    ``mode``: the target mode is among those the service offers (``achieved`` lists them, comma-separated).
    """

    dimension: Dimension
    name: str
    achieved: float | str
    target: float | str
    unit: str
    comparator: Comparator
    detail: str = ""

    @property
    def passed(self) -> bool:
        """Whether the target is met."""
        if self.comparator == "mode":
            return str(self.target) in str(self.achieved).split(", ")
        achieved, target = float(self.achieved), float(self.target)
        if math.isnan(achieved):
            return False
        return achieved <= target if self.comparator == "max" else achieved >= target

    @property
    def margin(self) -> float:
        """Relative headroom: > 0 met with room to spare, < 0 missed (mode: ±1)."""
        if self.comparator == "mode":
            return 1.0 if self.passed else -1.0
        achieved, target = float(self.achieved), float(self.target)
        if math.isnan(achieved):
            return -math.inf
        scale = abs(target) if target else 1.0
        return (target - achieved) / scale if self.comparator == "max" else (achieved - target) / scale

    def describe(self) -> str:
        """``dimension.name: achieved vs target``, plus the detail."""
        op = _OPS[self.comparator]
        achieved, target = _fmt(self.achieved) + self.unit, _fmt(self.target) + self.unit
        text = f"{self.dimension}.{self.name}: {achieved} (target {op} {target})"
        return f"{text} — {self.detail}" if self.detail else text


@dataclass(frozen=True, slots=True)
class ServiceReport:
    """QoAIS of one service."""

    service: str
    kind: str
    indicators: tuple[Indicator, ...]
    notes: tuple[str, ...] = field(default_factory=tuple)
    incomplete: str | None = None  # why the run did not finish (aborted, stopped): never a PASS then

    @property
    def passed(self) -> bool:
        """Whether the run finished and every indicator was assessed and met (none assessed: not passed)."""
        return self.incomplete is None and bool(self.indicators) and all(i.passed for i in self.indicators)

    @property
    def verdict(self) -> str:
        """``PASS``, ``FAIL``, ``not assessed`` (no indicator) or ``incomplete (…)`` (run not finished)."""
        if self.incomplete is not None:
            return f"incomplete ({self.incomplete})"
        if not self.indicators:
            return "not assessed"
        return "PASS" if self.passed else "FAIL"

    @property
    def limiting_factor(self) -> str:
        """The missed indicator with the worst margin, or the tightest one when all pass."""
        if not self.indicators:
            return "no indicators"
        worst = min(self.indicators, key=lambda i: i.margin)
        return worst.describe() if not worst.passed else f"none missed; tightest: {worst.describe()}"

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready form."""
        return {
            "service": self.service,
            "kind": self.kind,
            "passed": self.passed,
            "verdict": self.verdict,
            "limiting_factor": self.limiting_factor,
            "notes": list(self.notes),
            "indicators": [
                {**asdict(i), "passed": i.passed, "margin": _finite(i.margin)} for i in self.indicators
            ],
        }


def security_level(*, tls: bool, authenticated: bool, integrity_checked: bool = True) -> int:
    """Graded transmission security of the deployment (1 … 5).

    1 base; +1 payload integrity (SHA-256 of chunked models, schema validation, never unpickling);
    +1 authentication (every result-bearing message tagged by its sender: per-agent HMAC, the network's
    Ed25519 signature); +1 TLS. Level 5 (mutual TLS with per-device certificates) is not emulated.
    """
    return 1 + int(integrity_checked) + int(authenticated) + int(tls)


def privacy_level(raw_data_leaves_device: bool, features_leave_device: bool) -> int:
    """Graded data privacy (1 … 5): 1 raw data centralised, 3 intermediate features leave, 4 only models.

    Level 5 (secure aggregation or differential privacy) is not emulated.
    """
    if raw_data_leaves_device:
        return 1
    return 3 if features_leave_device else 4


def autonomy_indicator(offered: Iterable[str], target: str) -> Indicator:
    """Autonomy: the target mode must be one the service offers."""
    modes = [m for m in AUTONOMY_MODES if m in set(offered)]
    return Indicator("autonomy", "control_mode", ", ".join(modes), target, "", "mode")


def graded_indicators(
    targets: Any,
    *,
    tls: bool,
    authenticated: bool,
    raw_data_leaves_device: bool,
    features_leave_device: bool,
    privacy_detail: str,
    security_detail: str | None = None,
) -> tuple[Indicator, Indicator, Indicator]:
    """The graded dimensions every service reports: security, privacy, autonomy (vs ``targets``' levels)."""
    default = "TLS" if tls else "authenticated messages, no TLS (use mqtts:// to raise it)"
    return (
        Indicator(
            "security",
            "transmission_security_level",
            security_level(tls=tls, authenticated=authenticated),
            targets.security_level,
            "",
            "level",
            security_detail or default,
        ),
        Indicator(
            "privacy",
            "data_privacy_level",
            privacy_level(raw_data_leaves_device, features_leave_device),
            targets.privacy_level,
            "",
            "level",
            privacy_detail,
        ),
        autonomy_indicator(("full", "partial"), targets.autonomy),
    )


def to_markdown(reports: Sequence[ServiceReport], title: str = "QoAIS report") -> str:
    """A Markdown document with one table per service."""
    lines = [f"# {title}", ""]
    for report in reports:
        verdict = "PASS" if report.passed else "FAIL"
        lines += [
            f"## {report.service} ({report.kind}) — {verdict}",
            "",
            f"Limiting factor: {report.limiting_factor}",
            "",
            "| dimension | indicator | achieved | target | met |",
            "|---|---|---|---|---|",
        ]
        for i in report.indicators:
            met = "yes" if i.passed else "no"
            achieved, target = _fmt(i.achieved) + i.unit, _fmt(i.target) + i.unit
            lines.append(f"| {i.dimension} | {i.name} | {achieved} | {_OPS[i.comparator]} {target} | {met} |")
        lines += [f"- {n}" for n in report.notes]
        lines.append("")
    return "\n".join(lines)


def _fmt(value: float | str) -> str:
    if isinstance(value, str):
        return value
    if value != value:  # NaN
        return "n/a"
    if value == int(value) and abs(value) < 1e6:
        return str(int(value))
    return f"{value:.4g}"


def _finite(value: float) -> float | None:
    return value if math.isfinite(value) else None
