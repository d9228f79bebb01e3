"""Optional Prometheus endpoint: a run's telemetry as gauges and counters with bounded labels.

Fed with the documents of the telemetry contract (``observe(message_type, document)``), either by the
run itself (``twin run --metrics-port``) or from the MQTT stream (``twin watch --metrics-port``).
Labels are only ``scenario``, ``run_id``, ``kind``, ``state``, ``status`` and ``event``: never a
device id, so a run of thousands of devices still makes a handful of series. Metrics live on their
own registry, not on prometheus_client's global one.
"""

from __future__ import annotations

import re
import threading
from collections import Counter as Tally
from collections.abc import Mapping
from typing import Any
from wsgiref.simple_server import WSGIServer

from prometheus_client import CollectorRegistry, Counter, Gauge, start_http_server

from twin.errors import ConfigError
from twin.schemas import load_schema

RUN_LABELS = ("scenario", "run_id")
STATUSES = ("running", "finished", "stopped", "aborted")
NO_STATE = "none"
"""``state`` label of agents whose telemetry has no state (base stations, the network agent)."""
KPI_PREFIX = "twin_kpi_"
_ENVELOPE = frozenset({"schema", "run_id", "scenario"})
KPI_KEYS = frozenset(load_schema("kpi")["properties"]) - _ENVELOPE
"""The KPI keys that become gauges: those of the twin.kpi.v1 schema, a fixed set."""
STATES = frozenset(load_schema("telemetry")["properties"]["state"]["enum"]) | {NO_STATE}
"""The ``state`` label values: the telemetry schema's device states."""
MAX_KINDS = 32
MAX_EVENTS = 32
MAX_AGENTS = 1_000_000
OTHER = "other"
"""Label value of a kind or event past the first ``MAX_KINDS``/``MAX_EVENTS`` seen, or a state not in
:data:`STATES`: labels never come unbounded from message contents."""
_INVALID = re.compile(r"[^a-zA-Z0-9_]")


def kpi_metric_name(key: str) -> str:
    """Prometheus name of the gauge of KPI ``key`` (``accuracy`` → ``twin_kpi_accuracy``)."""
    return KPI_PREFIX + _INVALID.sub("_", key)


class MetricsExporter:
    """Turns telemetry documents into Prometheus metrics and serves them over HTTP."""

    def __init__(self, run: tuple[str, str] | None = None) -> None:
        """``run``: (scenario, run_id) to export; by default the first run seen. Others are ignored."""
        self.run = run
        self.ignored = 0
        self._kinds: set[str] = set()
        self._event_names: set[str] = set()
        self._counts: Tally[tuple[str, str]] = Tally()
        self.registry = CollectorRegistry()
        registry = self.registry
        self._status = Gauge(
            "twin_run_status",
            "1 for the run's current status, 0 for the others.",
            [*RUN_LABELS, "status"],
            registry=registry,
        )
        self._sim_time = Gauge(
            "twin_sim_time_seconds",
            "Simulated time of the latest status, KPI or telemetry, seconds.",
            RUN_LABELS,
            registry=registry,
        )
        self._rounds = Gauge(
            "twin_rounds_completed", "Federated rounds recorded.", RUN_LABELS, registry=registry
        )
        self._agents = Gauge(
            "twin_agents",
            "Agents by kind and state (from each agent's latest telemetry).",
            [*RUN_LABELS, "kind", "state"],
            registry=registry,
        )
        self._samples = Counter(
            "twin_telemetry_samples", "Per-agent telemetry samples.", [*RUN_LABELS, "kind"], registry=registry
        )
        self._events = Counter(
            "twin_events",
            "Agent events (offline, straggler …).",
            [*RUN_LABELS, "kind", "event"],
            registry=registry,
        )
        self._kpis: dict[str, Gauge] = {}
        self._agent_state: dict[str, tuple[str, str]] = {}
        self._lock = threading.Lock()
        self._server: WSGIServer | None = None
        self._thread: threading.Thread | None = None

    # ---- feeding ------------------------------------------------------------------------------------
    def observe(self, message_type: str, document: Mapping[str, Any]) -> None:
        """Update the metrics from one telemetry document (a :data:`twin.telemetry.Sink`)."""
        run = (str(document.get("scenario", "")), str(document.get("run_id", "")))
        with self._lock:
            if self.run is None:
                self.run = run
            if run != self.run:  # one run per exporter: another run's (or a spoofed) document adds nothing
                self.ignored += 1
                return
            if message_type == "status":
                self._observe_status(run, document)
            elif message_type == "kpi":
                self._observe_kpi(run, document)
            elif message_type == "telemetry":
                self._observe_telemetry(run, document)
            elif message_type == "event":
                kind = _bounded(str(document.get("kind")), self._kinds, MAX_KINDS)
                event = _bounded(str(document.get("event")), self._event_names, MAX_EVENTS)
                self._events.labels(*run, kind, event).inc()

    def _set_time(self, run: tuple[str, str], document: Mapping[str, Any]) -> None:
        sim_time_s = document.get("sim_time_s")
        if isinstance(sim_time_s, int | float):
            self._sim_time.labels(*run).set(float(sim_time_s))

    def _observe_status(self, run: tuple[str, str], document: Mapping[str, Any]) -> None:
        for status in STATUSES:
            self._status.labels(*run, status).set(1.0 if document.get("status") == status else 0.0)
        if isinstance(document.get("rounds_completed"), int):
            self._rounds.labels(*run).set(float(document["rounds_completed"]))
        self._set_time(run, document)

    def _observe_kpi(self, run: tuple[str, str], document: Mapping[str, Any]) -> None:
        for key, value in document.items():
            if (
                key not in KPI_KEYS
                or isinstance(value, bool)
                or not (value is None or isinstance(value, int | float))
            ):
                continue
            name = kpi_metric_name(key)
            if name not in self._kpis:
                self._kpis[name] = Gauge(
                    name, f"KPI {key!r} of the latest round.", RUN_LABELS, registry=self.registry
                )
            self._kpis[name].labels(*run).set(float("nan") if value is None else float(value))
        if isinstance(document.get("round"), int):
            self._rounds.labels(*run).set(float(document["round"]))
        self._set_time(run, document)

    def _observe_telemetry(self, run: tuple[str, str], document: Mapping[str, Any]) -> None:
        kind = _bounded(str(document.get("kind")), self._kinds, MAX_KINDS)
        state = str(document.get("state", NO_STATE))
        state = state if state in STATES else OTHER
        self._samples.labels(*run, kind).inc()
        agent = str(document.get("agent_id"))
        old = self._agent_state.get(agent)
        if old is None and len(self._agent_state) >= MAX_AGENTS:
            self.ignored += 1
            return
        new = (kind, state)
        if old != new:  # O(1) per sample: move the agent from its old (kind, state) to its new one
            self._agent_state[agent] = new
            if old is not None:
                self._counts[old] -= 1
                self._agents.labels(*run, *old).set(float(self._counts[old]))
            self._counts[new] += 1
            self._agents.labels(*run, *new).set(float(self._counts[new]))
        self._set_time(run, document)

    # ---- serving ------------------------------------------------------------------------------------
    def serve(self, port: int, addr: str = "0.0.0.0") -> int:
        """Serve ``/metrics`` on ``addr:port`` in a daemon thread; returns the port (``0``: a free one).

        Raises:
            ConfigError: the port is out of range or already taken.
        """
        if not 0 <= port <= 65535:
            raise ConfigError(f"--metrics-port must be 0…65535, got {port}")
        try:
            self._server, self._thread = start_http_server(port, addr=addr, registry=self.registry)
        except OSError as exc:
            raise ConfigError(
                f"--metrics-port {port}: cannot listen on {addr} ({exc.strerror}); choose another port"
            ) from exc
        return int(self._server.server_port)

    @property
    def port(self) -> int | None:
        """The port being served, or ``None``."""
        return int(self._server.server_port) if self._server is not None else None

    def close(self) -> None:
        """Stop serving (idempotent)."""
        server, thread = self._server, self._thread
        self._server = self._thread = None
        if server is not None:
            server.shutdown()
            server.server_close()
        if thread is not None:
            thread.join(5.0)


def _bounded(value: str, seen: set[str], limit: int) -> str:
    """``value`` if it was seen before or fewer than ``limit`` values were; :data:`OTHER` after that."""
    if value in seen:
        return value
    if len(seen) < limit:
        seen.add(value)
        return value
    return OTHER
