"""Draw a model's static map features (:mod:`twin.map_features`) and their legend entries."""

from __future__ import annotations

from typing import Any

from matplotlib.axes import Axes
from matplotlib.lines import Line2D
from matplotlib.patches import Patch, Polygon

from twin.map_features import MapFeature


def map_features(twin: Any) -> list[MapFeature]:
    """The features a model asks to be drawn (none for a model without ``map_features``)."""
    return list(getattr(twin, "map_features", ()))


def draw_features(ax: Axes, twin: Any) -> None:
    """Pastures as light filled areas, footprints as dashed outlines, over the coverage layer."""
    for feature in map_features(twin):
        if feature.kind == "footprint":
            patch = Polygon(
                feature.outline_m,
                closed=True,
                fill=False,
                edgecolor=feature.colour,
                linewidth=1.8,
                linestyle="--",
                hatch="..",
                zorder=1.4,
            )
        else:
            patch = Polygon(
                feature.outline_m,
                closed=True,
                facecolor=feature.colour,
                alpha=0.18,
                edgecolor=feature.colour,
                linewidth=1.0,
                zorder=1.3,
            )
        patch.set_clip_on(True)
        ax.add_patch(patch)


def feature_handles(twin: Any) -> list[Line2D | Patch]:
    """One legend entry per feature label."""
    handles: list[Line2D | Patch] = []
    seen: set[str] = set()
    for feature in map_features(twin):
        if feature.label in seen:
            continue
        seen.add(feature.label)
        if feature.kind == "footprint":
            handles.append(
                Line2D([], [], color=feature.colour, linestyle="--", linewidth=1.8, label=feature.label)
            )
        else:
            handles.append(
                Patch(facecolor=feature.colour, alpha=0.4, edgecolor=feature.colour, label=feature.label)
            )
    return handles
