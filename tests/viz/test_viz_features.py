"""Static map features: unmanned-grazing's pasture paddocks and satellite footprint reach the map."""

from __future__ import annotations

from matplotlib.patches import Polygon

from twin.viz.live import LiveScenario
from twin.viz.map import CoverageMapRenderer, legend_handles


def test_the_pasture_and_the_satellite_footprint_are_drawn() -> None:
    """The grazing map holds one patch per paddock plus the footprint, each with a legend entry."""
    # Prepare
    live = LiveScenario(
        scenario_name="unmanned-grazing", broker="local", overrides="devices.drones=2; devices.cameras=2"
    )
    try:
        assert live.twin is not None, live.error
        renderer = CoverageMapRenderer(live)
        # Execute
        png = renderer.frame_png()
        labels = [h.get_label() for h in legend_handles(live)]
        patches = [p for p in renderer.canvas.patches if isinstance(p, Polygon)]
    finally:
        live.close()
    # Assert
    assert png.startswith(b"\x89PNG")
    assert "pasture paddock" in labels
    assert any(label.startswith("satellite footprint") for label in labels)
    assert len(patches) == 8 + 1
