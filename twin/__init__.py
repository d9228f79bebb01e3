"""aiaas-twin core: model and clock, config, radio, KPIs, learning, telemetry, CLI."""
