"""Synthetic food-cycle city (paper §2.3.3): shops' demand, every organisation's daily food ledger.

**Demand.** Each shop sells one perishable category (one day of shelf life). Its daily demand is
Poisson around a mean that depends on the shop's neighbourhood (residential, office, student,
suburban: each has its own weekday profile), its size, the day's temperature and whether the shop runs
a promotion that day (planned a week ahead, so known when stock is allocated). The **demand model**
learns the demand level (one of :data:`CLASSES`, bins of :data:`DEMAND_EDGES` units) of a shop-day
from: weekday (cyclic), temperature, promotion, neighbourhood, shop size and last week's sales on the
same weekday. Non-IID: a shop only sees its own neighbourhood's pattern.

**Food ledgers.** Every organisation — shops, warehouses, delivery vans, households, waste trucks —
keeps one record per day with identifiers (names, persons, addresses, loyalty cards, plates),
quasi-identifiers (postcode, organisation kind, household size) and the day's food flow: units in,
units out, units wasted (:data:`SCHEMA`). Some sources are **lossy** (a share of the sources drops
fields often) and some records are **re-sent** (near-duplicates), as configured. Each organisation
standardises its flows against a reference of its own size (:func:`ledger_schema`).
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt

from twin.services.data_management import Generalisation, RecordSchema

NEIGHBOURHOODS = ("residential", "office", "student", "suburban")
DEMAND_EDGES = (15.0, 30.0, 45.0, 60.0, 80.0)
"""Upper edges of the demand levels (units per day); the last level is open."""
CLASSES = ("very-low", "low", "medium", "high", "very-high", "peak")
LEVEL_UNITS = np.array([8.0, 22.5, 37.5, 52.5, 70.0, 95.0])
"""Representative units of each demand level (used to turn level probabilities into a forecast)."""
FEATURES = 2 + 1 + 1 + len(NEIGHBOURHOODS) + 1 + 1
RAW_SAMPLE_BITS = 32 * FEATURES
_WEEKDAY = {  # demand multiplier by weekday (Monday = 0)
    "residential": (0.9, 0.9, 0.95, 1.0, 1.2, 1.4, 1.1),
    "office": (1.2, 1.25, 1.25, 1.2, 1.1, 0.35, 0.25),
    "student": (1.0, 1.0, 1.05, 1.2, 1.3, 0.9, 0.7),
    "suburban": (0.8, 0.8, 0.85, 0.9, 1.1, 1.6, 1.4),
}
PROMOTION_LIFT = 1.6
_TEMP_MEAN_C, _TEMP_STD_C = 15.0, 7.0

_SHOP_UNITS_MEAN = (40.0, 38.0, 4.0)
_SHOP_UNITS_STD = (40.0, 38.0, 6.0)


def ledger_schema(units_scale: float = 1.0) -> RecordSchema:
    """The food-ledger schema, its flows standardised against an organisation ``units_scale`` × a shop.

    A warehouse or a van moves several shops' units a day. Standardised against a shop's reference,
    its hundreds of units dominate the feature vector, so two different days of it are nearly
    collinear and the redundancy measure (cosine ≥ ε) would count them as near-duplicates.
    """
    if not units_scale > 0:
        raise ValueError(f"units_scale must be > 0, got {units_scale}")
    return RecordSchema(
        identifiers=("org_name", "person", "address", "loyalty_card", "plate"),
        quasi_identifiers=(
            ("postcode", Generalisation("prefix", chars=2)),
            ("org_kind", Generalisation("keep")),
            ("household_size", Generalisation("band", width=3.0)),
        ),
        features=("day_of_week", "temperature_c", "promotion", "units_in", "units_out", "units_wasted"),
        feature_mean=(3.0, _TEMP_MEAN_C, 0.1, *(units_scale * m for m in _SHOP_UNITS_MEAN)),
        feature_std=(2.0, _TEMP_STD_C, 0.3, *(units_scale * s for s in _SHOP_UNITS_STD)),
    )


SCHEMA = ledger_schema()
"""One food-ledger record of a shop-sized organisation (the data service's schema; the network reads
the shops' sales with its reference)."""
UNITS_OUT = SCHEMA.features.index("units_out")


@dataclass(frozen=True, slots=True)
class Shop:
    """A shop's character: where it is, what its customers buy."""

    agent_id: str
    neighbourhood: int
    base_units: float
    temp_sensitivity: float
    promo_rate: float


@dataclass(frozen=True, slots=True)
class City:
    """The shops, the weather and the promotions of every day, and every shop's realised demand."""

    shops: tuple[Shop, ...]
    temperature_c: npt.NDArray[np.float64]
    """(days,) daily temperature."""
    promotion: npt.NDArray[np.float64]
    """(shops, days) 1 where the shop runs a promotion that day."""
    demand: npt.NDArray[np.int64]
    """(shops, days) units customers wanted."""

    @property
    def days(self) -> int:
        """Days simulated."""
        return int(self.temperature_c.shape[0])


def make_shops(rng: np.random.Generator, ids: list[str]) -> tuple[Shop, ...]:
    """Shops of mixed neighbourhoods and sizes."""
    return tuple(
        Shop(
            agent_id=agent_id,
            neighbourhood=int(rng.integers(len(NEIGHBOURHOODS))),
            base_units=float(rng.uniform(20.0, 55.0)),
            temp_sensitivity=float(rng.uniform(-0.02, 0.03)),
            promo_rate=float(rng.uniform(0.05, 0.25)),
        )
        for agent_id in ids
    )


def demand_mean(shop: Shop, day: npt.NDArray[np.int64], temp_c: np.ndarray, promo: np.ndarray) -> np.ndarray:
    """Expected units a shop sells on ``day`` (ground truth the model has to learn)."""
    weekday = np.asarray(_WEEKDAY[NEIGHBOURHOODS[shop.neighbourhood]])[day % 7]
    weather = np.clip(1.0 + shop.temp_sensitivity * (temp_c - _TEMP_MEAN_C), 0.5, 1.6)
    return shop.base_units * weekday * weather * np.where(promo > 0, PROMOTION_LIFT, 1.0)


def make_city(rng: np.random.Generator, shops: tuple[Shop, ...], days: int) -> City:
    """Weather, promotions and realised demand of every shop over ``days`` days."""
    t = np.arange(days)
    temperature = _TEMP_MEAN_C + 6.0 * np.sin(2 * np.pi * t / 91.0) + rng.normal(0.0, 3.0, days)
    promotion = np.stack([(rng.random(days) < s.promo_rate).astype(float) for s in shops])
    demand = np.stack(
        [rng.poisson(demand_mean(s, t, temperature, promotion[i])) for i, s in enumerate(shops)]
    ).astype(np.int64)
    return City(shops, temperature, promotion, demand)


def demand_level(units: np.ndarray) -> npt.NDArray[np.int64]:
    """The demand level (class index) of a number of units."""
    return np.digitize(units, DEMAND_EDGES).astype(np.int64)


def features(
    shop: Shop,
    days: np.ndarray,
    temperature_c: np.ndarray,
    promotion: np.ndarray,
    last_week_units: np.ndarray,
) -> npt.NDArray[np.float32]:
    """The demand model's input rows of one shop for ``days`` (all arrays aligned with ``days``)."""
    one_hot = np.zeros((len(days), len(NEIGHBOURHOODS)))
    one_hot[:, shop.neighbourhood] = 1.0
    return np.column_stack(
        [
            np.sin(2 * np.pi * (days % 7) / 7),
            np.cos(2 * np.pi * (days % 7) / 7),
            (temperature_c - _TEMP_MEAN_C) / _TEMP_STD_C,
            promotion,
            one_hot,
            np.full(len(days), shop.base_units / 40.0),
            np.asarray(last_week_units, dtype=float) / 40.0,
        ]
    ).astype(np.float32)


def training_rows(city: City, shop_index: int, days: range) -> tuple[np.ndarray, np.ndarray]:
    """A shop's own (features, demand level) for ``days`` (each needs the day a week before)."""
    d = np.arange(days.start, days.stop)
    shop = city.shops[shop_index]
    x = features(
        shop, d, city.temperature_c[d], city.promotion[shop_index, d], city.demand[shop_index, d - 7]
    )
    return x, demand_level(city.demand[shop_index, d])


@dataclass(frozen=True, slots=True)
class LedgerSource:
    """One organisation that reports a daily food-ledger record."""

    agent_id: str
    org_kind: str
    postcode: str
    lossy: bool
    household_size: int | None = None


def ledger_records(
    rng: np.random.Generator,
    source: LedgerSource,
    flows: np.ndarray,
    city: City,
    first_day: int,
    *,
    missing_prob: float,
    lossy_missing_prob: float,
    duplicate_prob: float,
    promotion: np.ndarray | None = None,
) -> list[list[dict[str, object]]]:
    """One list of raw records per day: the day's ledger record, re-sent once with ``duplicate_prob``.

    ``flows`` is ``(days, 3)``: units in, out and wasted. A lossy source loses each flow field with
    ``lossy_missing_prob``, any other with ``missing_prob``.
    """
    p_missing = lossy_missing_prob if source.lossy else missing_prob
    out: list[list[dict[str, object]]] = []
    number = int(source.agent_id.rsplit("-", 1)[-1])
    for k, (units_in, units_out, wasted) in enumerate(flows):
        day = first_day + k
        record: dict[str, object] = {
            "org_name": f"{source.org_kind}-{number} ltd",
            "person": f"person-{source.agent_id}",
            "address": f"{number} {source.postcode} street",
            "loyalty_card": f"card-{source.agent_id}" if source.org_kind == "household" else None,
            "plate": f"FC-{number:04d}" if source.org_kind in ("van", "waste-truck") else None,
            "postcode": source.postcode,
            "org_kind": source.org_kind,
            "household_size": source.household_size,
            "day_of_week": float(day % 7),
            "temperature_c": round(float(city.temperature_c[day]), 1),
            "promotion": float(promotion[day]) if promotion is not None else 0.0,
            "units_in": float(units_in),
            "units_out": float(units_out),
            "units_wasted": float(wasted),
        }
        for name in ("units_in", "units_out", "units_wasted"):
            if rng.random() < p_missing:
                record[name] = None
        day_records = [record]
        if rng.random() < duplicate_prob:
            day_records.append(dict(record))  # the source's gateway sends it again
        out.append(day_records)
    return out
