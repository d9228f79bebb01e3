"""The data-management service: desensitisation, completeness, near-duplicate redundancy, k-anonymity."""

from __future__ import annotations

import json

import numpy as np
import pytest

from twin.services.data_management import (
    DataCollector,
    DataServiceConfig,
    DataServiceLedger,
    DataServiceTargets,
    Generalisation,
    RecordSchema,
    data_privacy_level,
    data_service_report,
    desensitise,
    encode_features,
)

SCHEMA = RecordSchema(
    identifiers=("patient_id", "name", "phone"),
    quasi_identifiers=(
        ("age", Generalisation("band", width=20)),
        ("postcode", Generalisation("prefix", chars=2)),
        ("sex", Generalisation("keep")),
        ("ward", Generalisation("drop")),
    ),
    features=("heart_rate", "temperature"),
    feature_mean=(70.0, 37.0),
    feature_std=(10.0, 0.5),
)


def _record(
    i: int, *, heart_rate: float | None = 70.0, temperature: float | None = 37.0
) -> dict[str, object]:
    return {
        "patient_id": f"P-{i:05d}",
        "name": f"Patient Number{i}",
        "phone": f"+86-139-{1000 + i}",
        "age": 30 + i % 7,
        "postcode": f"21{i:04d}",
        "sex": "F" if i % 2 else "M",
        "ward": f"ward-{i}",
        "heart_rate": heart_rate,
        "temperature": temperature,
    }


def test_desensitise_removes_every_identifier_and_generalises_the_rest() -> None:
    """No identifier field or value, no feature, no dropped field survives; quasi-identifiers are coarse."""
    # Prepare
    records = [_record(i) for i in range(50)]
    # Execute
    released = [desensitise(r, SCHEMA) for r in records]
    # Assert
    wire = json.dumps(released)
    for record in records:
        for name in SCHEMA.identifiers:
            assert str(record[name]) not in wire
    assert all(set(r) == {"age", "postcode", "sex"} for r in released)
    assert released[0] == {"age": "20-40", "postcode": "21", "sex": "M"}


def test_collector_releases_no_identifier_and_flags_lossy_and_duplicate_records() -> None:
    """The device side: a missing feature makes a record lossy; a repeated measurement is a near-duplicate."""
    # Prepare
    collector = DataCollector(SCHEMA, DataServiceConfig(duplicate_cosine=0.995, memory=4))
    # Execute
    first = collector.collect("t-1", _record(1, heart_rate=90.0, temperature=38.0))
    again = collector.collect("t-1", _record(2, heart_rate=90.0, temperature=38.0))
    other_source = collector.collect("t-2", _record(3, heart_rate=90.0, temperature=38.0))
    lossy = collector.collect("t-1", _record(4, heart_rate=None, temperature=36.0))
    # Assert
    assert not set(SCHEMA.identifiers) & (set(first.released) | set(lossy.released))
    assert (first.lossless, first.near_duplicate) == (True, False)
    assert again.near_duplicate and not other_source.near_duplicate
    assert not lossy.lossless
    assert lossy.features[0] == 0.0  # imputed at the reference mean (standardised 0)


def test_encode_features_standardises_and_imputes() -> None:
    """Features become (value − mean) / std; a missing value is imputed at 0 and the record is lossy."""
    x, lossless = encode_features(_record(0, heart_rate=80.0, temperature=36.0), SCHEMA)
    assert lossless
    np.testing.assert_allclose(x, [1.0, -2.0])
    x, lossless = encode_features(_record(0, heart_rate=None, temperature=36.0), SCHEMA)
    assert not lossless
    np.testing.assert_allclose(x, [0.0, -2.0])


def test_ledger_completeness_redundancy_on_a_hand_made_set() -> None:
    """10 records, 3 lossy and 2 near-duplicates: completeness 0.7, redundancy share 0.2."""
    # Prepare
    ledger = DataServiceLedger(SCHEMA, DataServiceConfig())
    released = [desensitise(_record(i), SCHEMA) for i in range(10)]
    lossless = [True] * 7 + [False] * 3
    near = [False] * 8 + [True] * 2
    # Execute
    ledger.add(released[:4], lossless[:4], near[:4])
    ledger.add(released[4:], lossless[4:], near[4:])
    summary = ledger.summary()
    # Assert
    assert summary["collected"] == 10
    assert summary["completeness"] == pytest.approx(0.7)
    assert summary["redundancy_share"] == pytest.approx(0.2)
    report = data_service_report("data", summary, DataServiceTargets(), tls=False, authenticated=True)
    verdict = {i.name: i.passed for i in report.indicators}
    assert verdict["completeness"] is False  # 0.7 < 0.9
    assert verdict["redundancy_near_duplicates"] is False  # 0.2 > 0.1


def test_k_anonymity_is_the_smallest_quasi_identifier_group_and_grades_privacy() -> None:
    """Groups of 6 and 2 records: k = 2; level 2 below k_min, 3 at or above it, 1 once an identifier leaks."""
    # Prepare
    ledger = DataServiceLedger(SCHEMA, DataServiceConfig(k_anonymity_min=5))
    group_a = [{"age": "20-40", "postcode": "21", "sex": "M"}] * 6
    group_b = [{"age": "40-60", "postcode": "22", "sex": "F"}] * 2
    # Execute
    ledger.add(group_a + group_b, [True] * 8, [False] * 8)
    # Assert
    assert ledger.k_anonymity == 2 and ledger.privacy_level == 2
    ledger.add([{"age": "40-60", "postcode": "22", "sex": "F"}] * 3, [True] * 3, [False] * 3)
    assert ledger.k_anonymity == 5 and ledger.privacy_level == 3
    ledger.add([{"age": "40-60", "postcode": "22", "sex": "F", "phone": "+86"}], [True], [False])
    assert ledger.identifier_fields_seen == {"phone"} and ledger.privacy_level == 1
    assert data_privacy_level(identifiers_released=False, k_anonymity=0, k_min=5) == 2
