"""Deployment layouts shared by the use cases."""

from __future__ import annotations

import math

from twin.settings import AreaConfig


def grid_base_stations(area: AreaConfig) -> list[tuple[float, float]]:
    """Base-station sites on a near-square grid covering the area, one per grid cell centre."""
    n = area.base_stations
    cols = math.ceil(math.sqrt(n * area.width_m / area.height_m))
    rows = math.ceil(n / cols)
    sites: list[tuple[float, float]] = []
    for r in range(rows):
        in_row = min(cols, n - r * cols)
        for c in range(in_row):
            sites.append(((c + 0.5) * area.width_m / in_row, (r + 0.5) * area.height_m / rows))
    return sites
