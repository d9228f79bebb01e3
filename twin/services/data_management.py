"""Data management service (paper §2.4.9): desensitise, check and grade what a device collects.

Generic over records (``dict`` per record) with a declared :class:`RecordSchema`: which fields are
**identifiers** (removed before anything leaves the device), which are **quasi-identifiers**
(generalised: numbers to bands, codes to prefixes, or dropped) and which are **features** (encoded as
standardised values; a missing one is imputed at the reference mean and makes the record lossy).

Device side: a :class:`DataCollector` turns each collected record into what may leave the device — the
released (desensitised) fields and the feature vector — and flags it lossless or a near-duplicate of a
recent record of the same source. Network side: a :class:`DataServiceLedger` sums what was released
into the service's KPIs (SPEC §6-7, paper §3.2.3.3): completeness ``N_lossless / N_total``, redundancy
as the share of near-duplicates (cosine ≥ ε, SPEC's deliberate deviation), the k-anonymity of the
released quasi-identifiers and the **data privacy level** that results. :func:`data_service_report`
is its QoAIS report. Pure: no bus, no I/O.
"""

from __future__ import annotations

import math
from collections import Counter
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np

from twin.config import check_positive, check_range
from twin.kpi.data import data_completeness
from twin.qoais import Indicator, ServiceReport, autonomy_indicator, security_level

GeneraliseKind = Literal["keep", "band", "prefix", "drop"]


@dataclass(frozen=True, slots=True)
class Generalisation:
    """How a quasi-identifier is released: as is, as a band of ``width``, as its first ``chars``, or not."""

    kind: GeneraliseKind
    width: float = 10.0
    chars: int = 2

    def __post_init__(self) -> None:
        check_positive("generalisation", width=self.width, chars=self.chars)

    def apply(self, value: Any) -> Any:
        """The released form of ``value`` (``None`` stays ``None``)."""
        if value is None or self.kind == "keep":
            return value
        if self.kind == "band":
            low = math.floor(float(value) / self.width) * self.width
            return f"{low:g}-{low + self.width:g}"
        if self.kind == "prefix":
            return str(value)[: self.chars]
        return None


@dataclass(frozen=True, slots=True)
class RecordSchema:
    """The fields of a record and what each is for privacy."""

    identifiers: tuple[str, ...]
    """Fields that name a person or a thing directly: never released."""
    quasi_identifiers: tuple[tuple[str, Generalisation], ...]
    """Fields that identify in combination: released generalised."""
    features: tuple[str, ...]
    """Numeric fields the models use."""
    feature_mean: tuple[float, ...]
    """Reference mean of each feature (standardisation; imputation of a missing value)."""
    feature_std: tuple[float, ...]
    """Reference standard deviation of each feature."""

    def __post_init__(self) -> None:
        if not len(self.features) == len(self.feature_mean) == len(self.feature_std):
            raise ValueError("features, feature_mean and feature_std must have the same length")
        if any(s <= 0 for s in self.feature_std):
            raise ValueError(f"feature_std must be > 0, got {self.feature_std}")
        quasi = {name for name, _ in self.quasi_identifiers}
        overlap = (set(self.identifiers) & quasi) | ((set(self.identifiers) | quasi) & set(self.features))
        if overlap:
            raise ValueError(f"fields declared twice: {sorted(overlap)}")

    @property
    def quasi_names(self) -> tuple[str, ...]:
        """Names of the quasi-identifiers, in declaration order."""
        return tuple(name for name, _ in self.quasi_identifiers)


@dataclass(frozen=True, slots=True)
class DataServiceConfig:
    """How the data service treats what is collected."""

    duplicate_cosine: float = 0.995
    """Cosine similarity (standardised features) at or above which a record is a near-duplicate."""
    memory: int = 8
    """Recent records of a source a new one is compared with."""
    deduplicate: bool = True
    """Whether near-duplicates are kept out of the training data (they are still served)."""
    k_anonymity_min: int = 5
    """Smallest group of released records sharing their quasi-identifiers for level 3 privacy."""

    def __post_init__(self) -> None:
        check_range("data", "duplicate_cosine", self.duplicate_cosine, -1.0, 1.0)
        check_positive("data", memory=self.memory, k_anonymity_min=self.k_anonymity_min)


@dataclass(frozen=True, slots=True)
class DataServiceTargets:
    """QoAIS targets of a data service (SPEC §5 data QoS: completeness, redundancy; privacy level)."""

    completeness: float = 0.9
    """Share of collected records that are lossless, at least."""
    redundancy: float = 0.1
    """Share of collected records that are near-duplicates, at most."""
    privacy_level: int = 3
    """Data privacy level of what is released, 1 … 5."""
    security_level: int = 3
    """Transmission security level, 1 … 5."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Autonomy the service must offer."""

    def __post_init__(self) -> None:
        check_range("data_qoais", "completeness", self.completeness, 0.0, 1.0)
        check_range("data_qoais", "redundancy", self.redundancy, 0.0, 1.0)
        check_range("data_qoais", "privacy_level", self.privacy_level, 1, 5)
        check_range("data_qoais", "security_level", self.security_level, 1, 5)


def desensitise(record: Mapping[str, Any], schema: RecordSchema) -> dict[str, Any]:
    """The quasi-identifiers of ``record`` as released: identifiers and features are not in it."""
    return {
        name: rule.apply(record.get(name)) for name, rule in schema.quasi_identifiers if rule.kind != "drop"
    }


def encode_features(record: Mapping[str, Any], schema: RecordSchema) -> tuple[np.ndarray, bool]:
    """Standardised features (float32; a missing or non-finite one imputed at 0 = the reference mean).

    Returns:
        The vector and whether the record was lossless (every feature present and finite).
    """
    raw = np.array([np.nan if record.get(name) is None else float(record[name]) for name in schema.features])
    lossless = bool(np.all(np.isfinite(raw)))
    z = (raw - np.asarray(schema.feature_mean)) / np.asarray(schema.feature_std)
    return np.where(np.isfinite(z), z, 0.0).astype(np.float32), lossless


@dataclass(frozen=True, slots=True)
class CollectedRecord:
    """A record as it may leave the device: released fields and features, with its quality flags."""

    released: dict[str, Any]
    features: np.ndarray
    lossless: bool
    near_duplicate: bool


@dataclass(slots=True)
class DataCollector:
    """Device side: desensitises each collected record and flags its quality (per source memory)."""

    schema: RecordSchema
    config: DataServiceConfig
    _recent: dict[str, list[np.ndarray]] = field(default_factory=dict)

    def collect(self, source: str, record: Mapping[str, Any]) -> CollectedRecord:
        """Desensitise one record of ``source`` and compare it with that source's recent records."""
        x, lossless = encode_features(record, self.schema)
        recent = self._recent.setdefault(source, [])
        duplicate = bool(recent) and _max_cosine(x, np.stack(recent)) >= self.config.duplicate_cosine
        recent.append(x)
        del recent[: -self.config.memory]
        return CollectedRecord(desensitise(record, self.schema), x, lossless, duplicate)


def _max_cosine(x: np.ndarray, others: np.ndarray) -> float:
    norms = np.linalg.norm(others, axis=1) * float(np.linalg.norm(x))
    with np.errstate(divide="ignore", invalid="ignore"):
        cosine = np.where(norms > 0, others @ x / np.where(norms > 0, norms, 1.0), -1.0)
    return float(cosine.max())


def data_privacy_level(*, identifiers_released: bool, k_anonymity: int, k_min: int) -> int:
    """Graded data privacy of released records (1 … 5), on the scale of :func:`twin.qoais.privacy_level`.

    1: an identifier left the device; 2: identifiers removed but the released quasi-identifiers single
    out groups smaller than ``k_min``; 3: identifiers removed and the released records ``k_min``-anonymous
    (intermediate, desensitised data leaves). Level 4 (only models leave) and 5 (differential privacy)
    are not reached by a service that releases records.
    """
    if identifiers_released:
        return 1
    return 3 if k_anonymity >= k_min else 2


@dataclass(slots=True)
class DataServiceLedger:
    """Network side: what the data service released, summed into its KPIs and privacy level."""

    schema: RecordSchema
    config: DataServiceConfig
    collected: int = 0
    lossless: int = 0
    near_duplicates: int = 0
    released_bits: float = 0.0
    identifier_fields_seen: set[str] = field(default_factory=set)
    groups: Counter[tuple[Any, ...]] = field(default_factory=Counter)

    def add(
        self, released: Iterable[Mapping[str, Any]], lossless: Sequence[bool], near: Sequence[bool]
    ) -> None:
        """Count one batch of released records (and any identifier field that arrived with them)."""
        identifiers = set(self.schema.identifiers)
        for record in released:
            self.identifier_fields_seen |= identifiers & set(record)
            self.groups[tuple(str(record.get(n)) for n in self.schema.quasi_names)] += 1
        self.collected += len(lossless)
        self.lossless += sum(bool(v) for v in lossless)
        self.near_duplicates += sum(bool(v) for v in near)

    @property
    def k_anonymity(self) -> int:
        """Size of the smallest group of released records sharing their quasi-identifiers (0: none)."""
        return min(self.groups.values(), default=0)

    @property
    def privacy_level(self) -> int:
        """Data privacy level of everything released so far."""
        return data_privacy_level(
            identifiers_released=bool(self.identifier_fields_seen),
            k_anonymity=self.k_anonymity,
            k_min=self.config.k_anonymity_min,
        )

    def summary(self) -> dict[str, float]:
        """KPIs of the data service so far (empty before anything was collected)."""
        if not self.collected:
            return {}
        return {
            "collected": float(self.collected),
            "completeness": data_completeness(self.lossless, self.collected),
            "redundancy_share": self.near_duplicates / self.collected,
            "k_anonymity": float(self.k_anonymity),
            "quasi_identifier_groups": float(len(self.groups)),
            "identifier_fields_released": float(len(self.identifier_fields_seen)),
            "privacy_level": float(self.privacy_level),
            "k_min": float(self.config.k_anonymity_min),
            "released_bits": self.released_bits,
        }


def data_service_report(
    service: str, summary: Mapping[str, float], targets: DataServiceTargets, *, tls: bool, authenticated: bool
) -> ServiceReport:
    """QoAIS of a data service: data QoS (completeness, redundancy) and its privacy level (Table 3-1/3-2)."""
    if not summary:
        return ServiceReport(service, "data management", (), ("no record collected: nothing to assess",))
    indicators = (
        Indicator(
            "performance",
            "completeness",
            summary["completeness"],
            targets.completeness,
            "",
            "min",
            "lossless records ÷ collected records (3.2.3.3); missing values imputed at the reference mean",
        ),
        Indicator(
            "performance",
            "redundancy_near_duplicates",
            summary["redundancy_share"],
            targets.redundancy,
            "",
            "max",
            "share of records with a near-duplicate among their source's recent ones (cosine ≥ ε)",
        ),
        Indicator(
            "security",
            "transmission_security_level",
            security_level(tls=tls, authenticated=authenticated),
            targets.security_level,
            "",
            "level",
            "TLS" if tls else "authenticated messages, no TLS (use mqtts:// to raise it)",
        ),
        Indicator(
            "privacy",
            "data_privacy_level",
            summary["privacy_level"],
            targets.privacy_level,
            "",
            "level",
            f"identifiers removed on the device; released quasi-identifiers "
            f"{int(summary['k_anonymity'])}-anonymous (level 3 needs k ≥ {int(summary['k_min'])})"
            if not summary["identifier_fields_released"]
            else "identifier fields reached the network",
        ),
        autonomy_indicator(("full", "partial"), targets.autonomy),
    )
    notes = (
        f"records collected: {int(summary['collected'])}; quasi-identifier groups released: "
        f"{int(summary['quasi_identifier_groups'])}",
        f"released: {summary['released_bits'] / summary['collected']:.0f} bit per record on the wire "
        "(desensitised fields + features, JSON)",
    )
    return ServiceReport(service, "data management", indicators, notes)
