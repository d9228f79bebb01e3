"""Watch a scenario run: the Solara app of ``twin viz`` (Mesa's SolaraViz, a SpaceRenderer map, live KPIs)."""
