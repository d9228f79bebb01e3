"""When the page redraws its figures: every update, unless updates come faster than figures can be drawn.

Mesa's SolaraViz signals an update after every step (Step, and each step of ▶). Redrawing the map and
the plots costs tens to hundreds of milliseconds, far more than most simulated seconds, so redrawing on
every update made a second in the page cost up to 40× a second of ``twin run``. A :class:`FrameGate`
turns updates into *frames*: an update starts a new frame (the figures redraw) only once drawing has
taken no more than :attr:`FrameGate.share` of the wall-clock since the last frame began (and at least
:attr:`FrameGate.min_interval_s` has passed); otherwise the update is held and :meth:`FrameGate.due_in`
says when a frame may follow, at most :attr:`FrameGate.max_wait_s` after the frame before, so the last
state is always drawn (the page schedules that redraw; :mod:`twin.viz.feed`).

A frame of a live run is drawn while the run may be stepping in another thread: :func:`reading` holds
the run's lock for the part of a frame that reads the run.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from contextlib import AbstractContextManager, nullcontext
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_SHARE = 0.2  # at most this share of the wall-clock goes to drawing figures while steps stream in
MAX_WAIT_S = 2.0  # a held update is drawn at most this long after the frame before it


class FrameGate:
    """Decides which page updates redraw the figures and measures what drawing costs."""

    def __init__(
        self,
        share: float = DEFAULT_SHARE,
        clock: Callable[[], float] = time.monotonic,
        *,
        min_interval_s: float = 0.0,
        max_wait_s: float = MAX_WAIT_S,
    ) -> None:
        """A gate letting figures take at most ``share`` (0 < share ≤ 1) of the wall-clock.

        Frames begin at least ``min_interval_s`` apart, and a held update waits at most ``max_wait_s``
        after the frame before it (whichever is longer).

        Raises:
            ValueError: ``share`` outside (0, 1].
        """
        if not 0.0 < share <= 1.0:
            raise ValueError(f"share must be in (0, 1], got {share}")
        self.share = share
        self.min_interval_s = min_interval_s
        self.max_wait_s = max_wait_s
        self._clock = clock
        self.frame = 0
        self._update: object = object()
        self._started = -float("inf")
        self._cost = 0.0
        self.pending = False

    def admit(self, update: object, *, force: bool = False) -> int:
        """The frame to show for page update ``update``: a new one if drawing may now happen, or ``force``."""
        if update == self._update:
            return self.frame
        self._update = update
        now = self._clock()
        if force or now >= self._next_at():
            self.frame += 1
            self._started, self._cost, self.pending = now, 0.0, False
        else:
            self.pending = True
        return self.frame

    def restart(self) -> None:
        """Updates resume after a pause: count the interval to the next frame from now, as after a frame."""
        self._started, self._cost = self._clock(), 0.0

    def due_in(self) -> float | None:
        """Seconds until a held update may be drawn (0: now); None when no update is held."""
        if not self.pending:
            return None
        return max(0.0, self._next_at() - self._clock())

    def timed(self, draw: Callable[[], T]) -> T:
        """Run ``draw`` (part of the current frame) and count its wall-clock as the frame's cost."""
        started = self._clock()
        try:
            return draw()
        finally:
            self._cost += self._clock() - started

    @property
    def cost_s(self) -> float:
        """What drawing the current frame has cost so far (seconds)."""
        return self._cost

    def _next_at(self) -> float:
        wait = min(self._cost / self.share, self.max_wait_s)
        return self._started + max(wait, self.min_interval_s)


def reading(model: object) -> AbstractContextManager[Any]:
    """Hold ``model``'s ``lock`` (a live run holds it while it steps) to read a consistent state.

    A model without a lock (a replay, which only one thread moves) needs none.
    """
    lock = getattr(model, "lock", None)
    return lock if lock is not None else nullcontext()
