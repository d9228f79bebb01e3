"""How far a run is: what ``twin run``'s progress line, the visualisation and ``twin watch`` count.

Most scenarios count federated rounds against ``model.rounds_limit``. A scenario whose service serves
in ticks (one with ``progress() -> (done, total)``, e.g. disease-diagnosis) has no rounds limit: its
``--rounds`` sets the ticks, and its training rounds run within them. Everything that shows progress
goes through :func:`run_progress` (a run in hand) or :func:`stream_progress` (a run seen on its MQTT
stream), so that a tick count is never paired with a training round, nor a limit shown as ``None``.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class RunProgress:
    """Progress of a run: ``done`` of ``total`` (``None``: no limit) in ``unit``, and the rounds done."""

    unit: str
    """``round`` or ``tick``."""
    done: int
    total: int | None
    rounds: int
    """Training rounds done (the same as ``done`` when the unit is ``round``)."""

    @property
    def ticked(self) -> bool:
        """Whether the run counts ticks (its training rounds run within them)."""
        return self.unit == "tick"

    def text(self, *, round_word: str = "round", sep: str = "  ") -> str:
        """``tick 3/40  round 1``, ``round 2/5`` or ``round 2`` (no limit)."""
        if self.ticked:
            total = f"/{self.total}" if self.total is not None else ""
            return f"tick {self.done}{total}{sep}{round_word} {self.rounds}"
        total = f"/{self.total}" if self.total is not None else ""
        return f"{round_word} {self.done}{total}"


def ticked_service(model: Any) -> Any:
    """The service whose ticks ``--rounds`` counts (one with ``progress() -> (done, total)``), if any."""
    return next((s for s in model.services if callable(getattr(s, "progress", None))), None)


def rounds_done(model: Any) -> int:
    """Training rounds done: the network's count when there is one, else the KPI records."""
    network = getattr(model, "network", None)
    if network is not None and isinstance(getattr(network, "rounds_done", None), int):
        return int(network.rounds_done)
    return len(model.kpi_rows)


def run_progress(model: Any) -> RunProgress:
    """The progress of ``model`` now: its ticked service's ticks, else its rounds against its limit."""
    rounds = rounds_done(model)
    service = ticked_service(model)
    if service is not None:
        done, total = service.progress()
        return RunProgress("tick", int(done), int(total), rounds)
    return RunProgress("round", rounds, model.rounds_limit, rounds)


def limit_unit(rounds_key: str) -> str:
    """What the limit set by the config key ``rounds_key`` counts: ``tick`` (``….ticks``), else ``round``."""
    return "tick" if rounds_key.rsplit(".", 1)[-1] == "ticks" else "round"


def meta_unit(meta: dict[str, Any]) -> str:
    """What the ``rounds_limit`` of a run's meta counts: ``tick`` or ``round``.

    A run's meta names it (``progress_unit``). Runs from before that field: the run set the limit to the
    value of its scenario's rounds key (``--rounds``), ``fl.rounds`` for federated rounds, a ``….ticks``
    key for a scenario that serves in ticks, so a ``….ticks`` setting equal to the limit says ticks.
    """
    unit = meta.get("progress_unit")
    if unit in ("tick", "round"):
        return str(unit)
    limit = meta.get("rounds_limit")
    config = meta.get("config")
    if isinstance(limit, int) and not isinstance(limit, bool) and isinstance(config, dict):
        for key, value in config.items():
            if limit_unit(str(key)) == "tick" and value == limit and not isinstance(value, bool):
                return "tick"
    return "round"


def stream_progress(meta: dict[str, Any], rounds: int, ticks_started: int | None) -> RunProgress:
    """The progress of a run seen on its stream (``twin watch``): its service's ticks, else its rounds.

    Args:
        meta: the run's meta (``{}`` before it arrived).
        rounds: training rounds recorded (the latest KPI record's round, or the final status').
        ticks_started: ticks seen so far (the latest tick message's index + 1); ``None``: none seen.
    """
    limit = meta.get("rounds_limit")
    total = limit if isinstance(limit, int) and not isinstance(limit, bool) else None
    if meta_unit(meta) == "tick":
        return RunProgress("tick", ticks_started or 0, total, rounds)
    return RunProgress("round", rounds, total, rounds)
