"""Synthetic learner-engagement task (paper §2.3.7): what a VR/AR headset senses of its learner.

A sample is a window of ``WINDOW`` steps (a few seconds each) of ``CHANNELS`` signals a headset and its
learning app see: gaze on the lesson content (share), gaze dispersion, head motion, blink rate, facial
action units AU4 (brow lowerer) and AU12 (lip-corner puller, from the headset's face cameras), the time
to answer an interaction (s) and the share of wrong answers. Classes (the paper: whether learners are
"confused, bored or frustrated"): ``engaged``, ``bored``, ``confused``, ``frustrated``.

Non-IID: each learner has their own expressiveness (a gain per channel), baseline (an offset), noise and
state mix (Dirichlet around the classroom's prior); a harder subject (a classroom's ``difficulty``)
shifts its prior towards ``confused`` and ``frustrated``. Held-out learners of the school make the test
set; the **developer's data** for model generation comes from separate, consenting pilot learners
(desensitised feature windows, no video). Every signal varies in time as an AR(1) process around its
state's level; all draws are array operations.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from twin.learning.cohort import LocalData
from twin.learning.task import TaskData

CLASSES = ("engaged", "bored", "confused", "frustrated")
WINDOW = 8
CHANNELS = 8
IN_FEATURES = WINDOW * CHANNELS
RAW_SAMPLE_BITS = IN_FEATURES * 16  # 16-bit readings
NOISE = 1.4
PRIOR = np.array([0.55, 0.2, 0.15, 0.1])
# Level of each channel (columns) in each state (rows): gaze-on, dispersion, head motion, blinks/min,
# AU4, AU12, answer time (s), wrong-answer share.
_LEVELS = np.array(
    [
        [0.85, 0.20, 0.30, 15.0, 0.10, 0.50, 2.0, 0.10],
        [0.45, 0.60, 0.15, 22.0, 0.10, 0.10, 5.0, 0.30],
        [0.70, 0.45, 0.35, 18.0, 0.60, 0.15, 6.0, 0.50],
        [0.60, 0.50, 0.70, 25.0, 0.70, 0.05, 3.0, 0.60],
    ]
)
_SCALE = np.array([0.25, 0.2, 0.25, 6.0, 0.3, 0.25, 2.0, 0.25])
_CENTER = _LEVELS.mean(axis=0)


@dataclass(frozen=True, slots=True)
class Learner:
    """One learner's expressiveness, baseline, noise and state mix."""

    gain: np.ndarray
    offset: np.ndarray
    noise: float
    class_probs: np.ndarray


def make_learner(rng: np.random.Generator, prior: np.ndarray, dirichlet_alpha: float) -> Learner:
    """Draw a learner around a classroom's state prior."""
    return Learner(
        gain=rng.normal(1.0, 0.15, CHANNELS),
        offset=rng.normal(0.0, 0.12, CHANNELS) * _SCALE,
        noise=float(rng.uniform(0.6, 1.4)),
        class_probs=rng.dirichlet(dirichlet_alpha * prior * len(prior)),
    )


def classroom_prior(difficulty: float) -> np.ndarray:
    """The state prior of a classroom: harder subjects move mass from ``engaged`` to confusion."""
    shift = np.array([-0.3, 0.0, 0.2, 0.1]) * difficulty
    probs = np.clip(PRIOR + shift, 0.02, None)
    return probs / probs.sum()


def windows(rng: np.random.Generator, learner: Learner, labels: np.ndarray) -> torch.Tensor:
    """Normalised feature windows ``(n, IN_FEATURES)`` (time-major) of ``learner`` in states ``labels``."""
    n = len(labels)
    level = _LEVELS[labels] * learner.gain + learner.offset  # (n, C)
    noise = rng.normal(0.0, NOISE * learner.noise, (n, WINDOW, CHANNELS)) * _SCALE
    ar = np.empty_like(noise)
    ar[:, 0] = noise[:, 0]
    for t in range(1, WINDOW):  # AR(1) in time; WINDOW steps, vectorised over samples and channels
        ar[:, t] = 0.6 * ar[:, t - 1] + 0.8 * noise[:, t]
    raw = level[:, None, :] + ar
    feats = (raw - _CENTER) / _SCALE
    return torch.from_numpy(feats.reshape(n, IN_FEATURES).astype(np.float32))


@dataclass(frozen=True, slots=True)
class ClassroomData:
    """Everything the scenario draws: the federated task, the learners, the developer's pilot data."""

    task: TaskData
    learners: dict[str, Learner]
    pilot_x: torch.Tensor
    pilot_y: torch.Tensor


def generate(
    rng: np.random.Generator,
    terminal_ids: list[str],
    classroom_of: dict[str, int],
    difficulties: list[float],
    *,
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_learners: int,
    test_samples_per_learner: int,
    pilot_learners: int,
    pilot_samples_per_learner: int,
) -> ClassroomData:
    """Each terminal's local data, the school's held-out learners, and the developer's pilot data."""
    local: dict[str, LocalData] = {}
    learners: dict[str, Learner] = {}
    for agent_id in terminal_ids:
        learner = make_learner(rng, classroom_prior(difficulties[classroom_of[agent_id]]), dirichlet_alpha)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=learner.class_probs)
        local[agent_id] = LocalData(windows(rng, learner, labels), torch.from_numpy(labels))
        learners[agent_id] = learner

    def pooled(count: int, per_learner: int) -> tuple[torch.Tensor, torch.Tensor]:
        xs, ys = [], []
        for _ in range(count):
            learner = make_learner(rng, PRIOR, dirichlet_alpha=50.0)  # the school's mix, not one learner's
            labels = rng.choice(len(CLASSES), size=per_learner, p=PRIOR)
            xs.append(windows(rng, learner, labels))
            ys.append(torch.from_numpy(labels))
        return torch.cat(xs), torch.cat(ys)

    test_x, test_y = pooled(test_learners, test_samples_per_learner)
    pilot_x, pilot_y = pooled(pilot_learners, pilot_samples_per_learner)
    task = TaskData(local, test_x, test_y, CLASSES, RAW_SAMPLE_BITS)
    return ClassroomData(task, learners, pilot_x, pilot_y)


def lesson_stream(
    rng: np.random.Generator, learner: Learner, n_windows: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """What a headset senses during the lesson: ``n_windows`` windows and the learner's true states.

    States persist (a learner stays bored for a while): each window keeps the previous state with
    probability 0.7, else draws a new one from the learner's mix.
    """
    draws = rng.choice(len(CLASSES), size=n_windows, p=learner.class_probs)
    keep = rng.random(n_windows) < 0.7
    labels = draws.copy()
    for t in range(1, n_windows):
        if keep[t]:
            labels[t] = labels[t - 1]
    return windows(rng, learner, labels), torch.from_numpy(labels)
