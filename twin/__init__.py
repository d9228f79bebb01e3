"""aiaas-twin core: model and clock, config, radio, KPIs, learning, telemetry, CLI.

The Python API (:mod:`twin.api`) is importable from here and loaded on first use, so ``import twin``
stays light (no torch, no Mesa)::

    import twin
    result = twin.run("home-health", seed=0, rounds=2, overrides={"devices.count": 30})
    result.kpis, result.requests, result.events, result.qoais, result.summary, result.run_dir
    twin.load_run(result.run_dir)
    twin.scenarios()
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from twin.api import Run, config_keys, load_run, run, scenarios

__all__ = ["Run", "config_keys", "load_run", "run", "scenarios"]


def __getattr__(name: str) -> Any:
    """The API's names, imported from :mod:`twin.api` when first asked for."""
    if name in __all__:
        from twin import api

        return getattr(api, name)
    raise AttributeError(f"module 'twin' has no attribute {name!r}")


def __dir__() -> list[str]:
    return sorted([*globals(), *__all__])
