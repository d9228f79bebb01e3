"""A named agent scenario running live in the visualisation: the model SolaraViz steps and resets.

SolaraViz rebuilds its model on Reset as ``type(model)(**params)``, but a :class:`~twin.model.TwinModel`
is built by its use case around a bus it does not own. :class:`LiveScenario` is the Mesa model
SolaraViz sees: built from the chosen parameters, it opens a :class:`~twin.runner.RunSession` (its
broker, bus and twin), advances it one simulated second per step, and closes it on :meth:`close`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from mesa import Model
from mesa.experimental.continuous_space import ContinuousSpace
from mesa.experimental.scenarios import Scenario

from twin.errors import TwinError
from twin.kpi import co2_kg
from twin.model import TwinModel
from twin.qoais import ServiceReport
from twin.runner import RunOptions, RunSession
from twin.viz.params import as_override, parse_overrides, parse_seed

log = logging.getLogger(__name__)


@dataclass(frozen=True, slots=True)
class Sample:
    """The run's running totals after one step (the live plots' per-second series)."""

    time_s: float
    energy_j: float
    co2_g: float


class LiveScenario(Model):
    """A scenario's run inside the app: open on construction, one simulated second per step, then close.

    A bad parameter or an unreachable broker does not raise: the message is kept in :attr:`error`
    and the model does not run, so the page can show it and the user can fix the input and Reset.
    """

    def __init__(
        self,
        *,
        scenario_name: str,
        seed: int | str = 0,
        overrides: str = "",
        broker: str = "embedded",
        out_dir: str = "",
        scenario: Scenario | None = None,
        **params: Any,
    ) -> None:
        """Open a run of ``scenario_name``.

        Args:
            scenario_name: registered agent scenario.
            seed: the run's seed (text from the seed input is accepted).
            overrides: free-text ``key=value; …`` settings, applied after ``params``.
            broker: ``embedded`` (default), ``local`` or an MQTT URL, as ``twin run --broker``.
            out_dir: parent folder of the run directory written on close; empty: a temporary one,
                removed after the close.
            scenario: Mesa's experiment record, passed by SolaraViz on Reset.
            **params: headline controls by dotted config key (``fl.rounds=10``).
        """
        super().__init__(scenario=scenario)
        self.scenario_name = scenario_name
        self.broker = broker
        self.session: RunSession | None = None
        self.twin: TwinModel | None = None
        self.error: str | None = None
        self.samples: list[Sample] = []
        self.lock = threading.RLock()
        """Held while the run steps: the page holds it to read a consistent state from another thread."""
        self._flags = threading.Lock()
        self._stepping = False
        self._closing = False
        self._temp_dir: Path | None = None
        self._placeholder = ContinuousSpace([[0.0, 1.0], [0.0, 1.0]], random=self.random)
        try:
            settings = {k: as_override(v) for k, v in params.items()}
            settings.update(parse_overrides(overrides))
            options = RunOptions(
                scenario=scenario_name,
                seed=parse_seed(seed),
                overrides=settings,
                broker=broker,
                out_dir=self._run_parent(out_dir),
            )
            session = RunSession(options)
            self.twin = session.open()
            self.session = session
        except TwinError as exc:
            self.error = str(exc)
            self.running = False
            self._remove_temp_dir()
            return
        self._sample()

    # ---- what the page shows ---------------------------------------------------------------------
    @property
    def space(self) -> ContinuousSpace:
        """The twin's area (metres); an empty unit square when the run could not start."""
        return self.twin.space if self.twin is not None else self._placeholder

    @property
    def status(self) -> str:
        """``running``, ``finished``, ``stopped``, ``aborted``, or ``error`` (could not start)."""
        return self.session.status if self.session is not None else "error"

    @property
    def run_id(self) -> str:
        """The run's id (empty when it could not start)."""
        return self.session.run_id if self.session is not None else ""

    @property
    def seed_value(self) -> int | None:
        """The seed the run was started with."""
        return self.session.options.seed if self.session is not None else None

    def qoais_reports(self) -> list[ServiceReport]:
        """QoAIS of every service so far: federated training (rounds recorded) and the others."""
        session = self.session
        return session.qoais_reports() if session is not None else []

    # ---- life cycle --------------------------------------------------------------------------------
    def step(self) -> None:
        """Advance the run one simulated second; stop running once it is done or closed."""
        session = self.session
        with self._flags:
            if session is None or self._closing:
                self.running = False
                return
            self._stepping = True
        try:
            with self.lock:
                session.step()
                self._sample()
            self.running = not session.done
        finally:
            with self._flags:
                self._stepping = False
                release = self._closing
            if release:
                self.running = False
                self._release()

    def close(self) -> None:
        """Close the run: final status, run directory, bus and broker (idempotent, never blocks on a step).

        If a step is in progress in another thread (the play loop), that thread closes the run when
        its step ends.
        """
        with self._flags:
            if self._closing:
                return
            self._closing = True
            self.running = False
            if self._stepping:
                return
        self._release()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closing

    def _release(self) -> None:
        session = self.session
        try:
            if session is not None:
                session.close()
        except TwinError:
            log.warning("closing run %s failed", self.run_id, exc_info=True)
        finally:
            self._remove_temp_dir()

    def _run_parent(self, out_dir: str) -> Path:
        if out_dir:
            return Path(out_dir)
        self._temp_dir = Path(tempfile.mkdtemp(prefix="twin-viz-"))
        return self._temp_dir

    def _remove_temp_dir(self) -> None:
        if self._temp_dir is not None:
            shutil.rmtree(self._temp_dir, ignore_errors=True)
            self._temp_dir = None

    def _sample(self) -> None:
        twin = self.twin
        assert twin is not None
        energy_j = twin.energy.total()
        co2_g = 1000.0 * float(co2_kg(energy_j, twin.carbon.ecr_kg_per_kwh))
        self.samples.append(Sample(float(twin.time), energy_j, co2_g))
