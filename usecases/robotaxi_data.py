"""Synthetic robotaxi task (paper §2.3.1): the **regional demand model**.

Each sample is what a robotaxi observes while cruising a city zone: the hour (cyclic), weekday or
weekend, weather, an event nearby, the zone's type (residential, business, nightlife, station) and
the pickups it saw in the last 15 minutes. The label is the demand level of the zone for the next
half hour: ``low``, ``normal``, ``high`` or ``surge``.

Non-IID: a taxi's samples come from the zones it drives through (its home district's mix of zone
types), at the hours of its shift.
"""

from __future__ import annotations

import numpy as np
import torch

from twin.learning.cohort import LocalData
from twin.learning.task import TaskData

CLASSES = ("low", "normal", "high", "surge")
ZONE_TYPES = ("residential", "business", "nightlife", "station")
FEATURES = 2 + 1 + 1 + 1 + len(ZONE_TYPES) + 1
RAW_SAMPLE_BITS = 32 * FEATURES
# Demand rate (pickups per 15 min) by zone type and hour: peaks in the morning, evening, night.
_PEAKS = {
    "residential": ((7.5, 1.5, 6.0), (18.5, 2.0, 4.0)),
    "business": ((8.5, 1.0, 5.0), (17.5, 1.5, 8.0)),
    "nightlife": ((23.0, 2.5, 9.0), (1.5, 1.5, 7.0)),
    "station": ((8.0, 1.5, 7.0), (18.0, 2.0, 7.0)),
}


def demand_rate(
    zone: str, hour: np.ndarray, weekend: np.ndarray, rain: np.ndarray, event: np.ndarray
) -> np.ndarray:
    """Expected pickups per 15 minutes in a zone (the ground truth the model has to learn)."""
    rate = np.full(hour.shape, 1.0)
    for centre, width, height in _PEAKS[zone]:
        d = np.minimum(np.abs(hour - centre), 24 - np.abs(hour - centre))
        rate = rate + height * np.exp(-0.5 * (d / width) ** 2)
    if zone in ("business", "station"):
        rate = rate * np.where(weekend, 0.5, 1.0)
    else:
        rate = rate * np.where(weekend, 1.4, 1.0)
    return rate * (1.0 + 0.5 * rain) + 6.0 * event


def sample(
    rng: np.random.Generator, zone_mix: np.ndarray, shift_start: float, n: int, shift_hours: float = 10.0
) -> tuple[np.ndarray, np.ndarray]:
    """``n`` observations in a district with zone-type mix ``zone_mix`` during a shift."""
    zones = rng.choice(len(ZONE_TYPES), size=n, p=zone_mix)
    hour = (shift_start + rng.uniform(0, shift_hours, n)) % 24
    weekend = rng.random(n) < 2 / 7
    rain = (rng.random(n) < 0.2).astype(float)
    event = (rng.random(n) < 0.05).astype(float)
    rate = np.zeros(n)
    for z, name in enumerate(ZONE_TYPES):
        mask = zones == z
        rate[mask] = demand_rate(name, hour[mask], weekend[mask], rain[mask], event[mask])
    recent = rng.poisson(rate)
    upcoming = rng.poisson(rate * 2)  # next half hour
    label = np.digitize(upcoming, [4, 10, 18])
    one_hot = np.eye(len(ZONE_TYPES))[zones]
    x = np.column_stack(
        [
            np.sin(2 * np.pi * hour / 24),
            np.cos(2 * np.pi * hour / 24),
            weekend,
            rain,
            event,
            one_hot,
            recent / 10.0,
        ]
    )
    return x.astype(np.float32), label


def generate(
    rng: np.random.Generator,
    agent_ids: list[str],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_samples: int,
) -> tuple[TaskData, dict[str, tuple[np.ndarray, float]]]:
    """Every taxi's observations and a city-wide held-out set; also each taxi's (zone mix, shift start)."""
    local: dict[str, LocalData] = {}
    profiles: dict[str, tuple[np.ndarray, float]] = {}
    for agent_id in agent_ids:
        mix = rng.dirichlet(np.full(len(ZONE_TYPES), dirichlet_alpha))
        shift = float(rng.choice([6.0, 14.0, 20.0]))
        x, y = sample(rng, mix, shift, int(rng.integers(samples_min, samples_max + 1)))
        local[agent_id] = LocalData(torch.from_numpy(x), torch.from_numpy(y))
        profiles[agent_id] = (mix, shift)
    x, y = sample(rng, np.full(len(ZONE_TYPES), 1 / len(ZONE_TYPES)), 0.0, test_samples, shift_hours=24.0)
    return TaskData(local, torch.from_numpy(x), torch.from_numpy(y), CLASSES, RAW_SAMPLE_BITS), profiles
