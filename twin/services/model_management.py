"""Model management (paper §2.4.7, §4.3 model maintenance): monitor a deployed model, re-train on drift.

After each deployment the :class:`DriftMonitor` takes the accuracy of the model on its first
``window_cases`` labelled cases as the **reference**, then checks every later window of the most
recent labelled cases; when the recent accuracy falls more than ``drop_threshold`` below the reference
it raises an alarm, naming the first tick of the degraded window (from where fresh data is worth
training on). The scenario then collects ``fresh_ticks`` more ticks of labelled cases and re-trains;
the re-trained model is deployed and the monitor is armed again. :func:`model_management_report` is
the service's QoAIS: did it detect, how fast, how deep the dip and how far the recovery. Pure.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np

from twin.config import check_positive, check_range
from twin.qoais import Indicator, ServiceReport, autonomy_indicator


@dataclass(frozen=True, slots=True)
class ModelManagementConfig:
    """When the monitor raises an alarm and how re-training is prepared."""

    enabled: bool = True
    """Whether drift re-triggers training (off: the model deployed first is kept)."""
    window_cases: int = 240
    """Most recent labelled cases the accuracy is measured on."""
    drop_threshold: float = 0.12
    """Accuracy drop below the reference that raises the alarm, in (0, 1)."""
    fresh_ticks: int = 3
    """Ticks of fresh labelled cases collected after an alarm before re-training starts."""

    def __post_init__(self) -> None:
        check_positive("management", window_cases=self.window_cases)
        check_range("management", "drop_threshold", self.drop_threshold, 1e-6, 1.0)
        check_range("management", "fresh_ticks", self.fresh_ticks, 0, 1e6)


@dataclass(frozen=True, slots=True)
class ModelManagementTargets:
    """QoAIS targets of model management."""

    detection_delay_s: float = 60.0
    """Time from the drift to the alarm, at most."""
    recovered_accuracy: float = 0.8
    """Monitored accuracy after re-training, at least."""
    autonomy: Literal["full", "partial", "human"] = "full"
    """Autonomy the service must offer (re-training without a human)."""

    def __post_init__(self) -> None:
        check_positive("management_qoais", detection_delay_s=self.detection_delay_s)
        check_range("management_qoais", "recovered_accuracy", self.recovered_accuracy, 0.0, 1.0)


@dataclass(frozen=True, slots=True)
class DriftCheck:
    """One check of the monitor."""

    accuracy: float  # over the window (NaN until it is full)
    reference: float  # NaN until the reference window is full
    alarm: bool
    since_tick: int | None  # first tick of the degraded window when ``alarm``


class DriftMonitor:
    """Accuracy of a deployed model on its most recent labelled cases, against its own reference."""

    def __init__(self, config: ModelManagementConfig) -> None:
        self.config = config
        self._window: deque[tuple[int, bool]] = deque(maxlen=config.window_cases)
        self.reference = math.nan
        self.armed = False

    def arm(self) -> None:
        """A model was (re-)deployed: forget the window; the next full one becomes the reference."""
        self._window.clear()
        self.reference = math.nan
        self.armed = True

    def observe(self, tick: int, correct: Sequence[bool]) -> DriftCheck:
        """Add the labelled cases of ``tick`` (was the deployed model right?) and check for drift."""
        self._window.extend((tick, bool(c)) for c in correct)
        full = len(self._window) == self._window.maxlen
        accuracy = float(np.mean([c for _, c in self._window])) if full else math.nan
        if not self.armed or not full:
            return DriftCheck(accuracy, self.reference, False, None)
        if math.isnan(self.reference):
            self.reference = accuracy
            self._window.clear()
            return DriftCheck(accuracy, self.reference, False, None)
        alarm = accuracy < self.reference - self.config.drop_threshold
        if alarm:
            self.armed = False
        return DriftCheck(accuracy, self.reference, alarm, self._window[0][0] if alarm else None)


def model_management_report(
    service: str,
    rows: Sequence[Mapping[str, Any]],
    targets: ModelManagementTargets,
    *,
    drift_at_s: float | None,
) -> ServiceReport:
    """QoAIS of model management from its check rows (one per tick: accuracy, alarm, retraining)."""
    if not rows:
        return ServiceReport(service, "model management", (), ("no check made: nothing to assess",))
    alarms = [r for r in rows if r["alarm"]]
    retrains = sum(bool(r["retrain_started"]) for r in rows)
    accuracy = np.array([float(r["tick_accuracy"]) for r in rows])
    notes = [f"checks: {len(rows)}; alarms: {len(alarms)}; re-trainings started: {retrains}"]
    indicators: list[Indicator] = []
    if drift_at_s is not None and any(float(r["sim_time_s"]) >= drift_at_s for r in rows):
        after = [r for r in alarms if float(r["sim_time_s"]) >= drift_at_s]
        delay = float(after[0]["sim_time_s"]) - drift_at_s if after else math.nan  # n/a: never detected
        indicators.append(
            Indicator(
                "performance",
                "drift_detection_delay",
                delay,
                targets.detection_delay_s,
                " s",
                "max",
                f"population drift at {drift_at_s:g} s; alarm on the recent labelled cases' accuracy",
            )
        )
        before = accuracy[[float(r["sim_time_s"]) < drift_at_s for r in rows]]
        notes.append(
            f"accuracy before the drift {np.nanmean(before) if len(before) else math.nan:.3f}, "
            f"lowest after it {np.nanmin(accuracy[len(before) :]):.3f}"
        )
    tail = accuracy[-max(1, len(accuracy) // 5) :]
    indicators.append(
        Indicator(
            "performance",
            "accuracy_at_end",
            float(np.nanmean(tail)),
            targets.recovered_accuracy,
            "",
            "min",
            f"deployed edge model on the labelled cases of the last {len(tail)} ticks",
        )
    )
    indicators.append(autonomy_indicator(("full", "partial"), targets.autonomy))
    return ServiceReport(service, "model management", tuple(indicators), tuple(notes))
