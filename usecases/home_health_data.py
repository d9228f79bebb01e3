"""Synthetic home-health sensing task (paper §2.3.4): vital-sign and motion windows.

Each sample is a window of ``WINDOW`` one-second readings of four channels from a wearable/home
sensor: heart rate (bpm), SpO2 (%), respiration rate (breaths/min) and acceleration magnitude (g).
Classes:

- ``normal`` — resting or walking (walking raises motion and heart rate: a realistic confounder);
- ``fall`` — an impact spike of 2.5–6 g, then lying still, heart rate rising;
- ``arrhythmia`` — tachycardia or an irregular beat-to-beat rate;
- ``apnea`` — breathing stops for a stretch while SpO2 sinks.

Non-IID across households: each household has its own physiology (resting HR, SpO2, breathing,
activity), its own sensor gain and noise, and its own event mix (Dirichlet label skew around a
mostly-normal prior). The held-out test set comes from separate households of the same region.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twin.learning.cohort import LocalData
from twin.learning.task import TaskData

CLASSES = ("normal", "fall", "arrhythmia", "apnea")
WINDOW = 16
CHANNELS = 4
PRIOR = np.array([0.55, 0.15, 0.15, 0.15])
# Fixed normalisation from physiological ranges (no statistics of the data leak into it).
_CENTER = np.array([75.0, 96.0, 15.0, 0.5])
_SCALE = np.array([25.0, 4.0, 8.0, 1.5])
RAW_SAMPLE_BITS = WINDOW * CHANNELS * 16  # 16-bit sensor readings


@dataclass(frozen=True, slots=True)
class Household:
    """Physiology and sensor of one home."""

    resting_hr: float
    spo2: float
    resp_rate: float
    activity: float
    gain: float
    noise: float
    class_probs: np.ndarray


def make_household(rng: np.random.Generator, dirichlet_alpha: float) -> Household:
    """Draw a household: its physiology, sensor and (skewed) event mix."""
    return Household(
        resting_hr=float(rng.normal(72, 8)),
        spo2=float(np.clip(rng.normal(97, 1.0), 93, 99.5)),
        resp_rate=float(rng.normal(15, 2)),
        activity=float(rng.uniform(0.05, 0.5)),
        gain=float(rng.normal(1.0, 0.06)),
        noise=float(rng.uniform(0.5, 1.5)),
        class_probs=rng.dirichlet(dirichlet_alpha * PRIOR * len(PRIOR)),
    )


def sample_windows(rng: np.random.Generator, home: Household, labels: np.ndarray) -> np.ndarray:
    """Raw windows ``(n, WINDOW, CHANNELS)`` for the given labels in household ``home``."""
    n = len(labels)
    t = np.arange(WINDOW)
    hr = home.resting_hr + rng.normal(0, 1.5 * home.noise, (n, WINDOW))
    spo2 = home.spo2 + rng.normal(0, 0.4 * home.noise, (n, WINDOW))
    resp = home.resp_rate + rng.normal(0, 0.8 * home.noise, (n, WINDOW))
    acc = home.activity + np.abs(rng.normal(0, 0.05 * home.noise, (n, WINDOW)))
    walking = rng.random(n) < 0.3
    acc[walking] += (
        0.6 + 0.3 * np.abs(np.sin(t * 2.1))[None, :] + rng.normal(0, 0.15, (walking.sum(), WINDOW))
    )
    hr[walking] += rng.uniform(8, 25, (walking.sum(), 1))

    for i in np.flatnonzero(labels == 1):  # fall
        at = rng.integers(2, WINDOW - 4)
        acc[i, at] += rng.uniform(2.5, 6.0)
        acc[i, at + 1 :] = 0.03 + np.abs(rng.normal(0, 0.02, WINDOW - at - 1))
        hr[i, at:] += np.linspace(0, rng.uniform(8, 25), WINDOW - at)
    for i in np.flatnonzero(labels == 2):  # arrhythmia
        if rng.random() < 0.5:
            hr[i] += rng.uniform(30, 60)
        else:
            hr[i] += rng.normal(0, rng.uniform(12, 25), WINDOW)
    for i in np.flatnonzero(labels == 3):  # apnea
        start = rng.integers(0, WINDOW // 2)
        length = rng.integers(6, WINDOW - start + 1)
        resp[i, start : start + length] = np.abs(rng.normal(1.0, 1.0, length))
        spo2[i, start:] -= np.linspace(0, rng.uniform(3, 10), WINDOW - start)
        acc[i] = np.minimum(acc[i], home.activity)

    windows = np.stack([hr, spo2, resp, acc], axis=-1) * home.gain
    return windows


def to_features(windows: np.ndarray) -> torch.Tensor:
    """Normalised, flattened windows as a float32 tensor ``(n, WINDOW*CHANNELS)``."""
    feats = (windows - _CENTER) / _SCALE
    return torch.from_numpy(feats.reshape(len(windows), -1).astype(np.float32))


def generate(
    rng: np.random.Generator,
    agent_ids: list[str],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_households: int,
    test_samples_per_household: int,
) -> tuple[TaskData, dict[str, Household]]:
    """Generate every household's local data and the regional held-out test set."""
    local: dict[str, LocalData] = {}
    homes: dict[str, Household] = {}
    for agent_id in agent_ids:
        home = make_household(rng, dirichlet_alpha)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=home.class_probs)
        local[agent_id] = LocalData(to_features(sample_windows(rng, home, labels)), torch.from_numpy(labels))
        homes[agent_id] = home
    xs, ys = [], []
    for _ in range(test_households):
        home = make_household(rng, dirichlet_alpha=50.0)  # test homes: the regional mix, not one home's
        labels = rng.choice(len(CLASSES), size=test_samples_per_household, p=PRIOR)
        xs.append(to_features(sample_windows(rng, home, labels)))
        ys.append(torch.from_numpy(labels))
    task = TaskData(local, torch.cat(xs), torch.cat(ys), CLASSES, RAW_SAMPLE_BITS)
    return task, homes


def sensor_stream(
    rng: np.random.Generator, home: Household, n_windows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a household's sensors will see during a run: ``n_windows`` windows with their true labels."""
    labels = rng.choice(len(CLASSES), size=n_windows, p=home.class_probs)
    return to_features(sample_windows(rng, home, labels)), torch.from_numpy(labels)
