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

The model's input and output sizes are configurable (``task.features``, ``task.classes``): a window is
resampled in time to ``ceil(features / CHANNELS)`` steps (linear interpolation, per channel) and its
flattened readings cropped to ``features``; classes beyond the four above are never drawn (the output
layer has ``classes`` units). The defaults (``IN_FEATURES``, four classes) use the window as sensed, so
the data are those of a run without these settings, bit for bit.
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
IN_FEATURES = WINDOW * CHANNELS  # default model input width: the window as sensed
RAW_SAMPLE_BITS = WINDOW * CHANNELS * 16  # 16-bit sensor readings


def class_names(classes: int = len(CLASSES)) -> tuple[str, ...]:
    """The task's class names: the four events, then ``unused-4`` … up to ``classes`` (never drawn)."""
    if classes < len(CLASSES):
        raise ValueError(f"task.classes must be >= {len(CLASSES)}, got {classes}")
    return CLASSES + tuple(f"unused-{i}" for i in range(len(CLASSES), classes))


def raw_sample_bits(features: int = IN_FEATURES) -> int:
    """Size of one sensed sample: ``features`` 16-bit readings."""
    return features * 16


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
    """Raw windows ``(n, WINDOW, CHANNELS)`` for the given labels in household ``home``.

    Every event is drawn for all of its windows at once (array operations, no loop over samples).
    """
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

    fall = np.flatnonzero(labels == 1)
    if fall.size:  # an impact at `at`, lying still after it, heart rate rising from it
        k = fall.size
        at = rng.integers(2, WINDOW - 4, k)[:, None]
        spike = rng.uniform(2.5, 6.0, (k, 1))
        still = 0.03 + np.abs(rng.normal(0, 0.02, (k, WINDOW)))
        rise = rng.uniform(8, 25, (k, 1))
        after = t[None, :] - at
        a = acc[fall]
        a = np.where(after == 0, a + spike, a)
        acc[fall] = np.where(after > 0, still, a)
        hr[fall] += np.where(after >= 0, rise * after / (WINDOW - 1 - at), 0.0)
    arrhythmia = np.flatnonzero(labels == 2)
    if arrhythmia.size:  # tachycardia (a constant rise) or an irregular rate
        k = arrhythmia.size
        tachy = rng.random((k, 1)) < 0.5
        rise = rng.uniform(30, 60, (k, 1))
        irregular = rng.normal(0, 1, (k, WINDOW)) * rng.uniform(12, 25, (k, 1))
        hr[arrhythmia] += np.where(tachy, rise, irregular)
    apnea = np.flatnonzero(labels == 3)
    if apnea.size:  # breathing stops from `start` for `length` s while SpO2 sinks; lying still
        k = apnea.size
        start = rng.integers(0, WINDOW // 2, k)[:, None]
        length = rng.integers(6, WINDOW - start + 1)
        gasp = np.abs(rng.normal(1.0, 1.0, (k, WINDOW)))
        sink = rng.uniform(3, 10, (k, 1))
        since = t[None, :] - start
        resp[apnea] = np.where((since >= 0) & (since < length), gasp, resp[apnea])
        spo2[apnea] -= np.where(since >= 0, sink * since / (WINDOW - 1 - start), 0.0)
        acc[apnea] = np.minimum(acc[apnea], home.activity)

    windows = np.stack([hr, spo2, resp, acc], axis=-1) * home.gain
    return windows


def resample(windows: np.ndarray, steps: int) -> np.ndarray:
    """Windows ``(n, WINDOW, CHANNELS)`` resampled in time to ``(n, steps, CHANNELS)`` (linear).

    The first and last readings are kept; the others are interpolated between their neighbours.
    """
    if steps == WINDOW:
        return windows
    at = np.linspace(0.0, WINDOW - 1, steps) if steps > 1 else np.zeros(1)
    lo = np.floor(at).astype(np.int64)
    hi = np.minimum(lo + 1, WINDOW - 1)
    frac = (at - lo)[None, :, None]
    return windows[:, lo, :] * (1.0 - frac) + windows[:, hi, :] * frac


def to_features(windows: np.ndarray, features: int = IN_FEATURES) -> torch.Tensor:
    """Normalised, flattened windows as a float32 tensor ``(n, features)``.

    ``features == IN_FEATURES`` flattens the window as sensed (time-major: ``t0c0, t0c1, …``);
    another width resamples it to ``ceil(features / CHANNELS)`` steps and crops the flat readings.
    """
    if features < 1:
        raise ValueError(f"task.features must be >= 1, got {features}")
    if features == IN_FEATURES:
        feats = (windows - _CENTER) / _SCALE
        return torch.from_numpy(feats.reshape(len(windows), -1).astype(np.float32))
    steps = -(-features // CHANNELS)
    feats = (resample(windows, steps) - _CENTER) / _SCALE
    flat = feats.reshape(len(windows), -1)[:, :features]
    return torch.from_numpy(np.ascontiguousarray(flat, dtype=np.float32))


def generate(
    rng: np.random.Generator,
    agent_ids: list[str],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_households: int,
    test_samples_per_household: int,
    features: int = IN_FEATURES,
    classes: int = len(CLASSES),
) -> tuple[TaskData, dict[str, Household]]:
    """Generate every household's local data and the regional held-out test set.

    ``features`` is the model's input width and ``classes`` its number of outputs (see the module
    docstring); the random draws do not depend on either.
    """
    names = class_names(classes)
    local: dict[str, LocalData] = {}
    homes: dict[str, Household] = {}
    for agent_id in agent_ids:
        home = make_household(rng, dirichlet_alpha)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=home.class_probs)
        local[agent_id] = LocalData(
            to_features(sample_windows(rng, home, labels), features), torch.from_numpy(labels)
        )
        homes[agent_id] = home
    xs, ys = [], []
    for _ in range(test_households):
        home = make_household(rng, dirichlet_alpha=50.0)  # test homes: the regional mix, not one home's
        labels = rng.choice(len(CLASSES), size=test_samples_per_household, p=PRIOR)
        xs.append(to_features(sample_windows(rng, home, labels), features))
        ys.append(torch.from_numpy(labels))
    task = TaskData(local, torch.cat(xs), torch.cat(ys), names, raw_sample_bits(features))
    return task, homes


def sensor_stream(
    rng: np.random.Generator, home: Household, n_windows: int, features: int = IN_FEATURES
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a household's sensors will see during a run: ``n_windows`` windows with their true labels."""
    labels = rng.choice(len(CLASSES), size=n_windows, p=home.class_probs)
    return to_features(sample_windows(rng, home, labels), features), torch.from_numpy(labels)
