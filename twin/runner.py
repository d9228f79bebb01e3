"""Run a named scenario end to end: resolve config, open the bus, build, step, write outputs.

:class:`RunSession` is the shared life cycle (the CLI runs it to the end; the visualisation steps it
and resets it); :func:`run_scenario` is the one-call version.
"""

from __future__ import annotations

import contextlib
import logging
import math
import signal
import threading
import uuid
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

import pandas as pd

from broker.connect import BusHandle, open_bus
from broker.topics import Topics, check_segment
from broker.url import parse_broker_url
from twin import parallel
from twin.config import apply_overrides, flatten, to_toml
from twin.errors import ConfigError, RunAbortedError, TwinError
from twin.metrics import MetricsExporter
from twin.model import TwinModel
from twin.outputs import (
    energy_by_kind,
    kpi_frame,
    write_calculation,
    write_coverage,
    write_qoais,
    write_run_dir,
)
from twin.progress import limit_unit
from twin.qoais import ServiceReport
from twin.resources import check_resources
from twin.service_reports import federated_training_report
from twin.telemetry import RUN_KEY_FILE, TELEMETRY_FILE, RunSigner, status_payload
from usecases import registry
from usecases.registry import AgentScenario, BuildContext, CalculationResult, CalculationScenario

if TYPE_CHECKING:
    from twin.workers import WorkerPool

log = logging.getLogger(__name__)

CALCULATION_SEED_KEY = "run.seed"
"""A calculation scenario whose config has this key draws its random numbers from it; ``--seed`` sets it."""
MAX_SEED = 2**63 - 1
"""Largest ``--seed``: it is stored as a 64-bit integer in the run's tables."""


@dataclass(frozen=True, slots=True)
class RunOptions:
    """What ``twin run`` asks for."""

    scenario: str
    seed: int = 0
    overrides: Mapping[str, str] = field(default_factory=dict)
    broker: str = "embedded"
    out_dir: Path = Path("runs")
    until_s: float | None = None
    rounds: int | None = None
    run_id: str | None = None
    metrics_port: int | None = None
    workers: int = 0
    ray_address: str | None = None
    threads: int | None = None
    """Threads of the run's data-parallel work (:mod:`twin.parallel`; None: every core); never a result."""


@dataclass(slots=True)
class RunResult:
    """Outcome of a run."""

    run_id: str
    run_dir: Path
    status: str
    kpis: pd.DataFrame
    summary: dict[str, Any]
    error: str | None = None
    qoais: list[ServiceReport] = field(default_factory=list)
    metrics: MetricsExporter | None = None
    """The run's ``/metrics`` server (``--metrics-port``), still serving the final values: it stops when
    the process exits, or on ``metrics.close()``."""


def resolve_config(scenario: str, overrides: Mapping[str, str], rounds: int | None = None) -> tuple[Any, Any]:
    """The scenario and its validated config with overrides (and ``--rounds``) applied."""
    spec = registry.get(scenario)
    config = spec.default_config()
    merged = dict(overrides)
    if rounds is not None:
        if not isinstance(spec, AgentScenario):
            raise ConfigError(f"--rounds: scenario {scenario!r} has no rounds")
        if rounds <= 0:
            raise ConfigError(f"--rounds must be > 0, got {rounds}")
        merged[spec.rounds_key] = str(rounds)
    return spec, apply_overrides(config, merged)


def broker_security(broker: str) -> tuple[bool, bool]:
    """(TLS, authenticated) of a run on ``--broker``.

    Authenticated is always true: every message that changes a result carries its sender's tag
    (per-agent HMAC, the network's Ed25519 signature; ``twin/auth.py``), on any bus. TLS only with
    ``mqtts://``; the embedded and in-process buses have none.
    """
    if broker in ("embedded", "local"):
        return False, True
    return parse_broker_url(broker).tls, True


def check_out_dir(out_dir: Path) -> None:
    """Create ``--out`` and prove it writable before anything runs, so no result is computed for nothing.

    Raises:
        ConfigError: it is a file, or cannot be created or written.
    """
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
        probe = out_dir / f".write-check-{uuid.uuid4().hex[:8]}"
        probe.write_bytes(b"")
        probe.unlink()
    except OSError as exc:
        raise ConfigError(
            f"--out {out_dir}: cannot write run directories there ({exc.strerror or exc})"
        ) from exc


def new_run_id(scenario: str, seed: int) -> str:
    """A unique, topic-safe run id: ``{scenario}-s{seed}-{8 hex}``."""
    return f"{scenario}-s{seed}-{uuid.uuid4().hex[:8]}"


class RunSession:
    """One run of an agent scenario: open → step … → close. Always close (it owns the broker)."""

    def __init__(self, options: RunOptions) -> None:
        spec, config = resolve_config(options.scenario, options.overrides, options.rounds)
        if not isinstance(spec, AgentScenario):
            raise ConfigError(f"scenario {options.scenario!r} is a calculation, not an agent simulation")
        if not 0 <= options.seed <= MAX_SEED:
            raise ConfigError(f"--seed must be within 0…{MAX_SEED} (a 64-bit integer), got {options.seed}")
        if options.until_s is not None and not (options.until_s > 0 and math.isfinite(options.until_s)):
            raise ConfigError(f"--until must be a finite number of seconds > 0, got {options.until_s}")
        if not 0 <= options.workers <= 1024:
            raise ConfigError(f"--workers must be between 0 and 1024, got {options.workers}")
        if options.workers and options.broker == "local":
            raise ConfigError(
                "--workers needs an MQTT broker that worker processes reach, not --broker local"
            )
        if options.ray_address and options.broker == "embedded":
            raise ConfigError(
                "--ray-address: the cluster cannot reach the embedded broker; give --broker URL"
            )
        if options.broker not in ("embedded", "local"):
            parse_broker_url(options.broker)  # a bad URL is refused before anything is created
        check_resources(config, until_s=options.until_s)
        self.options = options
        self.spec = spec
        self.config = config
        self.run_id = options.run_id or new_run_id(spec.name, options.seed)
        try:
            check_segment(self.run_id, "--run-id")
        except ValueError as exc:
            raise ConfigError(str(exc)) from exc
        self.run_dir = options.out_dir / self.run_id
        check_out_dir(options.out_dir)
        self.status = "created"
        self.error: str | None = None
        self.model: TwinModel | None = None
        self.metrics: MetricsExporter | None = None
        self.workers: WorkerPool | None = None
        self.signer = RunSigner()  # signs the meta and statuses (and the last will): twin watch trusts those
        self._handle: BusHandle | None = None
        self._torch_threads = 0  # torch's intra-op threads before open() (restored by close())
        self._threads: contextlib.AbstractContextManager[None] | None = None  # twin.parallel's, in open()

    def open(self) -> TwinModel:
        """Connect the bus (last will: ``aborted``), build the world, announce the run.

        The run keeps torch to one intra-op thread until :meth:`close`: its tensors are small (a few
        thousand rows at most), and it shares the cores with the broker and the device hosts, where
        threads that spin-wait for a busy core made a forward pass 3–10× slower (docs/performance.md).
        Its data-parallel work uses :mod:`twin.parallel`'s shard threads instead (``RunOptions.threads``,
        every core by default), which never change a result.
        """
        import torch

        self._torch_threads = torch.get_num_threads()
        torch.set_num_threads(1)
        self._threads = parallel.using_threads(self.options.threads)
        self._threads.__enter__()
        topics = Topics(self.run_id)
        self._handle = open_bus(
            self.options.broker,
            will=(topics.status, status_payload(self.run_id, self.spec.name, "aborted", signer=self.signer)),
            reconnect_timeout_s=self.config.bus.barrier_timeout_s,
        )
        try:
            if self.options.metrics_port is not None:
                self.metrics = MetricsExporter()
                self.metrics.serve(self.options.metrics_port)
            rounds_limit = int(flatten(self.config)[self.spec.rounds_key])
            hosting = "workers" if self.options.workers else "local"
            model = self.spec.build(
                self.config,
                BuildContext(self.run_id, self.options.seed, self._handle.bus, rounds_limit, hosting),
            )
            if self.metrics is not None:
                model.telemetry.sinks.append(self.metrics.observe)
            model.telemetry.signer = self.signer
            self.signer.save_public_key(self.run_dir)
            model.telemetry.meta(
                {
                    "seed": self.options.seed,
                    "config": {
                        k: ",".join(map(str, v)) if isinstance(v, tuple) else v  # as --set writes it
                        for k, v in flatten(self.config).items()
                        if v is not None
                    },
                    "devices": len(model.devices),
                    "base_stations": len(model.base_stations),
                    "broker": self._handle.bus.url,
                    "rounds_limit": rounds_limit,
                    "progress_unit": limit_unit(self.spec.rounds_key),
                    "started_at": datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%SZ"),  # not a result
                }
            )
            model.telemetry.status("running")
            self._write_credentials(model)
            if self.options.workers:
                from twin.workers import start_workers

                self.workers = start_workers(
                    model,
                    self.options.workers,
                    broker_url=self._worker_broker_url(),
                    ray_address=self.options.ray_address,
                )
        except BaseException:
            with contextlib.suppress(OSError):  # a run that never started leaves no run directory
                (self.run_dir / RUN_KEY_FILE).unlink(missing_ok=True)
                self.run_dir.rmdir()
            self._stop_workers()
            self._handle.close()
            self._handle = None
            self._stop_metrics()
            raise
        self.model = model
        self.status = "running"
        return model

    @property
    def done(self) -> bool:
        """Whether the run has reached its end (rounds done, ``--until`` reached, or aborted)."""
        model = self.model
        if model is None or self.status != "running":
            return True
        until = self.options.until_s
        return not model.running or (until is not None and model.time >= until)

    def step(self) -> bool:
        """Advance one simulated second; False if the run was already done.

        An abort (broker gone past its reconnect timeout) is recorded in ``status``, not raised.
        """
        if self.done:
            return False
        assert self.model is not None
        try:
            self.model.step()
        except RunAbortedError as exc:
            self.status, self.error = "aborted", str(exc)
            log.error("%s", exc)
        return True

    def close(
        self, status: str | None = None, error: str | None = None, *, keep_metrics: bool = False
    ) -> RunResult:
        """Write the run directory, publish the final status, release bus and broker (idempotent).

        ``keep_metrics``: leave ``/metrics`` serving the final values (handed over in the result).
        """
        if self._torch_threads:
            import torch

            torch.set_num_threads(self._torch_threads)
            self._torch_threads = 0
        if self._threads is not None:
            self._threads.__exit__(None, None, None)
            self._threads = None
        if status is not None:
            self.status, self.error = status, error
        elif self.status == "running":
            self.status = "finished" if self.done else "stopped"
        try:
            result = self._write()
            if self.model is not None and self._handle is not None:
                try:
                    self.model.telemetry.finish(
                        self.status,
                        rounds_completed=len(self.model.kpi_rows),
                        sim_time_s=float(self.model.time),
                        error=self.error,
                    )
                except TwinError:
                    log.debug("could not publish the final status", exc_info=True)
        finally:
            self._stop_workers()
            if self._handle is not None:
                self._handle.close()
                self._handle = None
            kept, self.metrics = (self.metrics, None) if keep_metrics else (None, self.metrics)
            self._stop_metrics()
        result.metrics = kept
        return result

    def _write_credentials(self, model: TwinModel) -> None:
        """Credentials of each external device (``devices.external``) in ``run_dir/credentials/``."""
        external = flatten(self.config).get("devices.external") or ()
        for agent_id in external:
            model.keys.credentials([agent_id]).save(self.run_dir / "credentials" / f"{agent_id}.json")

    def _worker_broker_url(self) -> str:
        """The broker URL worker processes connect to (with credentials, unlike what is displayed)."""
        assert self._handle is not None
        if self._handle.embedded is not None:
            return self._handle.embedded.url
        return self.options.broker

    def _stop_workers(self) -> None:
        if self.workers is not None:
            if self.model is not None and self.workers.check in self.model.health_checks:
                self.model.health_checks.remove(self.workers.check)
            self.workers.close()
            self.workers = None

    def _stop_metrics(self) -> None:
        if self.metrics is not None:
            self.metrics.close()
            self.metrics = None

    def _write(self) -> RunResult:
        model = self.model
        rows = model.kpi_rows if model is not None else []
        bus = model.bus if model is not None else None
        summary: dict[str, Any] = {
            "run_id": self.run_id,
            "scenario": self.spec.name,
            "seed": self.options.seed,
            "status": self.status,
            "error": self.error,
            "sim_time_s": float(model.time) if model is not None else 0.0,
            "rounds_completed": len(rows),
            "broker": bus.url if bus is not None else self.options.broker,
            "bus": bus.stats.as_dict() if bus is not None else {},
        }
        if rows:
            last = rows[-1]
            summary["final"] = {
                k: last[k]
                for k in ("accuracy", "service_accuracy", "energy_total_j", "co2_total_g")
                if k in last
            }
        if model is not None and model.network is not None:
            summary["majority_baseline_accuracy"] = model.network.task.majority_baseline()
            summary["energy_by_agent_j"] = model.energy.by_agent()
        if model is not None:
            summary["energy_by_service_j"] = model.energy.by_service()
            summary["energy_by_kind_j"] = energy_by_kind(model)
        events = model.telemetry.events if model is not None else []
        requests = [{"service": s.service, **r} for s in (model.services if model else []) for r in s.records]
        if model is not None:
            summary["services"] = {s.service: s.summary() for s in model.services}
        reports = self.qoais_reports()
        if self.status != "finished":  # an aborted or stopped run never reports PASS
            reports = [replace(r, incomplete=f"run {self.status}") for r in reports]
        summary["qoais"] = {
            r.service: {"passed": r.passed, "verdict": r.verdict, "limiting_factor": r.limiting_factor}
            for r in reports
        }
        write_run_dir(
            self.run_dir,
            config_toml=to_toml(self.config),
            kpi_rows=rows,
            events=events,
            summary=summary,
            requests=requests,
        )
        if model is not None:
            model.telemetry.samples.write(self.run_dir / TELEMETRY_FILE)
            if model.telemetry.samples.dropped:
                log.warning(
                    "%s: %d telemetry samples past the cap not kept",
                    TELEMETRY_FILE,
                    model.telemetry.samples.dropped,
                )
        write_qoais(self.run_dir, reports, title=f"QoAIS report — {self.run_id}")
        if model is not None and model.last_coverage is not None:
            write_coverage(self.run_dir, model.last_coverage)
        return RunResult(
            self.run_id, self.run_dir, self.status, kpi_frame(rows), summary, self.error, reports
        )

    def qoais_reports(self) -> list[ServiceReport]:
        """QoAIS of every service of the run so far: federated training, then the others."""
        model = self.model
        if model is None:
            return []
        tls, authenticated = broker_security(self.options.broker)
        reports = [s.qoais(tls=tls, authenticated=authenticated) for s in model.services]
        if model.network is None:
            return reports
        own_report = getattr(model.network, "training_report", None)  # a network agent that is not federated
        if callable(own_report):
            own = own_report(model.kpi_rows, self.config.qoais, tls=tls, authenticated=authenticated)
            return [own, *reports]
        training = federated_training_report(
            model.network.service,
            model.kpi_rows,
            self.config.qoais,
            tls=tls,
            authenticated=authenticated,
            baseline_accuracy=model.network.task.majority_baseline(),
        )
        return [training, *reports]


def run_scenario(
    options: RunOptions,
    *,
    on_step: Callable[[TwinModel], None] | None = None,
    on_model: Callable[[TwinModel], None] | None = None,
    on_start: Callable[[RunSession], None] | None = None,
) -> RunResult:
    """Run an agent scenario to its end and write its run directory.

    Ctrl-C, SIGTERM and SIGHUP (in the main thread) end the run ``aborted`` with everything recorded so
    far written, like a broker lost for good. ``on_start`` is told the session once the run is announced
    (meta and ``running`` published), before its first step. A ``--metrics-port`` server keeps serving
    the final values after the run (``RunResult.metrics``), until the process exits.

    Raises:
        TwinError: bad scenario, config or broker (before anything runs).
    """
    return run_session(RunSession(options), on_step=on_step, on_model=on_model, on_start=on_start)


def run_session(
    session: RunSession,
    *,
    on_step: Callable[[TwinModel], None] | None = None,
    on_model: Callable[[TwinModel], None] | None = None,
    on_start: Callable[[RunSession], None] | None = None,
) -> RunResult:
    """:func:`run_scenario` for a session already made (its options checked), e.g. before a progress bar."""
    model = session.open()
    with _signals_stop_the_run():
        try:
            if on_start is not None:
                on_start(session)
            if on_model is not None:
                on_model(model)
            while session.step():
                if on_step is not None:
                    on_step(model)
        except KeyboardInterrupt as exc:  # Ctrl-C, or SIGTERM/SIGHUP turned into one
            return session.close("aborted", str(exc) or "interrupted by the user", keep_metrics=True)
        except BaseException as exc:
            session.close("aborted", f"{type(exc).__name__}: {exc}")
            raise
        return session.close(keep_metrics=True)


@contextlib.contextmanager
def _signals_stop_the_run() -> Iterator[None]:
    """SIGTERM and SIGHUP raise KeyboardInterrupt naming the signal, while a run is on (main thread only)."""
    if threading.current_thread() is not threading.main_thread():
        yield
        return

    def stop(signum: int, _frame: object) -> None:
        raise KeyboardInterrupt(f"stopped by {signal.Signals(signum).name}")

    previous = {sig: signal.signal(sig, stop) for sig in (signal.SIGTERM, signal.SIGHUP)}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)


@dataclass(slots=True)
class CalculationRun:
    """Outcome of a calculation scenario: its result and where it was written."""

    run_id: str
    run_dir: Path
    result: CalculationResult


def run_calculation(options: RunOptions) -> CalculationRun:
    """Compute a calculation scenario and write config, results and QoAIS to its run directory."""
    spec, config = resolve_config(options.scenario, options.overrides, options.rounds)
    if not isinstance(spec, CalculationScenario):
        raise ConfigError(f"scenario {options.scenario!r} is an agent simulation, not a calculation")
    if CALCULATION_SEED_KEY in flatten(config) and CALCULATION_SEED_KEY not in options.overrides:
        config = apply_overrides(config, {CALCULATION_SEED_KEY: options.seed})  # --seed reaches it
    run_id = options.run_id or new_run_id(spec.name, options.seed)
    check_out_dir(options.out_dir)
    run_dir = options.out_dir / run_id
    result = spec.compute(config)
    write_calculation(run_dir, config_toml=to_toml(config), result=result.to_dict())
    write_qoais(run_dir, list(result.qoais), title=f"QoAIS report — {run_id}")
    return CalculationRun(run_id, run_dir, result)
