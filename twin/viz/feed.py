"""What the live page's panels show, and when each of them renders again.

Mesa's SolaraViz signals every step with its shared ``update_counter``. Components that read that counter
re-render on every step, and with them every component below them, whether or not what they show has
changed. A :class:`LiveFeed` instead follows the counter itself and keeps what each panel shows in a
reactive value of its own. A panel reads only its own value, so a step re-renders a panel only when
what it shows has changed (Solara compares the old and the new value):

- on every update, right after the step, in the thread that stepped: the run's status lines (cheap),
  at most every :data:`STATUS_INTERVAL_S` while steps stream in (each map frame sets them too, so the
  last update's status is always shown);
- in a drawing thread of the feed's own, so that drawing never holds up a step: the map, on the frames
  its :class:`~twin.viz.frames.FrameGate` admits, and the plots whose data changed
  (:func:`~twin.viz.plots.data_version`) with the QoAIS panel, on the frames of a second, slower gate.
  While steps stream in (▶, or quick clicks on Step), drawing the map takes at most
  :data:`MAP_SHARE` of the wall-clock and the plots at most :data:`PLOT_SHARE`, at least
  :data:`PLOT_INTERVAL_S` apart; once no update has come for :data:`QUIET_S`, the last one is drawn
  at once, whatever the gates say. The figures are updated rather than drawn anew: the map and each plot
  keep the pixels of what does not move (:class:`~twin.viz.map.CoverageMapRenderer`,
  :class:`~twin.viz.plots.PlotCanvas`).

All values set together are set in one batch, so that an update costs the page one render pass.
The feed reads the model while holding its :attr:`~twin.viz.live.LiveScenario.lock`, which a step holds
too, so a frame never shows a step half done.
"""

from __future__ import annotations

import itertools
import logging
import threading
import time
from collections.abc import Callable, Hashable, Iterator
from contextlib import AbstractContextManager, contextmanager, nullcontext
from functools import partial
from typing import TYPE_CHECKING, Any

import reacton.core
import solara
from mesa.visualization.utils import update_counter

from twin.viz.frames import FrameGate, reading
from twin.viz.map import coverage_layer
from twin.viz.panels import StatusView, qoais_html, status_view
from twin.viz.plots import PLOTS, PlotCanvas, data_version

if TYPE_CHECKING:
    from twin.viz.live import LiveScenario
    from twin.viz.map import CoverageMapRenderer

log = logging.getLogger(__name__)

MAP_SHARE = 0.1  # share of the wall-clock the map may take while steps stream in
PLOT_SHARE = 0.1  # the same for the plots and the QoAIS panel together
PLOT_INTERVAL_S = 2.0  # while steps stream in, the plots redraw at least this far apart ...
PLOT_MAX_WAIT_S = 10.0  # ... and at most this far apart
QUIET_S = 0.3  # no update for this long: the steps have paused, draw everything now
STATUS_INTERVAL_S = 0.1  # while steps stream in, an update sets the status at most this often

_MAP, _PLOTS = "map", "plots"


class LiveFeed:
    """The content of the live page's panels, each in a reactive value set only when it changed."""

    def __init__(
        self, model: LiveScenario, renderer: CoverageMapRenderer, clock: Callable[[], float] = time.monotonic
    ) -> None:
        """Compute everything the panels show now and draw the first frame (in the calling thread)."""
        self.model = model
        self.renderer = renderer
        self.gates = {
            _MAP: FrameGate(MAP_SHARE, clock),
            _PLOTS: FrameGate(PLOT_SHARE, clock, min_interval_s=PLOT_INTERVAL_S, max_wait_s=PLOT_MAX_WAIT_S),
        }
        self._clock = clock
        self._versions: dict[str, Hashable] = {}
        self._canvases = {name: PlotCanvas() for name in PLOTS}
        self._cond = threading.Condition()
        self._update = 0  # page updates seen
        self._last_update_at = -float("inf")
        self._status_at = -float("inf")  # when an update last set the status
        self._resumed = False  # updates came again after a pause
        self._forced = False  # draw the map now (a new coverage layer)
        self._stopped = False
        self._drawn = {_MAP: 0, _PLOTS: 0}  # the update each part last showed
        self._drawing = False
        self._attempts = itertools.count()
        self._batch: Callable[[], AbstractContextManager[Any]] = nullcontext
        for gate in self.gates.values():
            gate.admit(next(self._attempts))
        shown = self._frame([_MAP, _PLOTS])
        self.status: solara.Reactive[StatusView] = solara.reactive(shown.pop("status"))
        self.map_png = solara.reactive(shown.pop(_MAP))
        self.qoais = solara.reactive(str(shown.pop("qoais")))
        self.plots = {name: solara.reactive(shown.pop(name)) for name in PLOTS}

    # ---- life cycle (a use_effect of the page) -----------------------------------------------------
    def follow(self) -> Callable[[], None]:
        """Follow the page's updates and the coverage layer; return what stops following them."""
        rc = reacton.core.get_render_context(required=False)
        if rc is not None:
            self._batch = partial(_batched, rc)
        unsubscribe = [update_counter.subscribe(self.on_update), coverage_layer.subscribe(self.on_layer)]
        drawer = threading.Thread(target=self._draw_frames, name="twin-viz-frames", daemon=True)
        drawer.start()

        def stop() -> None:
            for cancel in unsubscribe:
                cancel()
            with self._cond:
                self._stopped = True
                self._cond.notify_all()

        return stop

    def on_update(self, _counter: object = None) -> None:
        """After a step: the status now, in this thread; the figures when the drawing thread may.

        While steps stream in, the status is set here at most every :data:`STATUS_INTERVAL_S`; the map's
        frames set it too.
        """
        now = self._clock()
        with self._cond:
            self._update += 1
            self._resumed = self._resumed or now - self._last_update_at >= QUIET_S
            self._last_update_at = now
            status_due = now - self._status_at >= STATUS_INTERVAL_S
            if status_due:
                self._status_at = now
            self._cond.notify_all()
        if status_due:
            with reading(self.model):
                status = status_view(self.model)
            with self._batch():
                self.status.set(status)

    def settled(self) -> bool:
        """Whether the page shows the last update: every part of it drawn, and no frame in progress."""
        with self._cond:
            return min(self._drawn.values()) == self._update and not self._drawing

    def on_layer(self, _layer: object = None) -> None:
        """Another coverage layer: draw the map again now, whatever its gate says."""
        with self._cond:
            self._update += 1
            self._forced = True
            self._cond.notify_all()

    # ---- frames ----------------------------------------------------------------------------------------
    def _draw_frames(self) -> None:
        """The drawing thread: draw the latest update when the gates (or a pause) let it, until stopped."""
        while True:
            with self._cond:
                self._cond.wait_for(lambda: self._stopped or min(self._drawn.values()) != self._update)
                if self._stopped:
                    return
                update, forced, resumed, last = (
                    self._update,
                    self._forced,
                    self._resumed,
                    self._last_update_at,
                )
                self._forced = self._resumed = False
            if resumed:  # a burst of steps begins: the gates count from now
                for gate in self.gates.values():
                    gate.restart()
            quiet = self._clock() - last >= QUIET_S
            parts = [part for part in (_MAP, _PLOTS) if self._drawn[part] != update]
            parts = [p for p in parts if self._admit(p, force=quiet or (forced and p == _MAP))]
            if not parts:  # held: wait until a gate lets it through or the steps pause
                waits = [g.due_in() for g in self.gates.values()] + [last + QUIET_S - self._clock()]
                with self._cond:
                    self._cond.wait_for(
                        lambda: self._stopped or self._forced,
                        timeout=max(0.0, min(w for w in waits if w is not None)),
                    )
                continue
            with self._cond:
                self._drawing = True
                for part in parts:
                    self._drawn[part] = update
            try:
                self._show(self._frame(parts))
            except Exception:  # a run closed under the frame, say: the next update draws again
                log.debug("frame of update %d failed", update, exc_info=True)
            finally:
                with self._cond:
                    self._drawing = False

    def _show(self, shown: dict[str, Any]) -> None:
        """Set what a frame drew, together (one render pass)."""
        if self._stopped:
            return
        with self._batch():
            if _MAP in shown:
                self.map_png.set(shown.pop(_MAP))
                self.status.set(shown.pop("status"))
            if "qoais" in shown:
                self.qoais.set(shown.pop("qoais"))
            for name, png in shown.items():
                self.plots[name].set(png)

    def _admit(self, part: str, *, force: bool) -> bool:
        gate = self.gates[part]
        frame = gate.frame
        gate.admit(next(self._attempts), force=force)
        return gate.frame != frame

    def _frame(self, parts: list[str]) -> dict[str, Any]:
        """The map, and the plots and QoAIS whose data changed since last drawn, as ``parts`` ask."""
        model, shown = self.model, dict[str, Any]()
        if _MAP in parts:
            shown[_MAP] = self.gates[_MAP].timed(self.renderer.frame_png)
            with reading(model):
                shown["status"] = status_view(model)  # the latest: updates skip it while steps stream in
        if _PLOTS not in parts:
            return shown
        gate = self.gates[_PLOTS]
        with reading(model):
            running = model.status == "running"
            versions = {name: data_version(model, name) for name in [*PLOTS, "qoais"]}
            changed = [name for name in PLOTS if versions[name] != self._versions.get(name)]
            figures = {name: gate.timed(partial(PLOTS[name], model)) for name in changed}
            if (versions["qoais"], running) != (self._versions.get("qoais"), self._versions.get("running")):
                shown["qoais"] = gate.timed(lambda: qoais_html(model.qoais_reports(), running=running))
        self._versions = {**versions, "running": running}
        for name, figure in figures.items():  # a figure holds its data: drawn without the lock
            if self._stopped:
                break
            shown[name] = gate.timed(partial(self._canvases[name].png, figure))
        return shown


@contextmanager
def _batched(rc: Any) -> Iterator[None]:
    """Values set inside render once, together (a reacton render context batches what is set in it)."""
    with rc:
        yield
