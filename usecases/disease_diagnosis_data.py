"""Synthetic patients for ``disease-diagnosis``: identifiable case records, their diagnoses and a drift.

Each case is what a patient terminal collects: **identifiers** (patient id, name, national id, phone),
**quasi-identifiers** (age, postcode, sex) and ten clinical measurements (vital signs and blood tests).
A diagnosis (healthy, influenza, pneumonia, sepsis) is a mixture of two presentations per class in the
standardised measurement space, so that a larger model separates them better than a small one. Some
cases miss one or two measurements (not lossless), some are re-measurements of the terminal's previous
patient (near-duplicates). After ``drift_at_s`` the population drifts: every presentation's centre
moves by ``magnitude`` standard deviations in a random direction (a new variant, another season).
Everything is drawn from the seed's generators; the same seed gives the same patients.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import numpy as np

from twin.services.data_management import Generalisation, RecordSchema

CLASSES = ("healthy", "influenza", "pneumonia", "sepsis")
FEATURES = (
    "temperature_c",
    "heart_rate_bpm",
    "resp_rate_pm",
    "spo2_pct",
    "systolic_mmhg",
    "wbc_e9_l",
    "crp_mg_l",
    "lactate_mmol_l",
    "glucose_mmol_l",
    "cough_score",
)
REFERENCE_MEAN = (37.0, 80.0, 16.0, 97.0, 120.0, 7.5, 10.0, 1.2, 5.5, 2.0)
REFERENCE_STD = (0.8, 15.0, 4.0, 2.5, 15.0, 3.0, 30.0, 0.8, 1.5, 2.0)
SCHEMA = RecordSchema(
    identifiers=("patient_id", "name", "national_id", "phone"),
    quasi_identifiers=(
        ("age", Generalisation("band", width=20)),
        ("postcode", Generalisation("prefix", chars=2)),
        ("sex", Generalisation("keep")),
    ),
    features=FEATURES,
    feature_mean=REFERENCE_MEAN,
    feature_std=REFERENCE_STD,
)
PRESENTATIONS = 2
_GIVEN = ("Wei", "Fang", "Li", "Jun", "Mei", "Hao", "Ying", "Lei", "Xin", "Tao", "Yan", "Bo")
_FAMILY = ("Wang", "Zhang", "Liu", "Chen", "Yang", "Zhao", "Huang", "Zhou", "Wu", "Xu", "Sun", "Ma")


@dataclass(frozen=True, slots=True)
class Population:
    """The patients' disease model: presentation centres before and after the drift."""

    centres: np.ndarray  # (classes, presentations, features) in standardised units
    drifted: np.ndarray  # the same after the drift
    spread: float
    prevalence: np.ndarray  # (classes,)


@dataclass(frozen=True, slots=True)
class SiteCases:
    """One terminal's cases: raw records (identifiers included), true diagnoses, confirmed or not."""

    records: list[dict[str, Any]]
    labels: np.ndarray  # (n,) int64
    labelled: np.ndarray  # (n,) bool: the diagnosis is confirmed by a clinician (a labelled case)


def population(rng: np.random.Generator, *, drift_magnitude: float, spread: float = 0.75) -> Population:
    """Presentation centres of every diagnosis, and where they move to at the drift."""
    centres = rng.normal(0.0, 1.0, size=(len(CLASSES), PRESENTATIONS, len(FEATURES)))
    centres[0] *= 0.3  # healthy patients sit near the reference values
    direction = rng.normal(0.0, 1.0, size=centres.shape)
    direction /= np.linalg.norm(direction, axis=2, keepdims=True)
    prevalence = np.array([0.4, 0.25, 0.2, 0.15])
    return Population(centres, centres + drift_magnitude * direction, spread, prevalence)


def cases(
    rng: np.random.Generator,
    pop: Population,
    *,
    site: str,
    postcode_prefix: str,
    n: int,
    drifted: np.ndarray,
    missing_prob: float,
    duplicate_prob: float,
    labelled_share: float,
    first_index: int = 0,
) -> SiteCases:
    """``n`` cases of terminal ``site`` (``drifted[i]``: case i is drawn from the drifted population)."""
    labels = rng.choice(len(CLASSES), size=n, p=pop.prevalence)
    which = rng.integers(0, PRESENTATIONS, size=n)
    centres = np.where(drifted[:, None], pop.drifted[labels, which], pop.centres[labels, which])
    z = centres + rng.normal(0.0, pop.spread, size=(n, len(FEATURES)))
    duplicate = rng.random(n) < duplicate_prob
    missing = rng.random(n) < missing_prob
    missing_cols = rng.integers(0, len(FEATURES), size=(n, 2))
    missing_two = rng.random(n) < 0.3
    ages = rng.integers(1, 95, size=n)
    sexes = rng.choice(["F", "M"], size=n)
    postcodes = rng.integers(0, 10000, size=n)
    given, family = rng.integers(0, len(_GIVEN), size=n), rng.integers(0, len(_FAMILY), size=n)
    national = rng.integers(10**9, 10**10, size=(n, 2))
    phones = rng.integers(10**7, 10**8, size=n)
    labelled = rng.random(n) < labelled_share
    mean, std = np.array(REFERENCE_MEAN), np.array(REFERENCE_STD)
    records: list[dict[str, Any]] = []
    for i in range(n):  # one dict per collected case: the form a terminal holds it in
        if duplicate[i] and records:
            previous = records[-1]
            labels[i] = labels[i - 1]
            z[i] = z[i - 1] + rng.normal(0.0, 0.01, size=len(FEATURES))
            record = {k: previous[k] for k in (*SCHEMA.identifiers, "age", "postcode", "sex")}
        else:
            record = {
                "patient_id": f"P-{site}-{first_index + i:06d}",
                "name": f"{_GIVEN[given[i]]} {_FAMILY[family[i]]}-{site}-{first_index + i}",
                "national_id": f"{national[i, 0]}{national[i, 1]}",
                "phone": f"+86-139-{phones[i]}",
                "age": int(ages[i]),
                "postcode": f"{postcode_prefix}{postcodes[i]:04d}",
                "sex": str(sexes[i]),
            }
        values = mean + std * z[i]
        for j, name in enumerate(FEATURES):
            record[name] = float(values[j])
        if missing[i]:
            for col in missing_cols[i, : 2 if missing_two[i] else 1]:
                record[FEATURES[col]] = None
        records.append(record)
    return SiteCases(records, labels.astype(np.int64), labelled)
