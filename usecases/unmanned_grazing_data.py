"""Synthetic unmanned-grazing task (paper §2.3.5): count animals and spot sick ones in camera frames.

Each sample is one detection window of a camera post or a herding drone, as on-board preprocessing
summarises it: a thermal profile (6 points, °C above ambient), gait features (6: stride regularity and
left/right asymmetry from a few seconds of video) and a 12-d visual descriptor (a fixed projection of
latent factors: animal present, coat condition, body size, illumination). Classes:

- ``background`` — grass, rocks, a shadow: no animal (what herd counting must not count);
- ``healthy``;
- ``lame`` — irregular, asymmetric gait;
- ``fever`` — warm body (respiratory or other infection);
- ``parasites`` — patchy coat, frequent scratching (pests, paper §2.3.5.3: 病虫害).

Herd **counting** is the number of windows classified as an animal; **sick-animal detection** is the
recall of the three sick classes. Non-IID: each device watches its own pasture (steppe, hills,
wetland: the class mix differs), with its own camera gain and offset; drones see fewer background
windows than fixed cameras. A second herder's farm (model sharing) lies in another region, ``valley``,
with a bigger breed and other cameras: the same task under a moderate shift.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from torch import nn
from torch.func import functional_call

from twin.learning.cohort import LocalData, Params
from twin.learning.task import TaskData

CLASSES = ("background", "healthy", "lame", "fever", "parasites")
SICK = (2, 3, 4)
THERMAL_POINTS = 6
GAIT_POINTS = 6
VISUAL_DIM = 12
FEATURES = THERMAL_POINTS + GAIT_POINTS + VISUAL_DIM
RAW_SAMPLE_BITS = 640 * 480 * 3 * 8 // 20  # one compressed camera frame (~369 kbit)
REGIONS = {
    "steppe": np.array([0.35, 0.45, 0.07, 0.07, 0.06]),
    "hills": np.array([0.30, 0.40, 0.15, 0.08, 0.07]),
    "wetland": np.array([0.30, 0.38, 0.06, 0.10, 0.16]),
    "valley": np.array([0.30, 0.40, 0.10, 0.10, 0.10]),
}
HOME_REGIONS = ("steppe", "hills", "wetland")
_PROJECTION = np.random.default_rng(20240235).normal(0.0, 1.0, (VISUAL_DIM, 4))  # the "camera model"


@dataclass(frozen=True, slots=True)
class Site:
    """What one device watches: its region's class mix, its camera, the breed's body size."""

    region: str
    class_probs: np.ndarray
    camera_gain: float
    camera_offset: float
    illumination: float
    body_size: float


def make_site(
    rng: np.random.Generator,
    dirichlet_alpha: float,
    *,
    region: str | None = None,
    background_share: float = 1.0,
) -> Site:
    """Draw a site: a region (given or one of the home regions), a skewed class mix, a camera."""
    name = region or str(rng.choice(HOME_REGIONS))
    prior = REGIONS[name].copy()
    prior[0] *= background_share
    prior /= prior.sum()
    return Site(
        region=name,
        class_probs=rng.dirichlet(dirichlet_alpha * prior * len(prior)),
        camera_gain=float(rng.normal(1.3 if name == "valley" else 1.0, 0.08)),
        camera_offset=float(rng.normal(0.4 if name == "valley" else 0.0, 0.15)),
        illumination=float(rng.uniform(0.3, 1.0)),
        body_size=1.4 if name == "valley" else 1.0,
    )


def sample_windows(rng: np.random.Generator, site: Site, labels: np.ndarray) -> np.ndarray:
    """Feature vectors ``(n, FEATURES)`` of detection windows with the given labels."""
    n = len(labels)
    animal = (labels > 0).astype(float)
    thermal = rng.normal(0.0, 0.6, (n, THERMAL_POINTS)) + animal[:, None] * 8.0
    gait = rng.normal(0.0, 0.3, (n, GAIT_POINTS)) + animal[:, None] * 1.0
    coat = np.where(labels > 0, rng.normal(1.0, 0.1, n), 0.0)
    for i in np.flatnonzero(labels == 2):  # lame: an irregular, asymmetric stride
        gait[i, :3] += rng.uniform(1.0, 2.0)
        gait[i, 3:] -= rng.uniform(0.5, 1.5)
    for i in np.flatnonzero(labels == 3):  # fever
        thermal[i] += rng.uniform(2.0, 4.0)
    for i in np.flatnonzero(labels == 4):  # parasites: patchy coat
        coat[i] = rng.uniform(0.0, 0.3)
        gait[i, ::2] += rng.uniform(0.5, 1.0)  # scratching: a jerky, even-beat motion
    size = animal * site.body_size * rng.normal(1.0, 0.1, n)
    illumination = site.illumination + rng.normal(0, 0.05, n)
    latent = np.stack([animal, coat, size, illumination], axis=1)
    visual = latent @ _PROJECTION.T + rng.normal(0, 0.3, (n, VISUAL_DIM))
    visual = visual * site.camera_gain + site.camera_offset
    return np.concatenate([thermal / 5.0, gait, visual / 2.0], axis=1)


def generate(
    rng: np.random.Generator,
    agent_ids: list[str],
    *,
    drones: set[str],
    samples_min: int,
    samples_max: int,
    dirichlet_alpha: float,
    test_samples: int,
) -> tuple[TaskData, dict[str, Site]]:
    """Every device's labelled windows and the held-out test set over the home regions."""
    local: dict[str, LocalData] = {}
    sites: dict[str, Site] = {}
    for agent_id in agent_ids:
        site = make_site(rng, dirichlet_alpha, background_share=0.4 if agent_id in drones else 1.0)
        n = int(rng.integers(samples_min, samples_max + 1))
        labels = rng.choice(len(CLASSES), size=n, p=site.class_probs)
        local[agent_id] = LocalData(_tensor(sample_windows(rng, site, labels)), torch.from_numpy(labels))
        sites[agent_id] = site
    x, y = _balanced(rng, HOME_REGIONS, test_samples)
    return TaskData(local, x, y, CLASSES, RAW_SAMPLE_BITS), sites


def farm_data(
    rng: np.random.Generator, *, region: str, devices: int, samples_per_device: int, test_samples: int
) -> tuple[list[LocalData], torch.Tensor, torch.Tensor]:
    """A second herder's farm: its devices' windows (each its own site) and its own held-out test set."""
    local = []
    for _ in range(devices):
        site = make_site(rng, dirichlet_alpha=2.0, region=region)
        labels = rng.choice(len(CLASSES), size=samples_per_device, p=site.class_probs)
        local.append(LocalData(_tensor(sample_windows(rng, site, labels)), torch.from_numpy(labels)))
    x, y = _balanced(rng, (region,), test_samples)
    return local, x, y


def _balanced(
    rng: np.random.Generator, regions: tuple[str, ...], n: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """A test set: 20 sites over ``regions``, classes equally likely."""
    xs, ys = [], []
    per_site = max(1, n // 20)
    for i in range(20):
        site = make_site(rng, dirichlet_alpha=50.0, region=regions[i % len(regions)])
        labels = rng.choice(len(CLASSES), size=per_site, p=np.full(len(CLASSES), 1 / len(CLASSES)))
        xs.append(_tensor(sample_windows(rng, site, labels)))
        ys.append(torch.from_numpy(labels))
    return torch.cat(xs), torch.cat(ys)


@torch.no_grad()
def herd_metrics(net: nn.Module, params: Params, x: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    """Herd counting error (|counted − true animals| ÷ true animals) and sick-animal recall."""
    predicted = functional_call(net, params, (x,)).argmax(dim=1)
    true_animals = int((y > 0).sum())
    counted = int((predicted > 0).sum())
    sick = torch.isin(y, torch.tensor(SICK))
    caught = torch.isin(predicted[sick], torch.tensor(SICK))
    return {
        "count_error": abs(counted - true_animals) / max(1, true_animals),
        "sick_recall": float(caught.float().mean()) if bool(sick.any()) else float("nan"),
    }


def _tensor(features: np.ndarray) -> torch.Tensor:
    return torch.from_numpy(features.astype(np.float32))
