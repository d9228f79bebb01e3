"""Static areas a scenario asks the map to draw under its agents (pastures, a satellite footprint).

Pure data (no matplotlib): a model exposes ``map_features``, a list of :class:`MapFeature`, and the
visualisation (:mod:`twin.viz.features`) draws them with the coverage layer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

import numpy as np
import numpy.typing as npt

FeatureKind = Literal["area", "footprint"]


@dataclass(frozen=True, slots=True, eq=False)
class MapFeature:
    """A closed outline on the map: a filled ``area`` (a pasture) or a dashed ``footprint``."""

    label: str
    """Legend entry (features with the same label share one)."""
    outline_m: npt.NDArray[np.float64]
    """Polygon ``(N, 2)`` in the area's metres; the map clips it to the area."""
    kind: FeatureKind = "area"
    colour: str = "#6b8e23"

    def __post_init__(self) -> None:
        if self.outline_m.ndim != 2 or self.outline_m.shape[1] != 2 or self.outline_m.shape[0] < 3:
            raise ValueError(f"a map feature needs an (N >= 3, 2) outline, got shape {self.outline_m.shape}")


def rectangle(x0: float, y0: float, x1: float, y1: float) -> npt.NDArray[np.float64]:
    """The outline of an axis-aligned rectangle."""
    return np.array([[x0, y0], [x1, y0], [x1, y1], [x0, y1]], dtype=float)
