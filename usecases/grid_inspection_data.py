"""Synthetic grid-inspection task (paper §2.3.8): fault signatures seen by inspection drones.

Each sample describes one inspected span of a power line as the drone's on-board preprocessing
summarises it: a thermal profile along the span (°C above ambient, 12 points), a 16-d visual
descriptor (a fixed projection of latent condition factors: insulator integrity, rust, vegetation,
illumination) and lidar conductor-to-vegetation clearances (4 points, metres). Classes:

- ``normal``;
- ``insulator_damage`` — low insulator integrity, a mild thermal anomaly at the insulator;
- ``corrosion`` — rust on fittings and tower steel;
- ``vegetation`` — trees closer than the safety clearance;
- ``hotspot`` — an overheating joint (a sharp thermal peak).

Non-IID: every drone patrols its own corridor, whose landscape (forest, coast, town, farmland) skews
the fault mix; each drone's camera has its own gain and offset; flights happen at different times of
day (illumination). The held-out test set samples every landscape.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twin.learning.cohort import LocalData
from twin.learning.task import TaskData

CLASSES = ("normal", "insulator_damage", "corrosion", "vegetation", "hotspot")
THERMAL_POINTS = 12
VISUAL_DIM = 16
CLEARANCE_POINTS = 4
FEATURES = THERMAL_POINTS + VISUAL_DIM + CLEARANCE_POINTS
RAW_SAMPLE_BITS = 224 * 224 * 3 * 8 // 16  # one compressed inspection frame (~75 kbit)
LANDSCAPES = {
    "forest": np.array([0.50, 0.08, 0.07, 0.30, 0.05]),
    "coast": np.array([0.50, 0.10, 0.30, 0.05, 0.05]),
    "town": np.array([0.50, 0.10, 0.08, 0.02, 0.30]),
    "farmland": np.array([0.60, 0.15, 0.10, 0.10, 0.05]),
}
_PROJECTION = np.random.default_rng(20231101).normal(0.0, 1.0, (VISUAL_DIM, 4))  # the "camera model"


@dataclass(frozen=True, slots=True)
class Corridor:
    """A drone's patrol corridor: landscape, fault mix, camera and flight time."""

    landscape: str
    class_probs: np.ndarray
    camera_gain: float
    camera_offset: float
    illumination: float


def make_corridor(rng: np.random.Generator, dirichlet_alpha: float) -> Corridor:
    """Draw a corridor: its landscape's fault mix skewed by a Dirichlet draw, its drone's camera."""
    landscape = str(rng.choice(list(LANDSCAPES)))
    prior = LANDSCAPES[landscape]
    return Corridor(
        landscape=landscape,
        class_probs=rng.dirichlet(dirichlet_alpha * prior * len(prior)),
        camera_gain=float(rng.normal(1.0, 0.08)),
        camera_offset=float(rng.normal(0.0, 0.15)),
        illumination=float(rng.uniform(0.3, 1.0)),
    )


def sample_spans(rng: np.random.Generator, corridor: Corridor, labels: np.ndarray) -> np.ndarray:
    """Feature vectors ``(n, FEATURES)`` of inspected spans with the given labels."""
    n = len(labels)
    pos = np.linspace(0.0, 1.0, THERMAL_POINTS)
    thermal = 2.0 + rng.normal(0, 0.8, (n, THERMAL_POINTS))
    integrity = rng.normal(1.0, 0.1, n)
    rust = np.abs(rng.normal(0.1, 0.08, n))
    vegetation = np.abs(rng.normal(0.15, 0.1, n))
    clearance = rng.uniform(7.0, 15.0, (n, CLEARANCE_POINTS))
    for i in np.flatnonzero(labels == 1):  # insulator damage
        integrity[i] = rng.uniform(0.2, 0.6)
        thermal[i] += 4.0 * np.exp(-((pos - rng.choice([0.0, 1.0])) ** 2) / 0.01)
    for i in np.flatnonzero(labels == 2):  # corrosion
        rust[i] = rng.uniform(0.5, 1.0)
    for i in np.flatnonzero(labels == 3):  # vegetation encroachment
        vegetation[i] = rng.uniform(0.6, 1.0)
        clearance[i, rng.integers(0, CLEARANCE_POINTS)] = rng.uniform(0.5, 3.0)
    for i in np.flatnonzero(labels == 4):  # overheating joint
        thermal[i] += rng.uniform(12.0, 40.0) * np.exp(-((pos - rng.uniform(0.2, 0.8)) ** 2) / 0.004)
    illumination = corridor.illumination + rng.normal(0, 0.05, n)
    latent = np.stack([integrity, rust, vegetation, illumination], axis=1)
    visual = latent @ _PROJECTION.T + rng.normal(0, 0.3, (n, VISUAL_DIM))
    visual = visual * corridor.camera_gain + corridor.camera_offset
    return np.concatenate([thermal / 10.0, visual / 2.0, (clearance - 8.0) / 5.0], axis=1)


def generate(
    rng: np.random.Generator,
    agent_ids: list[str],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_samples: int,
) -> tuple[TaskData, dict[str, Corridor]]:
    """Every drone's collected spans and the held-out test set over all landscapes."""
    local: dict[str, LocalData] = {}
    corridors: dict[str, Corridor] = {}
    for agent_id in agent_ids:
        corridor = make_corridor(rng, dirichlet_alpha)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=corridor.class_probs)
        local[agent_id] = LocalData(_tensor(sample_spans(rng, corridor, labels)), torch.from_numpy(labels))
        corridors[agent_id] = corridor
    xs, ys = [], []
    per_corridor = max(1, test_samples // 20)
    for _ in range(20):
        corridor = make_corridor(rng, dirichlet_alpha=50.0)
        labels = rng.choice(len(CLASSES), size=per_corridor, p=np.full(len(CLASSES), 1 / len(CLASSES)))
        xs.append(_tensor(sample_spans(rng, corridor, labels)))
        ys.append(torch.from_numpy(labels))
    task = TaskData(local, torch.cat(xs), torch.cat(ys), CLASSES, RAW_SAMPLE_BITS)
    return task, corridors


def sensor_stream(rng: np.random.Generator, corridor: Corridor, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a drone will inspect during a run: ``n`` spans with their true condition."""
    labels = rng.choice(len(CLASSES), size=n, p=corridor.class_probs)
    return _tensor(sample_spans(rng, corridor, labels)), torch.from_numpy(labels)


def _tensor(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(features.astype(np.float32))
