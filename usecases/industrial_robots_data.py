"""Synthetic defect-inspection images for ``industrial-robots`` (paper §2.3.2): parts seen by robot cameras.

Each sample is a 1×32×32 grayscale frame of a part as a robot's camera sees it on its production step,
stored flat (1024 values, normalised) for :class:`twin.learning.cnn.SmallCNN`. Classes:

- ``ok`` — a good part;
- ``scratch`` — a thin bright line at a random place and angle;
- ``dent`` — a dark round blob;
- ``crack`` — a dark jagged line (a random walk).

What a part looks like depends on its **production step** (the cluster of the clustered aggregation):
``machining`` parts are brushed metal (horizontal grain), ``welding`` parts carry a bright vertical weld
seam, ``assembly`` parts show a board's grid of tracks. A defect is a local pattern anywhere in the
frame, so a model that works for one step must learn where defects are *not* the part's own texture.
Non-IID: each robot has its own camera (gain, offset, noise, a lighting gradient) and its own label mix
(Dirichlet skew); each step has its own held-out test set.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twin.learning.cnn import IMAGE_PIXELS, IMAGE_SIDE
from twin.learning.cohort import LocalData
from twin.learning.task import TaskData

CLASSES = ("ok", "scratch", "dent", "crack")
STEPS = ("machining", "welding", "assembly")
CLASS_PRIOR = np.array([0.4, 0.2, 0.2, 0.2])
RAW_SAMPLE_BITS = IMAGE_PIXELS * 8
"""One 8-bit grayscale frame (D0 of SPEC §7)."""
_YY, _XX = np.mgrid[0:IMAGE_SIDE, 0:IMAGE_SIDE].astype(np.float64)


@dataclass(frozen=True, slots=True)
class RobotCamera:
    """A robot's production step, label mix and camera."""

    step: int
    class_probs: np.ndarray
    gain: float
    offset: float
    noise: float
    light_slope: float


def make_camera(rng: np.random.Generator, step: int, dirichlet_alpha: float) -> RobotCamera:
    """Draw a robot's camera and label mix on production step ``step``."""
    return RobotCamera(
        step=step,
        class_probs=rng.dirichlet(dirichlet_alpha * CLASS_PRIOR * len(CLASS_PRIOR)),
        gain=float(rng.normal(1.0, 0.08)),
        offset=float(rng.normal(0.0, 0.05)),
        noise=float(rng.uniform(0.03, 0.07)),
        light_slope=float(rng.normal(0.0, 0.004)),
    )


def _background(rng: np.random.Generator, step: int) -> np.ndarray:
    """The part as it looks on production step ``step``, without defect."""
    if step % len(STEPS) == 0:  # machining: brushed metal, horizontal grain
        grain = rng.normal(0.0, 0.04, (IMAGE_SIDE, 1))
        return 0.55 + grain + 0.02 * np.sin(2 * np.pi * _YY / rng.uniform(3.0, 6.0))
    if step % len(STEPS) == 1:  # welding: a bright vertical seam with ripples
        centre, width = rng.normal(16.0, 2.5), rng.uniform(1.5, 3.0)
        seam = 0.3 * np.exp(-((_XX - centre) ** 2) / (2 * width**2))
        return 0.4 + seam * (1 + 0.2 * np.sin(_YY * rng.uniform(1.0, 2.0)))
    period, phase = int(rng.integers(6, 10)), int(rng.integers(0, 6))  # assembly: a board's grid of tracks
    tracks = ((_XX.astype(int) + phase) % period == 0) | ((_YY.astype(int) + phase) % period == 0)
    return 0.5 + 0.15 * tracks


def _draw_path(img: np.ndarray, xs: np.ndarray, ys: np.ndarray, amount: float) -> None:
    xi = np.clip(np.round(xs).astype(int), 0, IMAGE_SIDE - 1)
    yi = np.clip(np.round(ys).astype(int), 0, IMAGE_SIDE - 1)
    img[yi, xi] += amount


def _defect(rng: np.random.Generator, img: np.ndarray, label: int) -> None:
    """Add the defect of class ``label`` at a random place (nothing for ``ok``)."""
    cx, cy = rng.uniform(6.0, IMAGE_SIDE - 6.0, 2)
    if label == 1:  # scratch
        angle, length = rng.uniform(0, np.pi), rng.uniform(8.0, 16.0)
        t = np.linspace(-length / 2, length / 2, 40)
        _draw_path(img, cx + t * np.cos(angle), cy + t * np.sin(angle), 0.6)
    elif label == 2:  # dent
        sigma = rng.uniform(1.8, 3.2)
        img -= 0.6 * np.exp(-((_XX - cx) ** 2 + (_YY - cy) ** 2) / (2 * sigma**2))
    elif label == 3:  # crack: a continuous fissure along a random walk
        steps = rng.normal(0.0, 1.0, (int(rng.integers(14, 22)), 2)) + rng.normal(0.0, 0.7, 2)
        path = np.vstack([[cx, cy], np.array([cx, cy]) + np.cumsum(steps, axis=0)])
        t = np.linspace(0.0, len(path) - 1.0, 4 * len(path))
        knots = np.arange(len(path))
        _draw_path(img, np.interp(t, knots, path[:, 0]), np.interp(t, knots, path[:, 1]), -0.6)


def sample_images(rng: np.random.Generator, camera: RobotCamera, labels: np.ndarray) -> np.ndarray:
    """Flat normalised frames ``(n, 1024)`` of parts with the given labels, through ``camera``."""
    out = np.empty((len(labels), IMAGE_PIXELS), dtype=np.float32)
    light = camera.light_slope * (_XX - IMAGE_SIDE / 2)
    for i, label in enumerate(labels.tolist()):
        img = _background(rng, camera.step)
        _defect(rng, img, label)
        img = img * camera.gain + camera.offset + light + rng.normal(0.0, camera.noise, img.shape)
        out[i] = ((np.clip(img, 0.0, 1.0) - 0.5) / 0.25).ravel()
    return out


def generate(
    rng: np.random.Generator,
    steps_of: dict[str, int],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_samples_per_step: int,
) -> tuple[dict[int, TaskData], dict[str, RobotCamera]]:
    """Every robot's collected frames, grouped into one task per production step with its own test set."""
    local: dict[int, dict[str, LocalData]] = {s: {} for s in sorted(set(steps_of.values()))}
    cameras: dict[str, RobotCamera] = {}
    for agent_id in sorted(steps_of):
        camera = make_camera(rng, steps_of[agent_id], dirichlet_alpha)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=camera.class_probs)
        local[camera.step][agent_id] = LocalData(
            torch.from_numpy(sample_images(rng, camera, labels)), torch.from_numpy(labels)
        )
        cameras[agent_id] = camera
    tasks: dict[int, TaskData] = {}
    uniform = np.full(len(CLASSES), 1 / len(CLASSES))
    for step, data in local.items():
        xs, ys = [], []
        per_camera = max(1, test_samples_per_step // 10)
        for _ in range(10):
            camera = make_camera(rng, step, dirichlet_alpha=50.0)
            labels = rng.choice(len(CLASSES), size=per_camera, p=uniform)
            xs.append(torch.from_numpy(sample_images(rng, camera, labels)))
            ys.append(torch.from_numpy(labels))
        tasks[step] = TaskData(data, torch.cat(xs), torch.cat(ys), CLASSES, RAW_SAMPLE_BITS)
    return tasks, cameras


def sensor_stream(rng: np.random.Generator, camera: RobotCamera, n: int) -> tuple[torch.Tensor, torch.Tensor]:
    """What a robot's camera will see during a run: ``n`` frames with their true class."""
    labels = rng.choice(len(CLASSES), size=n, p=camera.class_probs)
    return torch.from_numpy(sample_images(rng, camera, labels)), torch.from_numpy(labels)
